"""My account: every admin's own password and language, with links to their API keys and their
second factors (`adminapi.pages.twofactor`)."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.lockout import failed, locked_out
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.settings import LANGUAGES
from dinomail.store import StoreError, admins, apikeys, twofactor


def _password_form() -> Form:
    return Form(values={"current_password": "", "new_password": "", "new_password_again": ""})


async def _account_page(page: Page, *, password_form: Form | None = None,
                        language_form: Form | None = None, status: int = 200) -> Response:
    admin_id = page.admin.admin_id
    async with page.store.read() as conn:
        chosen = await admins.language(conn, admin_id)
        second = await twofactor.status(conn, admin_id)
        keys = await apikeys.list_window(conn, admin_id, limit=1)
    return page.render(
        "account.html", status=status, password_form=password_form or _password_form(),
        language_form=language_form or Form(values={"language": chosen or ""}),
        second=second, key_count=keys.total_count,
        required=twofactor.must_use(page.admin.account, page.settings.TWO_FACTOR_REQUIRED),
    )


async def account(page: Page) -> Response:
    return await _account_page(page)


async def change_password(page: Page) -> Response:
    _ = page._
    form = _password_form()
    data = page.form_data
    current, new, again = (data.get(name) for name in form.values)
    if not current:
        form.add_error("current_password", _("This field is required."))
    if not new:
        form.add_error("new_password", _("This field is required."))
    elif new != again:
        form.add_error("new_password_again", _("The two passwords differ."))
    if not form.valid:
        return await _account_page(page, password_form=form, status=400)

    # Someone with a stolen session must not guess the password here faster than at the login.
    username = page.admin.username
    if locked_out(page, username, form, field="current_password"):
        return await _account_page(page, password_form=form, status=429)
    admin_id = page.admin.admin_id
    try:
        async with page.store.write() as conn:
            await admins.change_own_password(conn, page.admin.actor, admin_id,
                                             current=current, new=new)
            stored_hash = await admins.password_hash(conn, admin_id)
            generation = await admins.session_generation(conn, admin_id)
    except (StoreError, v.ValidationError) as error:
        if error.field == "current_password" and isinstance(error, StoreError):
            failed(page, username)
        form.add_error(error.field, page.refusal(error))
        return await _account_page(page, password_form=form, status=400)
    # Every other session ended with the old password; this one goes on with the new one.
    page.session.log_in(admin_id, page.state.codec.password_binding(admin_id, stored_hash),
                        generation)
    page.flash("success", _("Your password was changed. Your other sessions have ended."))
    return page.redirect(page.url("account"))


async def change_language(page: Page) -> Response:
    chosen = page.form_data.get("language")
    form = Form(values={"language": chosen})
    try:
        async with page.store.write() as conn:
            await admins.set_language(conn, page.admin.actor, page.admin.admin_id,
                                      chosen or None, LANGUAGES)
    except v.ValidationError:
        form.add_error("language", page._("Choose one of the languages shown."))
        return await _account_page(page, language_form=form, status=400)
    page.session.language = chosen or None
    page.session.modified = True
    page.flash("success", page._("Your language was saved."))
    return page.redirect(page.url("account"))
