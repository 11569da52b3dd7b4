"""The admin side of the hardening campaign: each attack it found, kept as a test.

Every test here reproduces an attack as it was made against the API, the pages or the lookup
rules, and checks that it no longer works (each failed on the code before the fix).
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from adminapi.pages.sessions import COOKIE_NAME
from dinomail import schema
from dinomail.passwords import hash_password
from dinomail.store import EVERYTHING, Store, admins, aliases, mailboxes
from dinomail.store.changes import load_mail_data
from lookupd.resolve import resolve_alias, resolve_domain, resolve_senders
from lookupd.snapshot import Snapshot
from tests.support.adminapi import (
    PASSWORD,
    Account,
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    api_settings,
    basic_header,
    fast_admin_hashing,
)
from tests.support.pages import log_in, page_settings, pages_client, token_in

A, B = 1, 2  # a.test (alice's) and b.test (bob's)
GOOD_PASSWORD = "staple battery horse"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _tenants(store: Store) -> dict[str, Account]:
    """a.test (alice) and b.test (bob), a mailbox in each, and a superadmin."""
    await add_domain(store, "a.test")
    await add_domain(store, "b.test")
    await add_mailbox(store, "a1@a.test")
    await add_mailbox(store, "b1@b.test")
    return {
        "root": await add_admin(store, "root", superadmin=True),
        "alice": await add_admin(store, "alice", domain_ids=(A,)),
        "bob": await add_admin(store, "bob", domain_ids=(B,)),
    }


async def _snapshot(store: Store) -> Snapshot:
    async with store.read() as conn:
        _seq, data = await load_mail_data(conn)
    return Snapshot.build(data)


async def _count(store: Store, table: sa.Table) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# --- 1. alias domains take a mail domain's name -----------------------------------------------


async def test_a_domain_admin_cannot_take_a_domain_name_with_an_alias_domain(
    store: Store,
) -> None:
    who = await _tenants(store)
    async with api_client(store) as client:
        taken = await client.post("/api/aliasdomain/", json={
            "name": "gmail.com", "target_domain": A}, headers=who["alice"].headers)
        assert taken.status_code == 403, taken.text
        assert taken.json()["field"] == "name"
        # Another tenant's name gets the very same answer as a free one: no existence oracle.
        theirs = await client.post("/api/aliasdomain/", json={
            "name": "b.test", "target_domain": A}, headers=who["alice"].headers)
        assert (theirs.status_code, theirs.json()) == (403, taken.json())
        assert await _count(store, schema.aliasdomain) == 0
        snapshot = await _snapshot(store)
        assert resolve_domain(snapshot, "gmail.com") is None
        assert resolve_alias(snapshot, "a1@gmail.com") is None
        assert resolve_senders(snapshot, "a1@gmail.com") is None

        # A superadmin may, with the checks of a domain's name.
        made = await client.post("/api/aliasdomain/", json={
            "name": "a.example", "target_domain": A}, headers=who["root"].headers)
        assert made.status_code == 201, made.text
        clash = await client.post("/api/aliasdomain/", json={
            "name": "b.test", "target_domain": A}, headers=who["root"].headers)
        assert clash.status_code == 409
        # Alice keeps managing the alias domain of her domain, but cannot rename it.
        url = made.headers["location"]
        renamed = await client.patch(url, json={"name": "gmail.com"},
                                     headers=who["alice"].headers)
        assert renamed.status_code == 403
        switched_off = await client.patch(url, json={"active": False},
                                          headers=who["alice"].headers)
        assert switched_off.status_code == 202


async def test_the_alias_domain_page_refuses_a_domain_admin(store: Store) -> None:
    await _tenants(store)
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "alice")
        answer = await browser.post("/alias-domains/new", {
            "name": "gmail.com", "target": "a.test", "active": "on"})
        assert answer.status_code == 400
        assert "Only a superadmin can create or rename an alias domain." in answer.text
    assert await _count(store, schema.aliasdomain) == 0


# --- 2. password guessing through Basic credentials --------------------------------------------


async def test_basic_credentials_are_limited_per_account(store: Store) -> None:
    await _tenants(store)
    async with api_client(store) as client:
        for _ in range(5):
            wrong = await client.get("/api/apikey/", headers=basic_header("alice", "guess"))
            assert wrong.status_code == 401
        blocked = await client.get("/api/apikey/", headers=basic_header("alice"))
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
        assert blocked.json()["code"] == "too_many_logins"
        # Another account from the same address still logs in.
        assert (await client.get("/api/apikey/", headers=basic_header("bob"))).status_code == 200


async def test_basic_credentials_are_limited_per_address(store: Store) -> None:
    await _tenants(store)
    async with api_client(store) as client:
        for number in range(20):
            await client.get("/api/apikey/", headers=basic_header(f"guess{number}", "x"))
        blocked = await client.get("/api/apikey/", headers=basic_header("bob"))
        assert blocked.status_code == 429 and "retry-after" in blocked.headers


async def test_the_login_page_and_basic_share_one_limit(store: Store) -> None:
    """Failures on the page lock Basic out, and failures through Basic lock the page out."""
    await _tenants(store)
    async with pages_client(store, page_settings(ALLOWED_HOSTS=("testserver",))) as client:
        token = token_in(await client.get("/login"))
        for _ in range(5):
            await client.post("/login", data={
                "username": "alice", "password": "guess", "csrf_token": token})
        basic = await client.get("/api/apikey/", headers=basic_header("alice"))
        assert basic.status_code == 429
        for _ in range(5):
            await client.get("/api/apikey/", headers=basic_header("bob", "guess"))
        page = await client.post("/login", data={
            "username": "bob", "password": PASSWORD, "csrf_token": token})
        assert page.status_code == 429


# --- 8. tenant oracles ---------------------------------------------------------------------------


def _ok_cells(html: str) -> list[str]:
    """The "Exterior ?" and "Ok ?" cells of each alias row, in order."""
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    cells = []
    for row in rows:
        exterior = re.search(r'data-label="Exterior \?">([^<]*)<', row)
        ok = re.search(r'data-label="Ok \?">\s*<span class="([^"]+)"', row)
        if exterior and ok:
            cells.append(f"{exterior.group(1)}/{ok.group(1)}")
    return cells


async def test_the_ok_column_tells_nothing_about_other_tenants(store: Store) -> None:
    await _tenants(store)
    async with store.write() as conn:
        for destination in ("b1@b.test", "ghost@b.test", "someone@elsewhere.example"):
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": "list@a.test", "destination": destination})
    async with pages_client(store, page_settings()) as client:
        await log_in(client, "alice")
        cells = _ok_cells((await client.get("/virtual-aliases/")).text)
    # b1@b.test exists in bob's domain, ghost@b.test nowhere: alice sees both as exterior, like
    # an address of another server.
    assert len(cells) == 3 and len(set(cells)) == 1, cells


async def test_domain_questions_get_one_answer_for_theirs_and_missing(store: Store) -> None:
    who = await _tenants(store)
    alice = who["alice"].headers
    async with api_client(store) as client:
        for path, body in (
            ("/api/virtualuser/", {"email": "n@{}"}),
            ("/api/virtualalias/", {"source": "n@{}", "destination": "a1@a.test"}),
        ):
            answers = []
            for name in ("b.test", "nowhere.test"):
                filled = {key: value.format(name) for key, value in body.items()}
                answer = await client.post(path, json=filled, headers=alice)
                answers.append((answer.status_code,
                                answer.text.replace(name, "X")))
            assert answers[0] == answers[1], answers
    # The store itself, whatever presents it (pages, CLI, import).
    async with store.write() as conn:
        scope = await admins.scope_of(conn, {"id": who["alice"].id, "is_superadmin": False})
        errors = []
        for name in ("b.test", "nowhere.test"):
            with pytest.raises(Exception) as caught:
                await mailboxes.create(conn, "t", scope, {"email": f"n@{name}"},
                                       password_hash="{PLAIN}x")
            errors.append((type(caught.value), str(caught.value).replace(name, "X")))
    assert errors[0] == errors[1]


# --- 9. logging out ends the session server-side ------------------------------------------------


async def test_a_cookie_copied_before_logout_no_longer_works(store: Store) -> None:
    await _tenants(store)
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "alice")
        stolen = client.cookies[COOKIE_NAME]
        assert (await browser.post("/logout")).status_code == 303
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, stolen)
        answer = await client.get("/virtual-users/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


async def test_a_new_password_through_the_api_ends_page_sessions(store: Store) -> None:
    who = await _tenants(store)
    async with pages_client(store, page_settings()) as client:
        await log_in(client, "alice")
        stolen = client.cookies[COOKIE_NAME]
        changed = await client.patch(f"/api/admin/{who['alice'].id}/",
                                     json={"password": "a brand new one"},
                                     headers=who["root"].headers)
        assert changed.status_code == 202, changed.text
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, stolen)
        assert (await client.get("/")).status_code == 303
        # Deactivation too, even once the account is active again.
        client.cookies.clear()
        await log_in(client, "alice", "a brand new one")
        stolen = client.cookies[COOKIE_NAME]
        async with store.write() as conn:
            await admins.update(conn, "t", who["alice"].id, {"is_active": False})
            await admins.update(conn, "t", who["alice"].id, {"is_active": True})
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, stolen)
        assert (await client.get("/")).status_code == 303


# --- 10. invisible and control characters in addresses -----------------------------------------

BAD_LOCAL_PARTS = ("a\u200b", "a\u202egnp.exe", "a\u0085b", "a\ufeff", "a\u2028b", "\uff41",
                   "a\u00a0b", "a\u2066b")


async def test_addresses_with_invisible_characters_are_refused_everywhere(store: Store) -> None:
    who = await _tenants(store)
    root = who["root"].headers
    async with api_client(store) as client:
        for local in BAD_LOCAL_PARTS:
            address = f"{local}@a.test"
            for path, body, field in (
                ("/api/virtualuser/", {"email": address}, "email"),
                ("/api/virtualalias/", {"source": address, "destination": "a1@a.test"},
                 "source"),
                ("/api/virtualalias/", {"source": "x@a.test", "destination": address},
                 "destination"),
            ):
                answer = await client.post(path, json=body, headers=root)
                assert answer.status_code == 400, (path, address, answer.text)
                assert answer.json()["field"] == field
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "root")
        for local in BAD_LOCAL_PARTS:
            answer = await browser.post("/virtual-users/new", {"email": f"{local}@a.test"})
            assert answer.status_code == 400, local
    assert await _count(store, schema.virtualuser) == 2
    assert await _count(store, schema.virtualalias) == 0


async def test_unicode_local_parts_are_stored_in_nfc(store: Store) -> None:
    await _tenants(store)
    box = await add_mailbox(store, "Re\u0301mi@a.test")
    assert box["email"] == "r\u00e9mi@a.test"


# --- 11. mailbox password policy ----------------------------------------------------------------


# Each a function of the mailbox's address: its own address and name count as weak.
WEAK_PASSWORDS = {
    "one character": lambda email: "x",
    "short": lambda email: "short1",
    "its address": lambda email: email.upper(),
    "its name": lambda email: email.partition("@")[0],
    "common": lambda email: "qwertyuiop",
    "common digits": lambda email: "1234567890",
}


@pytest.mark.parametrize("kind", WEAK_PASSWORDS)
async def test_weak_mailbox_passwords_are_refused(store: Store, kind: str) -> None:
    weak = WEAK_PASSWORDS[kind]
    who = await _tenants(store)
    await add_mailbox(store, "longer.name@a.test")  # id 3: a name long enough to be a password
    root = who["root"].headers
    new, existing = "somebody.new@a.test", "longer.name@a.test"
    async with api_client(store) as client:
        created = await client.post("/api/virtualuser/", json={
            "email": new, "password": weak(new)}, headers=root)
        assert created.status_code == 400 and created.json()["field"] == "password", kind
        changed = await client.put("/api/changeuserpassword/3/",
                                   json={"password": weak(existing)}, headers=root)
        assert changed.status_code == 400 and changed.json()["field"] == "password", kind
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "root")
        answer = await browser.post("/virtual-users/3/edit-password", {
            "password": weak(existing), "password_confirm": weak(existing)})
        assert answer.status_code == 400, kind
        answer = await browser.post("/virtual-users/new", {
            "email": new, "password": weak(new), "password_confirm": weak(new)})
        assert answer.status_code == 400, kind
    assert await _count(store, schema.virtualuser) == 3


async def test_the_minimum_length_is_a_setting_and_hashes_are_not_judged(store: Store) -> None:
    who = await _tenants(store)
    settings = api_settings(MAILBOX_PASSWORD_MIN_LENGTH=16)
    async with api_client(store, settings) as client:
        short = await client.post("/api/virtualuser/", json={
            "email": "n@a.test", "password": "fifteen chars!!"}, headers=who["root"].headers)
        assert short.status_code == 400
        assert "at least 16" in short.json()["error"]
        ok = await client.post("/api/virtualuser/", json={
            "email": "n@a.test", "password": "sixteen chars!!!"}, headers=who["root"].headers)
        assert ok.status_code == 201, ok.text
    # A hash given as it is (import, adoption) is stored without judging what it hides.
    async with store.write() as conn:
        row = await mailboxes.create(conn, "t", EVERYTHING, {"email": "old@a.test"},
                                     password_hash=hash_password("x", "SHA512-CRYPT"))
    assert row["email"] == "old@a.test"


# --- 12. risky alias cases -----------------------------------------------------------------------


async def test_an_alias_cannot_take_a_mailbox_address(store: Store) -> None:
    who = await _tenants(store)
    async with api_client(store) as client:
        answer = await client.post("/api/virtualalias/", json={
            "source": "a1@a.test", "destination": "thief@elsewhere.example"},
            headers=who["alice"].headers)
        assert answer.status_code == 409 and answer.json()["field"] == "source"
        made = await client.post("/api/virtualalias/", json={
            "source": "other@a.test", "destination": "thief@elsewhere.example"},
            headers=who["alice"].headers)
        moved = await client.patch(made.headers["location"], json={"source": "a1@a.test"},
                                   headers=who["alice"].headers)
        assert moved.status_code == 409
    snapshot = await _snapshot(store)
    assert resolve_alias(snapshot, "a1@a.test") == ["a1@a.test"]


async def test_an_alias_to_an_inactive_mailbox_is_not_ok(store: Store) -> None:
    await _tenants(store)
    await add_mailbox(store, "off@a.test", active=False)
    async with store.write() as conn:
        for destination in ("off@a.test", "a1@a.test"):
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": "team@a.test", "destination": destination})
        status = await aliases.destination_status(
            conn, EVERYTHING, ["off@a.test", "a1@a.test"])
    assert status == {"off@a.test": False, "a1@a.test": True}
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "alice")
        cells = _ok_cells((await client.get("/virtual-aliases/")).text)
        assert sorted(cells) == ["No/ok-mark", "No/warn-mark"]
        # Creating one on the page says so at once.
        made = await browser.post("/virtual-aliases/new", {
            "source": "sales@a.test", "destination": "off@a.test"})
        assert made.status_code == 303
        shown = (await client.get(made.headers["location"])).text
        assert "off@a.test is not an active user or alias here" in shown
        made = await browser.post("/virtual-aliases/new", {
            "source": "sales@a.test", "destination": "a1@a.test"})
        shown = (await client.get(made.headers["location"])).text
        assert "is not an active user or alias here" not in shown


async def test_catch_all_owners_send_as_the_domain_only_when_it_says_so(store: Store) -> None:
    who = await _tenants(store)
    await add_mailbox(store, "carol@a.test")
    async with store.write() as conn:
        await aliases.create(conn, "t", EVERYTHING,
                             {"source": "@a.test", "destination": "carol@a.test"})
    snapshot = await _snapshot(store)
    assert resolve_alias(snapshot, "ceo@a.test") == ["carol@a.test"]
    assert resolve_senders(snapshot, "ceo@a.test") is None
    async with api_client(store) as client:
        shown = await client.get(f"/api/virtualdomain/{A}/", headers=who["alice"].headers)
        assert shown.json()["catchall_senders"] is False
        turned_on = await client.patch(f"/api/virtualdomain/{A}/", json={
            "catchall_senders": True}, headers=who["alice"].headers)
        assert turned_on.status_code == 202
    assert resolve_senders(await _snapshot(store), "ceo@a.test") == ["carol@a.test"]
    # The domain's page shows the choice and turns it off again.
    async with pages_client(store, page_settings()) as client:
        browser = await log_in(client, "alice")
        form = (await client.get(f"/virtual-domains/{A}/edit")).text
        assert re.search(r'name="catchall_senders"[^>]*checked', form)
        answer = await browser.post(f"/virtual-domains/{A}/edit", {"active": "on"})
        assert answer.status_code == 303
    assert resolve_senders(await _snapshot(store), "ceo@a.test") is None
