"""The second step of a login: after a right password, an admin with a second factor is only
"pending" (see `Session.pending_admin_id`: nothing is open to them) until they give a code of
their app, one of their recovery codes, or a passkey's answer.

A wrong code counts as a failed login in the same limiter as passwords (`adminapi.loginlimit`):
the password's success does not reset the admin's count until the second factor is given, so
knowing the password buys no more guesses at the codes.
"""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.lockout import failed, locked_out, retry_after
from adminapi.pages.twofactor import origin, passkey_failed, rp_id
from adminapi.pages.web import Page, load_pending, local_path, login_again
from dinomail import passkeys, totp
from dinomail.store import admins, twofactor
from dinomail.store.common import Row


async def finish_login(page: Page, account: Row, binding: str, generation: int) -> None:
    """Open the session (both steps done), in the language the admin chose, if any."""
    page.state.limiter.succeeded(str(account["username"]))
    page.session.log_in(int(account["id"]), binding, generation)
    async with page.store.read() as conn:
        chosen = await admins.language(conn, int(account["id"]))
    if chosen:
        page.session.language = chosen


async def _render(page: Page, account: Row, form: Form, *, status: int = 200) -> Response:
    admin_id = int(account["id"])
    options = None
    async with page.store.write() as conn:
        keys = [key["credential_id"] for key in await twofactor.list_passkeys(conn, admin_id)]
        if keys:
            ceremony = passkeys.authentication(rp_id=rp_id(page), credential_ids=keys)
            await twofactor.save_challenge(conn, admin_id, twofactor.LOGIN, ceremony.challenge)
            page.session.challenge = ceremony.challenge
            page.session.modified = True
            options = ceremony.options_json
        second = await twofactor.status(conn, admin_id)
    return page.render(
        "login_two_factor.html", status=status, form=form, options=options, second=second,
        next_path=local_path(page.form_data.get("next") or page.request.query_params.get("next")),
    )


async def _passkey_ok(page: Page, admin_id: int, text: str) -> bool:
    try:
        answer = passkeys.parse_answer(text)
        challenge = answer["challenge"]
        # Used up in a transaction of its own, whatever comes of the answer.
        async with page.store.write() as conn:
            taken = await twofactor.take_challenge(conn, admin_id, twofactor.LOGIN, challenge)
        if not taken or challenge != page.session.challenge:
            return False
        async with page.store.write() as conn:
            key = await twofactor.passkey_for_login(conn, admin_id, answer["credential_id"])
            if key is None:
                return False
            count = passkeys.verify_login(
                answer["answer"], challenge=challenge, rp_id=rp_id(page), origin=origin(page),
                public_key=key["public_key"], sign_count=int(key["sign_count"]),
            )
            await twofactor.passkey_used(conn, int(key["id"]), count)
    except passkeys.PasskeyRefused:
        return False
    return True


async def _code_ok(page: Page, account: Row, code: str) -> bool:
    admin_id = int(account["id"])
    async with page.store.write() as conn:
        if totp.normalize_code(code) is not None:
            return await twofactor.check_totp(conn, admin_id, code)
        return await twofactor.use_recovery_code(
            conn, f"admin:{account['username']}", admin_id, code)


async def second_step(page: Page) -> Response:
    if page.caller is not None:
        return page.redirect(local_path(page.request.query_params.get("next")))
    account = await load_pending(page)
    if account is None:
        return login_again(page, "login")
    form = Form(values={"code": ""})
    if page.request.method == "GET":
        return await _render(page, account, form)

    _ = page._
    data = page.form_data
    username = str(account["username"])
    wait = locked_out(page, username, form)
    if wait:
        return retry_after(await _render(page, account, form, status=429), wait)

    admin_id = int(account["id"])
    credential = data.get("credential")
    code = data.text("code")
    if credential:
        accepted = await _passkey_ok(page, admin_id, credential)
        if not accepted:
            form.error = passkey_failed(page)
    elif not code:
        form.add_error("code", _("This field is required."))
        return await _render(page, account, form, status=400)
    else:
        accepted = await _code_ok(page, account, code)
        if not accepted:
            form.add_error("code", _("This code is wrong, expired or already used."))
    if not accepted:
        failed(page, username)
        return await _render(page, account, form, status=400)
    await finish_login(page, account, page.session.password_binding, page.session.generation)
    if not credential and totp.normalize_code(code) is None:
        async with page.store.read() as conn:
            left = (await twofactor.status(conn, admin_id)).recovery_left
        page.flash("warning", page.ngettext(
            "You used a recovery code: %(num)d is left. Make new ones on your two-factor page.",
            "You used a recovery code: %(num)d are left. Make new ones on your two-factor page.",
            left) % {"num": left})
    return page.redirect(local_path(data.get("next")))

