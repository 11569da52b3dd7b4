"""A mailbox owner's login, logout, language, home and password under `/me/`."""

from __future__ import annotations

from math import ceil

from starlette.responses import Response

from adminapi.loginlimit import client_address
from adminapi.pages.forms import Form
from adminapi.pages.ownersession import OwnerPage, translate
from adminapi.pages.sessions import insecure_transport
from adminapi.pages.web import local_path
from dinomail import selfservice
from dinomail.settings import LANGUAGES
from dinomail.store import ownerlogin
from dinomail.validation import ValidationError


def locked_out(page: OwnerPage, email: str, form: Form) -> float:
    """Seconds before `email` may try again from this client (0: now), with the form's message.

    The admins' limiter: one count of failures per account name and per client address,
    whichever kind of login they were (a password, a code of the app)."""
    wait = page.state.limiter.retry_after(email, client_address(page.request))
    if wait > 0:
        minutes = ceil(wait / 60)
        form.error = page.ngettext(
            "Too many failed logins. Try again in %(num)d minute.",
            "Too many failed logins. Try again in %(num)d minutes.", minutes,
        ) % {"num": minutes}
    return wait


def refused_for_a_while(response: Response, wait: float) -> Response:
    response.headers["Retry-After"] = str(ceil(wait))
    return response


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
        return refused_for_a_while(_login_form(page, form, status=429), wait)
    limiter, address = page.state.limiter, client_address(page.request)

    found = await selfservice.authenticate(
        page.store, email, password, scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
        enabled=page.settings.SELF_SERVICE,
    )
    if found is None:
        limiter.failed(email, address)
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
    limiter.succeeded(email)
    page.session.log_in(owner.mailbox_id, binding, generation)
    return page.redirect(page.url("me_home"))


async def me_logout(page: OwnerPage) -> Response:
    # Server-side: a copy of this session's cookie stops working too.
    async with page.store.write() as conn:
        await ownerlogin.end_sessions(conn, page.me.mailbox_id)
    page.session.log_out()
    page.flash("success", page._("You are logged out."))
    return page.redirect(page.url("me_login"))


async def me_language(page: OwnerPage) -> Response:
    chosen = page.form_data.get("language")
    if chosen in LANGUAGES:
        page.session.language = chosen
        page.session.modified = True
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
    if form.valid:
        try:
            new_hash, generation = await selfservice.change_password(
                page.store, page.me, current, new,
                scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
                min_length=page.settings.MAILBOX_PASSWORD_MIN_LENGTH,
            )
        except ValidationError as error:
            form.add_error(error.field, translate(page, error))
        else:
            # This session goes on with the new password; every other one has ended.
            page.session.password_binding = page.binding(new_hash)
            page.session.generation = generation
            page.session.modified = True
            page.flash("success", _("Your password was changed."))
            return page.redirect(page.url("me_home"))
    return page.render("me_password.html", form=form, status=400)
