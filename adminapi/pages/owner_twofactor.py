"""A mailbox owner's authenticator app: enrolled on `/me/two-factor` (a QR code, then a first
code), removed there with the current password or by an admin (`mailbox_totp_remove`), and
asked for after the password at `/me/login/code`. Confirming it shows ten recovery codes, once;
each one opens one login at `/me/login/code` in place of a code of the app, and the owner makes
new ones on `/me/two-factor` (with their password or a code). They go with the app.

It guards the self-service pages only; mail clients keep logging in with the mailbox's
password or its app passwords. The rules are in `dinomail.store.ownerlogin` (with those of the
admins' apps: a code is never accepted twice); a wrong code (of the app, or a recovery code)
counts as a failed login in the limiter, and the password's success does not reset the count
until the code is given.
"""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import N_, Form
from adminapi.pages.lockout import failed, locked_out, retry_after
from adminapi.pages.ownersession import OwnerPage, load_pending_owner
from adminapi.pages.totp_enrolment import enrolment, posted_first_code
from adminapi.pages.web import Page, login_again
from dinomail import selfservice
from dinomail.store import StoreError, mailboxes, ownerlogin
from dinomail.validation import ValidationError

# --- logging in: the second step -----------------------------------------------------------------


def _code_form(page: OwnerPage, form: Form, *, status: int = 200) -> Response:
    return page.render("me_login_code.html", status=status, form=form)


async def me_login_code(page: OwnerPage) -> Response:
    if page.owner is not None:
        return page.redirect(page.url("me_home"))
    owner = await load_pending_owner(page)
    if owner is None:
        return login_again(page, "me_login")
    form = Form(values={"code": ""})
    if page.request.method == "GET":
        return _code_form(page, form)
    wait = locked_out(page, owner.email, form)
    if wait:
        return retry_after(_code_form(page, form, status=429), wait)
    code = page.form_data.text("code")
    if not code:
        form.add_error("code", page._("This field is required."))
        return _code_form(page, form, status=400)
    async with page.store.write() as conn:
        before = await ownerlogin.recovery_codes_left(conn, owner.mailbox_id)
        accepted = await ownerlogin.check_code(conn, owner.actor, owner.mailbox_id, code)
        left = await ownerlogin.recovery_codes_left(conn, owner.mailbox_id)
    if not accepted:
        failed(page, owner.email)
        form.add_error("code", page._("This code is wrong, expired or already used."))
        return _code_form(page, form, status=400)
    page.state.limiter.succeeded(owner.email)
    page.session.log_in(owner.mailbox_id, page.session.password_binding,
                        page.session.generation)
    if left < before:
        page.flash("warning", page.ngettext(
            "You used a recovery code: %(num)d is left. Make new ones on your two-factor page.",
            "You used a recovery code: %(num)d are left. Make new ones on your two-factor page.",
            left) % {"num": left})
    return page.redirect(page.url("me_home"))


# --- the owner's page of their app ---------------------------------------------------------------


async def _page(page: OwnerPage, form: Form, *, status: int = 200) -> Response:
    me = page.me
    async with page.store.write() as conn:
        if await ownerlogin.totp_enabled(conn, me.mailbox_id):
            left = await ownerlogin.recovery_codes_left(conn, me.mailbox_id)
            return page.render("me_two_factor.html", status=status, form=form, enabled=True,
                               recovery_left=left)
        secret = await ownerlogin.start_totp(conn, me.scope, me.mailbox_id)
    return page.render("me_two_factor.html", status=status, form=form, enabled=False,
                       **enrolment(secret, me.email, page.settings.DINOMAIL_NAME))


async def me_two_factor(page: OwnerPage) -> Response:
    form = Form(values={"code": "", "current_password": "", "proof": ""})
    if page.request.method == "GET":
        return await _page(page, form)
    code = posted_first_code(page, form)
    if code is None:
        return await _page(page, form, status=400)
    me = page.me
    try:
        async with page.store.write() as conn:
            codes = await ownerlogin.confirm_totp(conn, me.actor, me.scope, me.mailbox_id, code)
    except StoreError as error:
        form.add_error("code", page.refusal(error))
        return await _page(page, form, status=400)
    page.flash("success", page._("The authenticator app is set up: log in with its codes."))
    return _show_codes(page, codes)


def _show_codes(page: OwnerPage, codes: list[str]) -> Response:
    """The recovery codes just made: this page is the only place they are ever shown."""
    return page.render("me_recovery_codes.html", codes=codes)


async def _proof_ok(page: OwnerPage, proof: str) -> bool:
    """Whether `proof` is the mailbox's current password, or a code of its app or one of its
    recovery codes (used up, as at the login)."""
    me = page.me
    async with page.store.write() as conn:
        if await ownerlogin.check_code(conn, me.actor, me.mailbox_id, proof):
            return True
    try:
        await selfservice.check_current_password(page.store, me, proof)
    except ValidationError:
        return False
    return True


async def me_recovery_codes(page: OwnerPage) -> Response:
    """New recovery codes in place of the old ones, asked for with the password or a code:
    a stolen session alone must not learn codes that open later logins."""
    me = page.me
    form = Form(values={"code": "", "current_password": "", "proof": ""})
    if locked_out(page, me.email, form, field="proof"):
        return await _page(page, form, status=429)
    proof = page.form_data.text("proof")
    if not proof:
        form.add_error("proof", page._("This field is required."))
        return await _page(page, form, status=400)
    if not await _proof_ok(page, proof):
        failed(page, me.email)
        form.add_error("proof", page._(
            "This is neither your current password nor a valid code of your app."))
        return await _page(page, form, status=400)
    try:
        async with page.store.write() as conn:
            codes = await ownerlogin.new_recovery_codes(conn, me.actor, me.scope, me.mailbox_id)
    except StoreError as error:
        page.flash("warning", page.refusal(error))
        return page.redirect(page.url("me_two_factor"))
    return _show_codes(page, codes)


async def me_two_factor_remove(page: OwnerPage) -> Response:
    me = page.me
    form = Form(values={"code": "", "current_password": ""})
    # Someone with a stolen session must not guess the password here faster than at the login.
    if locked_out(page, me.email, form, field="current_password"):
        return await _page(page, form, status=429)
    try:
        await selfservice.check_current_password(page.store, me,
                                                 page.form_data.get("current_password"))
    except ValidationError as error:
        failed(page, me.email)
        form.add_error(error.field, page.refusal(error))
        return await _page(page, form, status=400)
    async with page.store.write() as conn:
        await ownerlogin.remove_totp(conn, me.actor, me.scope, me.mailbox_id)
    page.flash("warning", page._("The authenticator app was removed."))
    return page.redirect(page.url("me_two_factor"))


# --- an admin removes it (a lost phone) ----------------------------------------------------------

REMOVED = N_("The authenticator app of %(email)s was removed, with its recovery codes: its "
             "owner logs in to the self-service pages with the password only.")
NONE = N_("%(email)s has no authenticator app.")


async def mailbox_totp_remove(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.write() as conn:
        mailbox = await mailboxes.get(conn, page.scope, pk)
        removed = await ownerlogin.remove_totp(conn, page.admin.actor, page.scope, pk)
    page.flash("warning" if removed else "info",
               page._(REMOVED if removed else NONE) % {"email": mailbox["email"]})
    return page.redirect(page.url("mailbox_edit", pk=pk))
