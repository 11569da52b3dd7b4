"""An admin's own second factors: an authenticator app (TOTP, enrolled with a QR code DinoMail
draws itself), passkeys and security keys (WebAuthn; the one place the pages need JavaScript,
`static/webauthn.js`), and recovery codes shown once.

These pages are open to an admin whom TWO_FACTOR_REQUIRED sends to enrolment (`enrolment=True`
in the route table); the rules are in `dinomail.store.twofactor`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.totp_enrolment import enrolment, posted_first_code
from adminapi.pages.web import Page
from dinomail import passkeys
from dinomail import validation as v
from dinomail.store import StoreError, admins, twofactor


def rp_id(page: Page) -> str:
    """The WebAuthn relying party: WEBAUTHN_RP_ID, else the host the browser asked for."""
    return page.settings.WEBAUTHN_RP_ID or (page.request.url.hostname or "").lower()


def origin(page: Page) -> str:
    """The origin the browser signs: the scheme and host (with port) of this page."""
    url = page.request.url
    return f"{url.scheme}://{url.netloc}"


async def _binding(conn: AsyncConnection, admin_id: int) -> tuple[str, int]:
    """The password hash and session generation, read in the transaction that turned a factor
    on: a change made after it (a password reset) still ends this session."""
    return (await admins.password_hash(conn, admin_id),
            await admins.session_generation(conn, admin_id))


def _keep_this_session(page: Page, binding: tuple[str, int]) -> None:
    """Turning a second factor on may have ended the admin's sessions (the store's rule): this
    one, where they did it, goes on, with a word that the others have ended."""
    admin_id = page.admin.admin_id
    stored_hash, generation = binding
    if generation == page.session.generation:
        return
    # The same login goes on: its CSRF token and lifetime stay (open tabs keep working).
    page.session.password_binding = page.state.codec.password_binding(admin_id, stored_hash)
    page.session.generation = generation
    page.session.modified = True
    page.flash("info", page._("Your other sessions have ended: log in there again, with your "
                              "second factor."))


def passkey_failed(page: Page) -> str:
    return page._("The passkey could not be used. Try again, or use another way.")


async def two_factor(page: Page) -> Response:
    async with page.store.read() as conn:
        second = await twofactor.status(conn, page.admin.admin_id)
    required = twofactor.must_use(page.admin.account, page.settings.TWO_FACTOR_REQUIRED)
    return page.render("two_factor.html", second=second, required=required,
                       enrolling=required and not second.enabled)


async def _show_new_codes(page: Page, codes: list[str], *, status: int = 200) -> Response:
    return page.render("recovery_codes.html", status=status, codes=codes)


async def _first_codes(page: Page) -> list[str] | None:
    """Recovery codes made with the first factor, so no admin is left with one factor and no
    way back; None when the admin has some already."""
    async with page.store.write() as conn:
        if (await twofactor.status(conn, page.admin.admin_id)).recovery_left:
            return None
        return await twofactor.new_recovery_codes(conn, page.admin.actor, page.admin.admin_id)


async def _enrolled(page: Page, binding: tuple[str, int]) -> Response:
    """After a second factor was added: keep this browser's session (the store ended the
    others) and show the first recovery codes if this was the first factor."""
    _keep_this_session(page, binding)
    codes = await _first_codes(page)
    if codes is not None:
        return await _show_new_codes(page, codes)
    return page.redirect(page.url("two_factor"))


# --- the authenticator app -----------------------------------------------------------------------


async def _app_page(page: Page, form: Form, *, status: int = 200) -> Response:
    try:
        async with page.store.write() as conn:
            secret = await twofactor.start_totp(conn, page.admin.admin_id)
    except StoreError as error:
        page.flash("warning", page.refusal(error))
        return page.redirect(page.url("two_factor"))
    return page.render("totp_enrol.html", status=status, form=form,
                       **enrolment(secret, page.admin.username, page.settings.DINOMAIL_NAME))


async def totp_enrol(page: Page) -> Response:
    form = Form(values={"code": ""})
    if page.request.method == "GET":
        return await _app_page(page, form)
    code = posted_first_code(page, form)
    if code is None:
        return await _app_page(page, form, status=400)
    try:
        async with page.store.write() as conn:
            await twofactor.confirm_totp(conn, page.admin.actor, page.admin.admin_id, code)
            binding = await _binding(conn, page.admin.admin_id)
    except StoreError as error:
        form.add_error("code", page.refusal(error))
        return await _app_page(page, form, status=400)
    page.flash("success", page._("The authenticator app is set up: log in with its codes."))
    return await _enrolled(page, binding)


async def totp_remove(page: Page) -> Response:
    async with page.store.write() as conn:
        await twofactor.remove_totp(conn, page.admin.actor, page.admin.admin_id)
    page.flash("warning", page._("The authenticator app was removed."))
    return page.redirect(page.url("two_factor"))


# --- recovery codes ------------------------------------------------------------------------------


async def recovery_codes(page: Page) -> Response:
    async with page.store.write() as conn:
        if not await twofactor.is_enabled(conn, page.admin.admin_id):
            page.flash("warning", page._("Set up an authenticator app or a passkey first."))
            return page.redirect(page.url("two_factor"))
        codes = await twofactor.new_recovery_codes(conn, page.admin.actor, page.admin.admin_id)
    return await _show_new_codes(page, codes)


# --- passkeys ------------------------------------------------------------------------------------


async def _passkey_page(page: Page, form: Form, *, status: int = 200) -> Response:
    admin_id = page.admin.admin_id
    async with page.store.write() as conn:
        existing = [key["credential_id"] for key in await twofactor.list_passkeys(conn, admin_id)]
        ceremony = passkeys.registration(
            rp_id=rp_id(page), rp_name=page.settings.DINOMAIL_NAME, user_id=admin_id,
            user_name=page.admin.username, existing=existing,
        )
        await twofactor.save_challenge(conn, admin_id, twofactor.REGISTER, ceremony.challenge)
    page.session.challenge = ceremony.challenge
    page.session.modified = True
    return page.render("passkey_new.html", status=status, form=form,
                       options=ceremony.options_json)


async def passkey_new(page: Page) -> Response:
    form = Form(values={"name": ""})
    if page.request.method == "GET":
        return await _passkey_page(page, form)
    form.values["name"] = page.form_data.text("name")
    try:
        name = twofactor.normalize_passkey_name(form.values["name"])
    except v.ValidationError as error:
        page.refuse_into(form, error)
        return await _passkey_page(page, form, status=400)
    admin_id = page.admin.admin_id
    try:
        answer = passkeys.parse_answer(page.form_data.get("credential"))
        challenge = answer["challenge"]
        # Taken in a transaction of its own: even a refused answer uses the challenge up.
        async with page.store.write() as conn:
            taken = await twofactor.take_challenge(conn, admin_id, twofactor.REGISTER,
                                                   challenge)
        if not taken or challenge != page.session.challenge:
            raise passkeys.PasskeyRefused("not the challenge of this session")
        new = passkeys.verify_new(answer["answer"], challenge=challenge,
                                  rp_id=rp_id(page), origin=origin(page))
        async with page.store.write() as conn:
            await twofactor.add_passkey(
                conn, page.admin.actor, admin_id, name=name, credential_id=new.credential_id,
                public_key=new.public_key, sign_count=new.sign_count,
            )
            binding = await _binding(conn, admin_id)
    except passkeys.PasskeyRefused:
        form.error = passkey_failed(page)
        return await _passkey_page(page, form, status=400)
    except (StoreError, v.ValidationError) as error:
        form.add_error(error.field, page.refusal(error))
        return await _passkey_page(page, form, status=400)
    page.flash("success", page._("The passkey %(name)s was added.") % {"name": name})
    return await _enrolled(page, binding)


async def passkey_remove(page: Page) -> Response:
    async with page.store.write() as conn:
        row = await twofactor.remove_passkey(conn, page.admin.actor, page.admin.admin_id,
                                             page.path_id())
    page.flash("warning", page._("The passkey %(name)s was removed.") % {"name": row["name"]})
    return page.redirect(page.url("two_factor"))
