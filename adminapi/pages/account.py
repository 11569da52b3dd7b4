"""Logging in (the password; the second factor follows in `twofactor_login`) and out, the
language, and the admin's own API keys."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.listing import PAGE_SIZE, page_links, parse_paging
from adminapi.pages.lockout import failed, locked_out, retry_after
from adminapi.pages.sessions import insecure_transport
from adminapi.pages.twofactor_login import finish_login
from adminapi.pages.web import Page, local_path, logged_out
from dinomail import validation as v
from dinomail.store import admins, apikeys, twofactor

# Longer than any password an admin can have; anything longer is not worth hashing.
MAX_LOGIN_PASSWORD_LENGTH = 1024


def _login_form(page: Page, form: Form, *, status: int = 200) -> Response:
    return page.render(
        "login.html", status=status, form=form,
        next_path=local_path(page.form_data.get("next") or page.request.query_params.get("next")),
        insecure=insecure_transport(page.request, page.settings.DEBUG),
    )


async def login(page: Page) -> Response:
    if page.caller is not None:
        return page.redirect(local_path(page.request.query_params.get("next")))
    form = Form(values={"username": "", "password": ""})
    if page.request.method == "GET":
        return _login_form(page, form)

    _ = page._
    data = page.form_data
    form.values["username"] = data.text("username")
    password = data.get("password")
    if not form.values["username"]:
        form.add_error("username", _("This field is required."))
    if not password:
        form.add_error("password", _("This field is required."))
    if not form.valid:
        return _login_form(page, form, status=400)

    username = form.values["username"]
    wait = locked_out(page, username, form)
    if wait:
        return retry_after(_login_form(page, form, status=429), wait)

    account = None
    try:
        normalized = v.normalize_username(username)
    except v.ValidationError:
        normalized = None
    if normalized is not None and len(password) <= MAX_LOGIN_PASSWORD_LENGTH:
        async with page.store.read() as conn:
            account = await admins.authenticate(conn, normalized, password)
            if account is not None:
                stored_hash = await admins.password_hash(conn, account["id"])
                generation = await admins.session_generation(conn, account["id"])
                second_factor = await twofactor.is_enabled(conn, account["id"])
            await conn.commit()  # last_login
    if account is None:
        failed(page, username)
        # The original's (Django's) message; it does not say which of the two was wrong.
        form.error = _("Please enter a correct username and password. Note that both fields "
                       "may be case-sensitive.")
        return _login_form(page, form, status=400)

    binding = page.state.codec.password_binding(account["id"], stored_hash)
    if second_factor:
        # Half logged in until the second factor; the limiter's count for this admin is
        # reset only then (adminapi.pages.twofactor_login).
        page.session.log_in_pending(account["id"], binding, generation)
        return page.redirect(page.url_with(
            "second_step", {"next": local_path(data.get("next"), "")}))
    await finish_login(page, account, binding, generation)
    return page.redirect(local_path(data.get("next")))


async def logout(page: Page) -> Response:
    return await logged_out(
        page, "login", lambda conn: admins.end_sessions(conn, page.admin.admin_id))


async def set_language(page: Page) -> Response:
    page.session.choose_language(page.form_data.get("language"))
    return page.redirect(local_path(page.form_data.get("next")))


# --- API keys -------------------------------------------------------------------------------------


async def _keys_page(page: Page, form: Form, *, status: int = 200,
                     created: dict | None = None, secret: str | None = None) -> Response:
    paging = parse_paging(page, "-id")
    async with page.store.read() as conn:
        window = await apikeys.list_window(
            conn, page.admin.admin_id, limit=PAGE_SIZE, offset=paging.offset, after=paging.after
        )
    return page.render(
        "api_keys.html", status=status, form=form, keys=window.rows,
        links=page_links(page, "api_keys", paging, window, {}), created=created, secret=secret,
    )


async def api_keys(page: Page) -> Response:
    form = Form(values={"name": "", "read_only": False})
    if page.request.method == "GET":
        return await _keys_page(page, form)
    _ = page._
    form.values["name"] = page.form_data.text("name")
    form.values["read_only"] = page.form_data.checked("read_only")
    try:
        async with page.store.write() as conn:
            row, secret = await apikeys.create(
                conn, page.admin.actor, page.admin.admin_id, name=form.values["name"],
                read_only=form.values["read_only"],
            )
    except v.ValidationError as error:
        page.refuse_into(form, error)
        return await _keys_page(page, form, status=400)
    page.flash("success", _("Api key was created."))
    # Shown in this answer only, never stored: a redirect would have to keep it somewhere.
    return await _keys_page(page, Form(values={"name": "", "read_only": False}),
                            created=row, secret=secret)


async def revoke_api_key(page: Page) -> Response:
    key_id = page.path_id()
    async with page.store.write() as conn:
        row = await apikeys.revoke(conn, page.admin.actor, page.admin.admin_id, key_id)
    page.flash("warning", page._("API key %(prefix)s… was revoked.") % {"prefix": row["prefix"]})
    return page.redirect(page.url("api_keys"))
