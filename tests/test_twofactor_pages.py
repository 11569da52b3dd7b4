"""My account and two-factor login in the pages and the API, without a browser: forms that
refuse bad input without changing anything, CSRF, the two login steps, codes used once, the
lockout on codes, TWO_FACTOR_REQUIRED, Basic credentials refused for `/api/apikey/`, and a
superadmin's removal of another admin's factors (a domain admin cannot)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyotp
import pytest
import sqlalchemy as sa

from adminapi.loginlimit import MAX_FAILURES_PER_ACCOUNT
from dinomail import migrate, schema
from dinomail.store import EVERYTHING, Store, admins, domains, twofactor
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.page_client import (
    PageSession,
    log_in,
    page_settings,
    pages_client,
    password_step,
    token_in,
)

TABLES = (schema.admin, schema.auditlog, schema.admintotp, schema.adminpasskey,
          schema.adminrecoverycode)
SECRET = re.compile(r'<code id="totp-secret"[^>]*>([A-Z2-7 ]+)</code>')
RECOVERY = re.compile(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>")
NEW_PASSWORD = "a new password, long enough"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
    """The pages on SQLite; the store's rules run on PostgreSQL too (test_twofactor_store)."""
    store = Store(f"sqlite:///{tmp_path / 'dinomail.sqlite3'}")
    await migrate.upgrade(store.engine)
    async with store.write() as conn:
        nanoy = await domains.create(conn, "test", EVERYTHING, {"name": "nanoy.fr"})
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[nanoy["id"]])
        await admins.create(conn, "test", username="bob", password=PASSWORD,
                            domain_ids=[nanoy["id"]])
    yield store
    await store.close()


async def admin_id(store: Store, username: str) -> int:
    async with store.read() as conn:
        return int((await admins.get_by_username(conn, username))["id"])


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    async with store.read() as conn:
        return {
            table.name: [tuple(row) for row in await conn.execute(
                sa.select(table).order_by(*table.primary_key.columns))]
            for table in TABLES
        }


async def audit_actions(store: Store) -> list[tuple[str, str, str]]:
    async with store.read() as conn:
        rows = await conn.execute(sa.select(
            schema.auditlog.c.actor, schema.auditlog.c.action, schema.auditlog.c.object_repr,
        ).order_by(schema.auditlog.c.id))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def error_of(response: httpx.Response, field: str) -> str:
    match = re.search(rf'<p class="field__error" id="error-{field}">.*?</svg>(.*?)</p>',
                      response.text, re.S)
    assert match, f"no error under {field}: {response.text[:3000]}"
    return match.group(1).strip()


