"""A mailbox owner's login, logout, language, home and password under `/me/`."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.lockout import failed, locked_out, retry_after
from adminapi.pages.ownersession import OwnerPage
from adminapi.pages.sessions import insecure_transport
from adminapi.pages.web import local_path, logged_out
from dinomail import selfservice
from dinomail.store import ownerlogin
from dinomail.validation import ValidationError


def _login_form(page: OwnerPage, form: Form, *, status: int = 200) -> Response:
    return page.render("me_login.html", status=status, form=form,
                       insecure=insecure_transport(page.request, page.settings.DEBUG))


async def me_login(page: OwnerPage) -> Response:
    if page.owner is not None:
        return page.redirect(page.url("me_home"))
    form = Form(values={"email": "", "password": ""})
    if page.request.method == "GET":
        return _login_form(page, form)

    _ = page._
    data = page.form_data
    email = form.values["email"] = data.text("email")
    password = data.get("password")
    if not email:
        form.add_error("email", _("This field is required."))
    if not password:
        form.add_error("password", _("This field is required."))
    if not form.valid:
        return _login_form(page, form, status=400)

    wait = locked_out(page, email, form)
    if wait:
        return retry_after(_login_form(page, form, status=429), wait)

    found = await selfservice.authenticate(
        page.store, email, password, scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
        enabled=page.settings.SELF_SERVICE,
    )
    if found is None:
        failed(page, email)
        form.error = _("Please enter a correct email address and password.")
        return _login_form(page, form, status=400)
    owner, stored_hash = found
    binding = page.codec.password_binding(owner.mailbox_id, stored_hash)
    async with page.store.read() as conn:
        generation = await ownerlogin.session_generation(conn, owner.mailbox_id)
        second_step = await ownerlogin.totp_enabled(conn, owner.mailbox_id)
    if second_step:
        # Half logged in until the code; the limiter's count for this address is reset only
        # then, so the password buys no more guesses at the codes.
        page.session.log_in_pending(owner.mailbox_id, binding, generation)
        return page.redirect(page.url("me_login_code"))
    page.state.limiter.succeeded(email)
    page.session.log_in(owner.mailbox_id, binding, generation)
    return page.redirect(page.url("me_home"))


async def me_logout(page: OwnerPage) -> Response:
    return await logged_out(
        page, "me_login", lambda conn: ownerlogin.end_sessions(conn, page.me.mailbox_id))


async def me_language(page: OwnerPage) -> Response:
    page.session.choose_language(page.form_data.get("language"))
    return page.redirect(local_path(page.form_data.get("next"), page.url("me_home")))


async def me_home(page: OwnerPage) -> Response:
    return page.render("me_home.html")


async def me_password(page: OwnerPage) -> Response:
    form = Form(values={"current_password": "", "new_password": "", "new_password_confirm": ""})
    if page.request.method == "GET":
        return page.render("me_password.html", form=form)
    _ = page._
    data = page.form_data
    current, new = data.get("current_password"), data.get("new_password")
    if not current:
        form.add_error("current_password", _("This field is required."))
    if not new:
        form.add_error("new_password", _("This field is required."))
    elif new != data.get("new_password_confirm"):
        form.add_error("new_password_confirm", _("The two passwords differ."))
    # Someone with a stolen session must not guess the password here faster than at the login.
    if form.valid and locked_out(page, page.me.email, form, field="current_password"):
        return page.render("me_password.html", form=form, status=429)
    if form.valid:
        try:
            new_hash, generation = await selfservice.change_password(
                page.store, page.me, current, new,
                scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
                min_length=page.settings.MAILBOX_PASSWORD_MIN_LENGTH,
            )
        except ValidationError as error:
            if error.field == "current_password":
                failed(page, page.me.email)
            form.add_error(error.field, page.refusal(error))
        else:
            # This session goes on with the new password; every other one has ended.
            page.session.password_binding = page.binding(new_hash)
            page.session.generation = generation
            page.session.modified = True
            page.flash("success", _("Your password was changed."))
            return page.redirect(page.url("me_home"))
    return page.render("me_password.html", form=form, status=400)
