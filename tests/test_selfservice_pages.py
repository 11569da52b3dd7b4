"""The mailbox owners' pages under `/me/`, without a browser, on SQLite and PostgreSQL: login
with the mailbox's own password (any Dovecot scheme, upgraded to the current one), a session
apart from the admins', every admin page and API endpoint closed to it, lockout, CSRF, the
password and forwarding forms refusing bad input without changing anything, and self-service
turned off per domain and everywhere."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.routing import Route

from adminapi.pages.ownersession import COOKIE_NAME
from adminapi.pages.sessions import COOKIE_NAME as ADMIN_COOKIE_NAME
from dinomail import schema
from dinomail.passwords import split_stored, verify_password
from dinomail.store import EVERYTHING, Store, admins, aliases, selfservice
from tests.support.adminapi import PASSWORD, add_domain, fast_admin_hashing
from tests.support.selfservice import (
    OWNER_PASSWORD,
    Owner,
    add_owner,
    csrf_token,
    me_client,
    me_settings,
    owner_log_in,
    stored_hash,
    try_owner_login,
)

NEW_PASSWORD = "another long passphrase"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@dataclass
class World:
    anna: int  # anna@a.org, SHA256-CRYPT (an older scheme than the default)
    bob: int   # bob@b.org
    a: int
    b: int


@pytest.fixture
async def world(store: Store) -> World:
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    anna = await add_owner(store, "anna@a.org", scheme="SHA256-CRYPT")
    bob = await add_owner(store, "bob@b.org")
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
    return World(anna=anna["id"], bob=bob["id"], a=a["id"], b=b["id"])


async def alias_rows(store: Store) -> list[tuple[str, str]]:
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(schema.virtualalias.c.source, schema.virtualalias.c.destination)
            .order_by(schema.virtualalias.c.source, schema.virtualalias.c.destination))
        return [(row.source, row.destination) for row in rows]


# --- logging in ----------------------------------------------------------------------------------


async def test_login_with_the_mailbox_password_upgrades_its_scheme(
    store: Store, world: World,
) -> None:
    assert split_stored(await stored_hash(store, world.anna))[0] == "SHA256-CRYPT"
    async with me_client(store) as client:
        assert (await client.get("/me/")).headers["location"] == "/me/login"
        owner = await owner_log_in(client, "Anna@A.org")
        assert COOKIE_NAME in client.cookies and ADMIN_COOKIE_NAME not in client.cookies
        home = await client.get("/me/")
        assert home.status_code == 200 and "anna@a.org" in home.text
        upgraded = await stored_hash(store, world.anna)
        assert split_stored(upgraded)[0] == "SHA512-CRYPT"
        assert verify_password(OWNER_PASSWORD, upgraded)
        # The session survives its own upgrade, and logging out ends it.
        assert (await client.get("/me/forwarding")).status_code == 200
        answer = await owner.post("/me/logout")
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/login")
        assert (await client.get("/me/")).status_code == 303


async def test_wrong_password_and_unknown_mailbox_get_one_answer(
    store: Store, world: World,
) -> None:
    async with me_client(store) as client:
        for email, password in (("anna@a.org", "wrong password"),
                                ("nobody@a.org", OWNER_PASSWORD),
                                ("not an address", OWNER_PASSWORD)):
            answer = await try_owner_login(client, email, password)
            assert answer.status_code == 400
            assert "Please enter a correct email address and password." in answer.text
        assert (await client.get("/me/")).status_code == 303
    # A failed login changes nothing, not even the scheme.
    assert split_stored(await stored_hash(store, world.anna))[0] == "SHA256-CRYPT"


async def test_inactive_mailbox_cannot_log_in(store: Store, world: World) -> None:
    await add_owner(store, "off@a.org", active=False)
    async with me_client(store) as client:
        assert (await try_owner_login(client, "off@a.org")).status_code == 400


async def test_failed_logins_lock_the_account_out(store: Store, world: World) -> None:
    async with me_client(store) as client:
        for _ in range(5):
            assert (await try_owner_login(client, "bob@b.org", "wrong")).status_code == 400
        blocked = await try_owner_login(client, "bob@b.org")
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert "Too many failed logins" in blocked.text
        assert (await client.get("/me/")).status_code == 303


async def test_every_post_needs_the_session_token(store: Store, world: World) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        before = await stored_hash(store, world.bob)
        for url, data in (
            ("/me/password", {"current_password": OWNER_PASSWORD, "new_password": NEW_PASSWORD,
                              "new_password_confirm": NEW_PASSWORD}),
            ("/me/forwarding", {"destinations": "x@elsewhere.example"}),
            ("/me/logout", {}),
        ):
            for token in (None, "forged", owner.token + "x"):
                sent = dict(data) if token is None else {**data, "csrf_token": token}
                answer = await client.post(url, data=sent)
                assert answer.status_code == 403, url
        # Another site's form is refused even with the right token.
        answer = await client.post("/me/forwarding", data={
            "destinations": "x@elsewhere.example", "csrf_token": owner.token},
            headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403
        assert await stored_hash(store, world.bob) == before
        assert await alias_rows(store) == []
        assert (await client.get("/me/")).status_code == 200  # still logged in
        # The login form too.
        answer = await client.post("/me/login", data={"email": "bob@b.org",
                                                       "password": OWNER_PASSWORD})
        assert answer.status_code == 403


# --- one session is not the other ----------------------------------------------------------------


def _concrete(path: str, pk: int) -> str:
    return re.sub(r"\{\w+(?::\w+)?\}", str(pk), path)


async def test_an_owner_reaches_no_admin_page_or_api_endpoint(
    store: Store, world: World,
) -> None:
    async with me_client(store) as client:
        await owner_log_in(client, "bob@b.org")
        checked = 0
        for route in client._transport.app.routes:  # type: ignore[attr-defined]
            if not isinstance(route, Route) or route.path.startswith("/me"):
                continue
            path = _concrete(route.path, world.bob)
            for method in sorted(route.methods or ()):
                if method in ("HEAD", "OPTIONS"):
                    continue
                answer = await client.request(method, path)
                name = route.name or ""
                if path.startswith("/api/"):
                    if path in ("/api/", "/api/openapi.json", "/api/export-schema.json",
                                "/api/docs/") or path.endswith("/schema/"):
                        continue  # public documents, no data
                    assert answer.status_code in (401, 405), (method, path, answer.text)
                elif name.startswith("pages:") and name not in (
                    "pages:login", "pages:legals", "pages:set_language"
                ):
                    # An admin page: the admins' login, whatever the owner's session.
                    assert answer.status_code in (303, 403), (method, path)
                    if answer.status_code == 303:
                        assert answer.headers["location"].startswith("/login"), (method, path)
                    else:
                        assert "security token" in answer.text  # a POST without a token
                    checked += 1
        assert checked > 40
        # The owner's cookie, sent as an admin's, is not an admin session either.
        value = client.cookies[COOKIE_NAME]
        client.cookies.set(ADMIN_COOKIE_NAME, value, domain="testserver")
        assert (await client.get("/")).status_code == 303


async def test_an_admin_session_is_not_a_mailbox_session(store: Store, world: World) -> None:
    async with me_client(store) as client:
        token = csrf_token(await client.get("/login"))
        answer = await client.post("/login", data={"username": "root", "password": PASSWORD,
                                                   "csrf_token": token})
        assert answer.status_code == 303
        assert (await client.get("/virtual-users/")).status_code == 200
        for url in ("/me/", "/me/password", "/me/forwarding"):
            answer = await client.get(url)
            assert (answer.status_code, answer.headers["location"]) == (303, "/me/login"), url
        # The admin's cookie, sent as an owner's, does not open the owners' pages.
        client.cookies.set(COOKIE_NAME, client.cookies[ADMIN_COOKIE_NAME], domain="testserver")
        assert (await client.get("/me/")).status_code == 303
        # Logging in as a mailbox does not make the admin session one.
        await owner_log_in(client, "bob@b.org")
        assert (await client.get("/virtual-users/")).status_code == 200
        assert "bob@b.org" in (await client.get("/me/")).text


async def test_an_owner_changes_only_their_own_mailbox(store: Store, world: World) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        anna_before = await stored_hash(store, world.anna)
        # No owner's page takes a mailbox id; one sent anyway is ignored.
        answer = await owner.post("/me/forwarding", {
            "destinations": "bob.other@elsewhere.example", "mailbox_id": str(world.anna),
            "email": "anna@a.org"})
        assert answer.status_code == 303
        assert await alias_rows(store) == [("bob@b.org", "bob.other@elsewhere.example")]
        # The admin's forwarding page of another mailbox is an admin page: the admins' login.
        answer = await owner.post(f"/virtual-users/{world.anna}/forwarding",
                                  {"destinations": "x@elsewhere.example"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert (await client.get(f"/me/forwarding/{world.anna}")).status_code == 404
    assert await stored_hash(store, world.anna) == anna_before
    assert await alias_rows(store) == [("bob@b.org", "bob.other@elsewhere.example")]


# --- password ----------------------------------------------------------------------------------


async def test_password_change_ends_other_sessions_and_keeps_this_one(
    store: Store, world: World,
) -> None:
    async with me_client(store) as client, me_client(store) as other:
        owner = await owner_log_in(client, "bob@b.org")
        await owner_log_in(other, "bob@b.org")
        answer = await owner.post("/me/password", {
            "current_password": OWNER_PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD})
        assert (answer.status_code, answer.headers["location"]) == (303, "/me/")
        assert "Your password was changed." in (await client.get("/me/")).text
        assert (await other.get("/me/")).status_code == 303
        stored = await stored_hash(store, world.bob)
        assert verify_password(NEW_PASSWORD, stored)
        assert not verify_password(OWNER_PASSWORD, stored)
    async with store.read() as conn:
        entry = (await conn.execute(
            sa.select(schema.auditlog).order_by(schema.auditlog.c.id.desc()).limit(1)
        )).mappings().one()
    assert (entry["actor"], entry["action"], entry["object_repr"]) == (
        "bob@b.org", "set_password", "bob@b.org")
    async with me_client(store) as client:
        assert (await try_owner_login(client, "bob@b.org")).status_code == 400
        await owner_log_in(client, "bob@b.org", NEW_PASSWORD)


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"current_password": "wrong password", "new_password": NEW_PASSWORD,
      "new_password_confirm": NEW_PASSWORD}, "current_password",
     "This is not your current password."),
    ({"current_password": OWNER_PASSWORD, "new_password": "short",
      "new_password_confirm": "short"}, "new_password", "At least 10 characters."),
    ({"current_password": OWNER_PASSWORD, "new_password": NEW_PASSWORD,
      "new_password_confirm": "nope"}, "new_password_confirm", "The two passwords differ."),
    ({"current_password": OWNER_PASSWORD, "new_password": "1234567890",
      "new_password_confirm": "1234567890"}, "new_password",
     "This is one of the commonest passwords; choose another."),
    ({"current_password": "", "new_password": NEW_PASSWORD,
      "new_password_confirm": NEW_PASSWORD}, "current_password", "This field is required."),
])
async def test_password_form_refuses_bad_input_and_changes_nothing(
    store: Store, world: World, form: dict[str, str], field: str, message: str,
) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        before = await stored_hash(store, world.bob)
        answer = await owner.post("/me/password", form)
        assert answer.status_code == 400
        error = re.search(rf'id="error-{field}">.*?</p>', answer.text, re.S)
        assert error and message in error.group(0), answer.text
        assert await stored_hash(store, world.bob) == before


async def test_password_page_in_french(store: Store, world: World) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        answer = await owner.post("/me/language", {"language": "fr", "next": "/me/password"})
        assert answer.headers["location"] == "/me/password"
        page = await client.get("/me/password")
        assert 'lang="fr"' in page.text and "Mot de passe actuel" in page.text
        answer = await owner.post("/me/password", {
            "current_password": "faux", "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD})
        assert "Ce n’est pas votre mot de passe actuel." in answer.text


# --- forwarding ----------------------------------------------------------------------------------


async def test_forwarding_is_stored_as_aliases_of_the_mailbox(
    store: Store, world: World,
) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        answer = await owner.post("/me/forwarding", {
            "destinations": "Bob.Home@Elsewhere.example\nanna@a.org, anna@a.org",
            "keep_copy": "on"})
        assert answer.status_code == 303
        assert await alias_rows(store) == [
            ("bob@b.org", "anna@a.org"), ("bob@b.org", "bob.home@elsewhere.example"),
            ("bob@b.org", "bob@b.org")]
        page = (await client.get("/me/forwarding")).text
        assert "bob.home@elsewhere.example\nanna@a.org" in page and " checked" in page
        # Without a copy, the mailbox is no longer among the destinations.
        await owner.post("/me/forwarding", {"destinations": "anna@a.org"})
        assert await alias_rows(store) == [("bob@b.org", "anna@a.org")]
        # Empty: no forwarding at all.
        await owner.post("/me/forwarding", {"destinations": "", "keep_copy": "on"})
        assert await alias_rows(store) == []
    async with store.read() as conn:
        actions = list(await conn.scalars(
            sa.select(schema.auditlog.c.actor).where(
                schema.auditlog.c.object_type == "forwarding")))
    assert actions == ["bob@b.org"] * 3


@pytest.mark.parametrize(("destinations", "message"), [
    ("not-an-address", "“not-an-address” is not an email address (no @)."),
    ("bob@b.org", "bob@b.org cannot forward to itself"),
    ("\n".join(f"n{i}@elsewhere.example" for i in range(11)),
     "Forwarding goes to at most 10 addresses."),
])
async def test_forwarding_form_refuses_bad_input_and_changes_nothing(
    store: Store, world: World, destinations: str, message: str,
) -> None:
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        await owner.post("/me/forwarding", {"destinations": "kept@elsewhere.example"})
        answer = await owner.post("/me/forwarding", {"destinations": destinations,
                                                     "keep_copy": "on"})
        assert answer.status_code == 400
        error = re.search(r'id="error-destinations">.*?</p>', answer.text, re.S)
        assert error and message in error.group(0), answer.text
        assert destinations.splitlines()[0] in answer.text  # what was typed is shown again
    assert await alias_rows(store) == [("bob@b.org", "kept@elsewhere.example")]


async def test_forwarding_limit_is_a_setting(store: Store, world: World) -> None:
    async with me_client(store, me_settings(FORWARDING_MAX_DESTINATIONS=1)) as client:
        owner = await owner_log_in(client, "bob@b.org")
        answer = await owner.post("/me/forwarding",
                                  {"destinations": "x@elsewhere.example y@elsewhere.example"})
        assert answer.status_code == 400 and "at most 1 addresses" in answer.text
        answer = await owner.post("/me/forwarding",
                                  {"destinations": "x@elsewhere.example", "keep_copy": "on"})
        assert answer.status_code == 303


async def test_domain_can_forbid_external_forwarding(store: Store, world: World) -> None:
    async with store.write() as conn:
        await selfservice.put(conn, "test", EVERYTHING, world.b, {"external_forwarding": False})
        await aliases.create(conn, "test", EVERYTHING,
                             {"source": "team@a.org", "destination": "anna@a.org"})
    async with me_client(store) as client:
        owner = await owner_log_in(client, "bob@b.org")
        answer = await owner.post("/me/forwarding", {
            "destinations": "anna@a.org\nout@elsewhere.example"})
        assert answer.status_code == 400
        assert ("b.org does not allow forwarding outside this server&#39;s domains "
                "(out@elsewhere.example).") in answer.text
        assert await alias_rows(store) == [("team@a.org", "anna@a.org")]
        # Any hosted domain is inside, another tenant's included.
        answer = await owner.post("/me/forwarding", {"destinations": "anna@a.org"})
        assert answer.status_code == 303
    assert ("bob@b.org", "anna@a.org") in await alias_rows(store)


async def test_alias_on_a_mailbox_is_still_refused_and_points_to_forwarding(
    store: Store, world: World,
) -> None:
    async with store.write() as conn:
        with pytest.raises(Exception) as refused:
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": "bob@b.org", "destination": "anna@a.org"})
    error: Any = refused.value
    assert (error.code, error.params) == ("alias_on_mailbox", {"source": "bob@b.org"})
    assert "forwarding" in error.message


# --- self-service off ----------------------------------------------------------------------------


async def test_self_service_off_for_a_domain(store: Store, world: World) -> None:
    async with me_client(store) as client:
        await owner_log_in(client, "bob@b.org")
        async with store.write() as conn:
            await selfservice.put(conn, "test", EVERYTHING, world.b, {"self_service": False})
        # The open session ends at once, and the login is refused like a wrong password.
        assert (await client.get("/me/")).status_code == 303
        answer = await try_owner_login(client, "bob@b.org")
        assert answer.status_code == 400
        assert "Please enter a correct email address and password." in answer.text
        # Other domains keep it.
        await owner_log_in(client, "anna@a.org")


async def test_self_service_off_everywhere(store: Store, world: World) -> None:
    async with me_client(store) as client:
        assert 'href="/me/login"' in (await client.get("/login")).text
    async with me_client(store, me_settings(SELF_SERVICE=False)) as client:
        assert 'href="/me/login"' not in (await client.get("/login")).text
        for url in ("/me/", "/me/login", "/me/password", "/me/forwarding"):
            answer = await client.get(url)
            assert answer.status_code == 404, url
        token = csrf_token(await client.get("/login"))
        answer = await client.post("/me/login", data={
            "email": "bob@b.org", "password": OWNER_PASSWORD, "csrf_token": token})
        assert answer.status_code == 404
        assert COOKIE_NAME not in client.cookies


async def test_owner_page_for_an_unknown_path_is_not_found(store: Store, world: World) -> None:
    async with me_client(store) as client:
        owner: Owner = await owner_log_in(client, "bob@b.org")
        assert (await client.get("/me/nothing-here")).status_code == 404
        assert (await owner.post("/me/")).status_code == 405