async def enrol_app(session: PageSession) -> tuple[pyotp.TOTP, list[str]]:
    """Set up an authenticator app through the pages; its TOTP and the recovery codes shown."""
    page = await session.get("/account/two-factor/app")
    assert page.status_code == 200
    # The QR code is drawn by DinoMail: an inline SVG image, no other site involved.
    assert 'src="data:image/svg+xml' in page.text
    secret = SECRET.search(page.text)
    assert secret, page.text
    app = pyotp.TOTP(secret.group(1).replace(" ", ""))
    answer = await session.post("/account/two-factor/app", {"code": app.now()})
    assert answer.status_code == 200, answer.text
    codes = RECOVERY.findall(answer.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    return app, codes


def previous_code(app: pyotp.TOTP) -> str:
    """The code of the step before now (within the ±1 step window)."""
    return app.at(time.time() - 30)


def next_code(app: pyotp.TOTP) -> str:
    """The code of the step after now: accepted, and later than any step used so far."""
    return app.at(time.time() + 30)


# --- my account: password and language -----------------------------------------------------------


async def test_password_change_refusals_change_nothing(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        before = await snapshot(store)
        cases = [
            ({"current_password": "", "new_password": NEW_PASSWORD,
              "new_password_again": NEW_PASSWORD}, "current_password", "This field is required."),
            ({"current_password": PASSWORD, "new_password": "",
              "new_password_again": ""}, "new_password", "This field is required."),
            ({"current_password": PASSWORD, "new_password": NEW_PASSWORD,
              "new_password_again": NEW_PASSWORD + "x"}, "new_password_again",
             "The two passwords differ."),
            ({"current_password": "wrong password", "new_password": NEW_PASSWORD,
              "new_password_again": NEW_PASSWORD}, "current_password",
             "The current password is wrong."),
            ({"current_password": PASSWORD, "new_password": "short",
              "new_password_again": "short"}, "new_password", "At least 8 characters."),
        ]
        for data, field, message in cases:
            answer = await session.post("/account/password", data)
            assert answer.status_code == 400, (data, answer.status_code)
            assert error_of(answer, field) == message
            # The password fields are never sent back.
            assert PASSWORD not in answer.text
        assert await snapshot(store) == before


async def test_password_change_ends_the_other_sessions_only(store: Store) -> None:
    async with pages_client(store) as first, pages_client(store) as second:
        mine = await log_in(first, "alice")
        other = await log_in(second, "alice")
        answer = await mine.post("/account/password", {
            "current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD})
        assert answer.status_code == 303
        kept = await mine.get("/account/")
        assert kept.status_code == 200 and "Your password was changed" in kept.text
        ended = await other.get("/account/")
        assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    assert ("admin:alice", "set_password", "alice") in await audit_actions(store)
    async with pages_client(store) as client:
        assert (await password_step(client, "alice")).status_code == 400
        assert (await password_step(client, "alice", NEW_PASSWORD)).status_code == 303


async def test_language_is_saved_and_comes_back_at_login(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        before = await snapshot(store)
        refused = await session.post("/account/language", {"language": "de"})
        assert refused.status_code == 400
        assert error_of(refused, "language") == "Choose one of the languages shown."
        assert await snapshot(store) == before
        assert (await session.post("/account/language", {"language": "fr"})).status_code == 303
        assert 'lang="fr"' in (await session.get("/account/")).text
    assert ("admin:alice", "update", "alice") in await audit_actions(store)
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        page = await session.get("/account/")
        assert page.text.startswith("<!doctype html>\n<html lang=\"fr\">")
        assert "Mon compte" in page.text


# --- TOTP and recovery codes ---------------------------------------------------------------------


async def test_totp_enrolment_refuses_bad_codes_and_changes_nothing(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        page = await session.get("/account/two-factor/app")
        app = pyotp.TOTP(SECRET.search(page.text).group(1).replace(" ", ""))  # type: ignore[union-attr]
        before = await snapshot(store)
        wrong = str((int(app.now()) + 1) % 10**6).zfill(6)
        for code, message in (("", "This field is required."),
                              ("12ab", "Type the 6 digits your app shows."),
                              (wrong, "This code is wrong or expired. Type the code your app "
                                      "shows now.")):
            answer = await session.post("/account/two-factor/app", {"code": code})
            assert answer.status_code == 400
            assert error_of(answer, "code") == message
        assert await snapshot(store) == before
        # The same secret is shown again until it is confirmed (a scanned code stays valid).
        again = await session.get("/account/two-factor/app")
        assert app.secret == SECRET.search(again.text).group(1).replace(" ", "")  # type: ignore[union-attr]


async def test_login_with_totp_code_once_and_recovery_code_once(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        app, codes = await enrol_app(session)
    actions = [action for _, action, _ in await audit_actions(store)]
    assert "enable_totp" in actions and "new_recovery_codes" in actions

    # The next step's code: within the ±1 step window, and later than the one enrolment used.
    code = next_code(app)
    async with pages_client(store) as client:
        # After the password: half logged in, nothing open but the second step.
        answer = await password_step(client, "alice")
        assert answer.headers["location"].startswith("/login/two-factor")
        home = await client.get("/")
        assert home.status_code == 303 and home.headers["location"].startswith("/login")
        token = token_in(await client.get("/login/two-factor"))
        answer = await client.post("/login/two-factor", data={"code": code, "csrf_token": token})
        assert answer.status_code == 303
        assert (await client.get("/")).status_code == 200

    async with pages_client(store) as client:
        await password_step(client, "alice")
        token = token_in(await client.get("/login/two-factor"))
        # The last accepted step is remembered: no code of it or before is accepted again.
        for old in (code, app.now(), previous_code(app)):
            refused = await client.post("/login/two-factor",
                                        data={"code": old, "csrf_token": token})
            assert refused.status_code == 400
            assert error_of(refused, "code") == "This code is wrong, expired or already used."
        assert (await client.get("/")).status_code == 303
        answer = await client.post("/login/two-factor",
                                   data={"code": codes[0].upper(), "csrf_token": token})
        assert answer.status_code == 303
        assert (await client.get("/")).status_code == 200

    async with pages_client(store) as client:
        await password_step(client, "alice")
        token = token_in(await client.get("/login/two-factor"))
        refused = await client.post("/login/two-factor", data={"code": codes[0],
                                                               "csrf_token": token})
        assert refused.status_code == 400
        assert (await client.post("/login/two-factor", data={
            "code": codes[1], "csrf_token": token})).status_code == 303
    assert [action for _, action, _ in await audit_actions(store)].count(
        "use_recovery_code") == 2


async def test_recovery_codes_are_made_again_and_the_old_ones_stop(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        _, old = await enrol_app(session)
        answer = await session.post("/account/two-factor/recovery-codes")
        new = RECOVERY.findall(answer.text)
        assert len(new) == 10 and not set(new) & set(old)
    async with store.write() as conn:
        alice = await admin_id(store, "alice")
        assert not await twofactor.use_recovery_code(conn, "test", alice, old[0])
        assert await twofactor.use_recovery_code(conn, "test", alice, new[0])


async def test_codes_meet_the_login_lockout(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        app, _ = await enrol_app(session)
    async with pages_client(store) as client:
        assert (await password_step(client, "alice")).status_code == 303
        token = token_in(await client.get("/login/two-factor"))
        for _ in range(MAX_FAILURES_PER_ACCOUNT):
            refused = await client.post("/login/two-factor",
                                        data={"code": "000000", "csrf_token": token})
            assert refused.status_code == 400
        locked = await client.post("/login/two-factor",
                                   data={"code": next_code(app),
                                         "csrf_token": token})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert (await client.get("/")).status_code == 303
        # The password page is locked for this admin too: the count is one.
        assert (await password_step(client, "alice")).status_code == 429


async def test_csrf_is_required_by_every_new_form(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "root")
        before = await snapshot(store)
        alice = await admin_id(store, "alice")
        for url, data in (
            ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                   "new_password_again": NEW_PASSWORD}),
            ("/account/language", {"language": "fr"}),
            ("/account/two-factor/app", {"code": "123456"}),
            ("/account/two-factor/recovery-codes", {}),
            ("/account/two-factor/passkeys/new", {"name": "key", "credential": "{}"}),
            ("/account/two-factor/app/remove", {}),
            (f"/admins/{alice}/twofactor/remove", {}),
        ):
            for token in ("", "forged"):
                answer = await client.post(url, data={**data, "csrf_token": token})
                assert answer.status_code == 403, url
        assert await snapshot(store) == before
        assert (await session.get("/account/")).status_code == 200
    async with pages_client(store) as client:
        await password_step(client, "alice")
        answer = await client.post("/login/two-factor", data={"code": "123456"})
        assert answer.status_code == 403


async def test_second_step_refuses_without_a_token(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        app, _ = await enrol_app(session)
    async with pages_client(store) as client:
        await password_step(client, "alice")
        answer = await client.post("/login/two-factor", data={"code": app.now()})
        assert answer.status_code == 403
        assert (await client.get("/")).status_code == 303
        token = token_in(await client.get("/login/two-factor"))
        empty = await client.post("/login/two-factor", data={"code": " ", "csrf_token": token})
        assert empty.status_code == 400
        assert error_of(empty, "code") == "This field is required."
        # In French too.
        french = await client.get("/login/two-factor", headers={"Accept-Language": "fr"})
        assert "Seconde étape" in french.text
        assert "Code de votre application, ou un code de secours" in french.text
        assert (await client.get("/")).status_code == 303


# --- passkey form without a browser --------------------------------------------------------------


async def test_passkey_form_refuses_bad_input_and_changes_nothing(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        page = await session.get("/account/two-factor/passkeys/new")
        assert 'data-webauthn="register"' in page.text
        options = json.loads(re.search(r'data-options="([^"]*)"', page.text)  # type: ignore[union-attr]
                             .group(1).replace("&#34;", '"').replace("&quot;", '"'))
        assert options["rp"]["id"] == "testserver"
        before = await snapshot(store)
        missing = await session.post("/account/two-factor/passkeys/new",
                                     {"name": " ", "credential": ""})
        assert missing.status_code == 400
        assert error_of(missing, "name") == "This field is required."
        long = await session.post("/account/two-factor/passkeys/new",
                                  {"name": "k" * 101, "credential": ""})
        assert error_of(long, "name") == "At most 100 characters."
        fake = base64.urlsafe_b64encode(json.dumps(
            {"type": "webauthn.create", "challenge": options["challenge"],
             "origin": "https://testserver"}).encode()).decode()
        for credential in ("", "not json", json.dumps({"rawId": "AA", "response": {
                "clientDataJSON": fake, "attestationObject": "AA"}})):
            answer = await session.post("/account/two-factor/passkeys/new",
                                        {"name": "my key", "credential": credential})
            assert answer.status_code == 400
            assert "The passkey could not be used." in answer.text
        assert await snapshot(store) == before


# --- TWO_FACTOR_REQUIRED -------------------------------------------------------------------------


async def test_required_two_factor_sends_to_enrolment_and_nothing_else(store: Store) -> None:
    settings = page_settings(TWO_FACTOR_REQUIRED="superadmins")
    async with pages_client(store, settings) as client:
        # A domain admin is not asked.
        session = await log_in(client, "alice")
        assert (await session.get("/virtual-domains/")).status_code == 200
    async with pages_client(store, settings) as client:
        session = await log_in(client, "root")
        for url in ("/", "/virtual-domains/", "/account/", "/api-keys"):
            answer = await session.get(url)
            assert answer.status_code == 303, url
            assert answer.headers["location"] == "/account/two-factor"
        page = await session.get("/account/two-factor")
        assert "This server asks you for a second factor" in page.text
        refused = await session.post("/account/language", {"language": "fr"})
        assert refused.headers["location"] == "/account/two-factor"
        await enrol_app(session)
        assert (await session.get("/virtual-domains/")).status_code == 200


# --- API: Basic credentials and the superadmin's removal -----------------------------------------


def basic(username: str) -> dict[str, str]:
    value = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


async def test_basic_credentials_get_no_key_for_an_admin_with_two_factor(store: Store) -> None:
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        await enrol_app(session)
        refused = await client.get("/api/apikey/", headers=basic("alice"))
        assert refused.status_code == 403
        body = refused.json()
        assert body["code"] == "two_factor_required" and "two-factor" in body["error"]
        posted = await client.post("/api/apikey/", headers=basic("alice"), json={"name": "x"})
        assert posted.status_code == 403
        assert (await client.get("/api/apikey/", headers=basic("bob"))).status_code == 200
        # A key made in the pages still works: keys are the machine path.
        made = await session.post("/api-keys", {"name": "script"})
        secret = re.search(r'id="new-key"[^>]*value="([^"]+)"', made.text).group(1)  # type: ignore[union-attr]
        listed = await client.get("/api/apikey/",
                                  headers={"Authorization": f"ApiKey alice:{secret}"})
        assert listed.status_code == 200


async def test_superadmin_removes_factors_audited_domain_admin_cannot(store: Store) -> None:
    alice = await admin_id(store, "alice")
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        app, _ = await enrol_app(session)
    async with pages_client(store) as alice_client, pages_client(store) as bob_client:
        bob = await log_in(bob_client, "bob")
        before = await snapshot(store)
        assert (await bob.get(f"/admins/{alice}/twofactor/remove")).status_code == 404
        assert (await bob.post(f"/admins/{alice}/twofactor/remove")).status_code == 404
        assert (await bob.get("/admins/999999/twofactor/remove")).status_code == 404
        assert await snapshot(store) == before

        alice_session = await log_in(alice_client, "alice",
                                     code=next_code(app))
        async with pages_client(store) as root_client:
            root = await log_in(root_client, "root")
            page = await root.get(f"/admins/{alice}/twofactor/remove")
            assert page.status_code == 200 and "Authenticator app" in page.text
            answer = await root.post(f"/admins/{alice}/twofactor/remove")
            assert answer.status_code == 303
            after = await root.get(answer.headers["location"])
            assert 'id="no-second-factor"' in after.text
        # Her sessions ended; she logs in with her password alone now.
        assert (await alice_session.get("/account/")).status_code == 303
    assert ("admin:root", "remove_two_factor", "alice") in await audit_actions(store)
    async with store.read() as conn:
        assert not await twofactor.is_enabled(conn, alice)
    async with pages_client(store) as client:
        assert (await password_step(client, "alice")).headers["location"] == "/"


async def test_api_removal_by_superadmin_only(store: Store) -> None:
    alice = await admin_id(store, "alice")
    async with pages_client(store) as client:
        session = await log_in(client, "alice")
        await enrol_app(session)
        keys = {}
        for name in ("root", "bob"):
            made = await client.get("/api/apikey/", headers=basic(name))
            keys[name] = {"Authorization": f"ApiKey {name}:{made.json()['objects'][0]['key']}"}
        before = await snapshot(store)
        refused = await client.delete(f"/api/admin/{alice}/twofactor/", headers=keys["bob"])
        assert refused.status_code == 404 and refused.json()["code"] == "admin_not_found"
        assert await snapshot(store) == before
        done = await client.delete(f"/api/admin/{alice}/twofactor/", headers=keys["root"])
        assert done.status_code == 204
        assert (await client.delete("/api/admin/999999/twofactor/",
                                    headers=keys["root"])).status_code == 404
        document = (await client.get("/api/openapi.json")).json()
        assert "delete" in document["paths"]["/api/admin/{id}/twofactor/"]
    assert ("apikey", "remove_two_factor", "alice") in [
        (actor.split(":")[0], action, name) for actor, action, name in await audit_actions(store)]
    async with store.read() as conn:
        assert not await twofactor.is_enabled(conn, alice)
