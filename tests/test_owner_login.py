"""A mailbox owner's own login to `/me/`, without a browser, on SQLite and PostgreSQL: the
optional authenticator app (enrolled with a QR code and a first code, asked for after the
password, a code never accepted twice, wrong codes counted by the login limiter, removed with
the current password or by an admin), and sessions ended server-side by logging out and by a
new password (a copied cookie stops working)."""

from __future__ import annotations

import time

import pytest

from adminapi.pages.ownersession import COOKIE_NAME
from dinomail.store import Store, admins, ownerlogin
from tests.support.admin_pages import log_in, pages_client
from tests.support.adminapi import PASSWORD, add_domain, fast_admin_hashing
from tests.support.owner_twofactor import (
    audit_actions,
    enrol,
    field_error,
    later_code,
    password_then,
)
from tests.support.selfservice import (
    OWNER_PASSWORD,
    add_owner,
    csrf_token,
    me_client,
    owner_log_in,
    try_owner_login,
)

NEW_PASSWORD = "another long passphrase"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def bob(store: Store) -> int:
    await add_domain(store, "b.org")
    return int((await add_owner(store, "bob@b.org"))["id"])


async def test_enrolled_owner_logs_in_with_a_code_once(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        app = await enrol(await owner_log_in(client, "bob@b.org"))
    assert ("bob@b.org", "enable_totp", "bob@b.org") in await audit_actions(store)
    code = later_code(app)
    async with me_client(store) as client:
        token = await password_then(client)
        answer = await client.post("/me/login/code", data={"code": code, "csrf_token": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
        assert (await client.get("/me/")).status_code == 200
    async with me_client(store) as client:
        token = await password_then(client)
        # No code of the step accepted last, nor of an earlier one, is accepted again.
        for old in (code, app.now(), app.at(time.time() - 30)):
            refused = await client.post("/me/login/code",
                                        data={"code": old, "csrf_token": token})
            assert refused.status_code == 400
            assert "This code is wrong, expired or already used." in field_error(
                refused.text, "code")
        assert (await client.get("/me/")).status_code == 303
        # Without the session's token, not even a right code is looked at.
        answer = await client.post("/me/login/code", data={"code": "123456"})
        assert answer.status_code == 403


async def test_wrong_codes_count_toward_the_lockout(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        app = await enrol(await owner_log_in(client, "bob@b.org"))
        await client.post("/me/logout", data={"csrf_token": csrf_token(await client.get("/me/"))})
        token = await password_then(client)
        wrong = str((int(later_code(app)) + 1) % 1_000_000).zfill(6)
        for _ in range(5):
            answer = await client.post("/me/login/code", data={"code": wrong, "csrf_token": token})
            assert answer.status_code == 400
        blocked = await client.post("/me/login/code",
                                    data={"code": later_code(app), "csrf_token": token})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert "Too many failed logins" in blocked.text
        # The password alone is refused too now: one count per address.
        assert (await try_owner_login(client, "bob@b.org")).status_code == 429
        assert (await client.get("/me/")).status_code == 303


async def test_removing_the_app_needs_the_password(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        await enrol(owner)
        answer = await owner.post("/me/two-factor/remove", {"current_password": "wrong one"})
        assert answer.status_code == 400
        assert "This is not your current password." in field_error(
            answer.text, "current_password")
        async with store.read() as conn:
            assert await ownerlogin.totp_enabled(conn, bob)
        answer = await owner.post("/me/two-factor/remove",
                                  {"current_password": OWNER_PASSWORD})
        assert answer.status_code == 303
    async with store.read() as conn:
        assert not await ownerlogin.totp_enabled(conn, bob)
    assert ("bob@b.org", "remove_totp", "bob@b.org") in await audit_actions(store)
    async with me_client(store) as client:
        await owner_log_in(client, "bob@b.org")  # the password alone again


async def test_wrong_current_passwords_count_toward_the_lockout(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        await enrol(owner)
        for _ in range(5):
            answer = await owner.post("/me/two-factor/remove", {"current_password": "guess"})
            assert answer.status_code == 400
        answer = await owner.post("/me/two-factor/remove", {"current_password": OWNER_PASSWORD})
        assert answer.status_code == 429
        assert "Too many failed logins" in field_error(answer.text, "current_password")
        answer = await owner.post("/me/password", {
            "current_password": OWNER_PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD})
        assert answer.status_code == 429
    async with store.read() as conn:
        assert await ownerlogin.totp_enabled(conn, bob)


async def test_an_admin_removes_an_owners_app(store: Store, bob: int) -> None:
    a = await add_domain(store, "a.org")
    async with store.write() as conn:
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[a["id"]])
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
    async with me_client(store) as client:
        await enrol(await owner_log_in(client, "bob@b.org"))
    async with pages_client(store) as client:
        # A domain admin of another domain: "not found", as a missing mailbox.
        alice = await log_in(client, "alice")
        assert (await alice.post(f"/virtual-users/{bob}/two-factor/remove")).status_code == 404
        assert (await alice.post(f"/virtual-users/{bob + 99}/two-factor/remove")
                ).status_code == 404
    async with store.read() as conn:
        assert await ownerlogin.totp_enabled(conn, bob)
    async with pages_client(store) as client:
        root = await log_in(client, "root")
        page = await root.get(f"/virtual-users/{bob}/edit")
        assert f'action="/virtual-users/{bob}/two-factor/remove"' in page.text
        answer = await root.post(f"/virtual-users/{bob}/two-factor/remove")
        assert (answer.status_code, answer.headers["location"]) == (
            303, f"/virtual-users/{bob}/edit")
        page = await root.get(f"/virtual-users/{bob}/edit")
        assert "The authenticator app of bob@b.org was removed" in page.text
        assert "two-factor/remove" not in page.text
    assert ("admin:root", "remove_totp", "bob@b.org") in await audit_actions(store)
    async with me_client(store) as client:
        await owner_log_in(client, "bob@b.org")


# --- sessions ended server-side ------------------------------------------------------------------


async def test_logout_ends_a_copied_session(store: Store, bob: int) -> None:
    async with me_client(store) as client, me_client(store) as thief:
        owner = await owner_log_in(client, "bob@b.org")
        copy = {"Cookie": f"{COOKIE_NAME}={client.cookies[COOKIE_NAME]}"}
        assert (await thief.get("/me/", headers=copy)).status_code == 200
        answer = await owner.post("/me/logout")
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/login")
        copied = await thief.get("/me/", headers=copy)
        assert copied.status_code == 303 and copied.headers["location"] == "/me/login"
        # Logging in again opens a new session; the copy stays ended.
        await owner_log_in(client, "bob@b.org")
        assert (await client.get("/me/")).status_code == 200


async def test_a_new_password_ends_copied_sessions_and_keeps_this_one(
    store: Store, bob: int,
) -> None:
    async with me_client(store) as client, me_client(store) as thief:
        owner = await owner_log_in(client, "bob@b.org")
        copy = {"Cookie": f"{COOKIE_NAME}={client.cookies[COOKIE_NAME]}"}
        answer = await owner.post("/me/password", {
            "current_password": OWNER_PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD})
        assert answer.status_code == 303
        assert (await client.get("/me/")).status_code == 200
        assert (await thief.get("/me/", headers=copy)).status_code == 303
    async with store.read() as conn:
        assert await ownerlogin.session_generation(conn, bob) == 1


async def test_two_factor_pages_in_french(store: Store, bob: int) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        await owner.post("/me/language", {"language": "fr", "next": "/me/two-factor"})
        page = await client.get("/me/two-factor")
        assert 'lang="fr"' in page.text
        assert "Vos logiciels de messagerie ne sont pas concernés" in page.text
        await enrol(owner, french=True)
        await owner.post("/me/logout")
        await password_then(client)
        page = await client.get("/me/login/code")
        assert "Code de votre application d’authentification" in page.text
