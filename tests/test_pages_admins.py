"""The Admins and Audit log pages without a browser, on SQLite and PostgreSQL: creating,
changing, deactivating admins and resetting their password with the API's rules; forms that
refuse bad input without changing anything; CSRF; a domain admin kept to themself and to the
audit entries of their domains; the CSV export; read-only admins."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dinomail import migrate, schema
from dinomail.store import EVERYTHING, Store, admins, apikeys, domains
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import import_document
from tests.support.admin_pages import log_in, pages_client, snapshot, token_in
from tests.support.adminapi import PASSWORD, add_domain, add_mailbox, fast_admin_hashing
from tests.support.readme import section

TABLES = (schema.admin, schema.admin_domain, schema.apikey, schema.auditlog,
          schema.virtualdomain, schema.dkimkey)
CLIENT_ADDRESS = "198.51.100.7"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def ids(store: Store) -> dict[str, int]:
    """a.org (alice's) and b.org; root (superadmin), alice (a.org), bob (b.org)."""
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    await add_mailbox(store, "anna@a.org")
    await add_mailbox(store, "bert@b.org")
    async with store.write() as conn:
        root = await admins.create(conn, "test", username="root", password=PASSWORD,
                                   is_superadmin=True)
        alice = await admins.create(conn, "test", username="alice", password=PASSWORD,
                                    domain_ids=[a["id"]])
        bob = await admins.create(conn, "test", username="bob", password=PASSWORD,
                                  domain_ids=[b["id"]])
    return {"a": a["id"], "b": b["id"], "root": root["id"], "alice": alice["id"],
            "bob": bob["id"]}


@pytest.fixture
async def client(store: Store, ids: dict[str, int]) -> httpx.AsyncClient:
    async with pages_client(store) as client:
        yield client  # type: ignore[misc]


def error_of(answer: httpx.Response, field: str) -> str:
    match = re.search(rf'id="error-{field}">.*?</svg>(.*?)</p>', answer.text, re.S)
    assert match, f"no error on {field}"
    return html.unescape(match.group(1)).strip()


async def entries(store: Store) -> list[dict]:
    async with store.read() as conn:
        rows = (await conn.execute(sa.select(schema.auditlog).order_by(schema.auditlog.c.id)))
        return [dict(row._mapping) for row in rows]


# --- admins ---------------------------------------------------------------------------------------


async def test_superadmin_creates_changes_and_deactivates_a_domain_admin(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    listed = await root.get("/admins/")
    assert listed.status_code == 200
    assert all(name in listed.text for name in ("root", "alice", "bob"))
    answer = await root.post("/admins/new", {
        "username": "carol", "email": "carol@a.org", "password": "a long password",
        "password_confirm": "a long password", "domains": "a.org\nb.org", "is_active": "on"})
    assert answer.status_code == 303, answer.text
    async with store.read() as conn:
        carol = await admins.get_by_username(conn, "carol")
        carol = await admins.get(conn, carol["id"])
    assert carol["domain_ids"] == [ids["a"], ids["b"]] and not carol["is_superadmin"]
    assert carol["is_active"] and not carol["read_only"]

    # She logs in with the password given.
    async with pages_client(store) as other:
        carol_session = await log_in(other, "carol", "a long password")
        assert "anna@a.org" in (await carol_session.get("/virtual-users/")).text

    answer = await root.post(f"/admins/{carol['id']}/edit", {
        "email": "carol@b.org", "domains": "b.org", "is_active": "on", "read_only": "on"})
    assert answer.status_code == 303, answer.text
    async with store.read() as conn:
        changed = await admins.get(conn, carol["id"])
    assert changed["domain_ids"] == [ids["b"]] and changed["read_only"]
    assert changed["email"] == "carol@b.org"

    assert (await root.post(f"/admins/{carol['id']}/deactivate")).status_code == 303
    async with store.read() as conn:
        assert not (await admins.get(conn, carol["id"]))["is_active"]
    async with pages_client(store) as other:
        login = await other.post("/login", data={
            "username": "carol", "password": "a long password",
            "csrf_token": token_in(await other.get("/login"))})
        assert login.status_code == 400

    logged = [entry for entry in await entries(store) if entry["object_type"] == "admin"
              and entry["object_repr"] == "carol"]
    assert [entry["action"] for entry in logged] == ["create", "update", "update"]
    assert all(entry["actor"] == "admin:root" and entry["address"] == CLIENT_ADDRESS
               for entry in logged)
    assert all("password" not in (entry["new_values"] or "") for entry in logged)


async def test_reset_password_is_shown_once_and_ends_the_sessions(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    async with pages_client(store) as other:
        alice = await log_in(other, "alice")
        answer = await root.post(f"/admins/{ids['alice']}/reset-password")
        assert answer.status_code == 200
        password = html.unescape(
            re.search(r'id="new-password"[^>]*value="([^"]+)"', answer.text).group(1))  # type: ignore[union-attr]
        assert len(password) >= 16
        # Her open session ended; the old password is refused, the new one works.
        assert (await alice.get("/")).status_code == 303
    async with pages_client(store) as other:
        assert (await log_in(other, "alice", password)).token
    assert password not in (await root.get(f"/admins/{ids['alice']}/edit")).text
    reset = [entry for entry in await entries(store) if entry["action"] == "reset_password"]
    assert len(reset) == 1 and reset[0]["object_repr"] == "alice"
    assert password not in json.dumps([str(value) for value in reset[0].values()])
    # Not one's own: that needs the current password, on the account page.
    own = await root.post(f"/admins/{ids['root']}/reset-password")
    assert own.status_code == 400 and "your account page" in own.text


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"username": ""}, "username", "Use 1 to 150 letters"),
    ({"username": "bad name"}, "username", "Use 1 to 150 letters"),
    ({"username": "alice"}, "username", "The admin alice already exists."),
    ({"password": "short", "password_confirm": "short"}, "password", "At least 8 characters."),
    ({"password_confirm": "something else"}, "password_confirm", "The two passwords don't"),
    ({"domains": "a.org\nnowhere.example"}, "domains", "There is no domain nowhere.example."),
    ({"domains": "not a domain!"}, "domains", "There is no domain"),
    ({"email": "no-at-sign"}, "email", "is not an email address"),
])
async def test_new_admin_form_refuses_bad_input_and_changes_nothing(
    client: httpx.AsyncClient, store: Store, form: dict[str, str], field: str, message: str,
) -> None:
    root = await log_in(client, "root")
    values = {"username": "dave", "password": "a long password",
              "password_confirm": "a long password", "domains": "a.org", "is_active": "on",
              **form}
    before = await snapshot(store, TABLES)
    answer = await root.post("/admins/new", values)
    assert answer.status_code == 400
    assert message in error_of(answer, field)
    assert await snapshot(store, TABLES) == before


@pytest.mark.parametrize(("who", "form", "field", "message"), [
    ("alice", {"domains": "nowhere.example"}, "domains", "There is no domain"),
    ("alice", {"email": "x@"}, "email", ""),
    ("root", {"is_superadmin": "on"}, "is_active", "You cannot deactivate your own account."),
    ("root", {"is_active": "on"}, "is_superadmin", "You cannot remove your own superadmin"),
    ("root", {"is_active": "on", "is_superadmin": "on", "read_only": "on"}, "read_only",
     "You cannot make your own account read-only."),
])
async def test_edit_admin_form_refuses_bad_input_and_changes_nothing(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int], who: str,
    form: dict[str, str], field: str, message: str,
) -> None:
    root = await log_in(client, "root")
    before = await snapshot(store, TABLES)
    answer = await root.post(f"/admins/{ids[who]}/edit", form)
    assert answer.status_code == 400
    assert message in error_of(answer, field)
    assert await snapshot(store, TABLES) == before
    # Deactivating oneself by the button is refused the same way.
    answer = await root.post(f"/admins/{ids['root']}/deactivate")
    assert answer.status_code == 400 and "You cannot deactivate your own account." in answer.text
    assert await snapshot(store, TABLES) == before


async def test_forms_without_the_csrf_token_are_refused(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    before = await snapshot(store, TABLES)
    posts = {
        "/admins/new": {"username": "eve", "password": "a long password",
                        "password_confirm": "a long password"},
        f"/admins/{ids['alice']}/edit": {"domains": "b.org", "is_active": "on"},
        f"/admins/{ids['alice']}/deactivate": {},
        f"/admins/{ids['alice']}/reset-password": {},
        f"/virtual-domains/{ids['a']}/dkim": {"algorithm": "rsa"},
    }
    for url, data in posts.items():
        for token in (None, "forged"):
            sent = data if token is None else {**data, "csrf_token": token}
            answer = await client.post(url, data=sent)
            assert answer.status_code == 403, url
            assert "without a valid security token" in answer.text
    assert await snapshot(store, TABLES) == before
    assert root.token


async def test_a_domain_admin_sees_only_themself(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    alice = await log_in(client, "alice")
    listed = await alice.get("/admins/")
    assert listed.status_code == 200 and "alice" in listed.text
    assert "bob" not in listed.text and ">root<" not in listed.text
    own = await alice.get(f"/admins/{ids['alice']}/edit")
    assert own.status_code == 200 and "a.org" in own.text and "Save" not in own.text
    missing = await alice.get("/admins/999999/edit")
    for other in (ids["bob"], ids["root"]):
        answer = await alice.get(f"/admins/{other}/edit")
        # The same page but for its own path (in the language form's link back).
        assert (answer.status_code, answer.text.replace(f"/admins/{other}/", "/admins/N/")) == (
            missing.status_code, missing.text.replace("/admins/999999/", "/admins/N/"))
        assert answer.status_code == 404
        posted = await alice.post(f"/admins/{other}/reset-password")
        assert posted.status_code == 404
    before = await snapshot(store, TABLES)
    for url in ("/admins/new", f"/admins/{ids['alice']}/edit",
                f"/admins/{ids['alice']}/deactivate"):
        answer = await alice.post(url, {"username": "x", "domains": "b.org"})
        assert answer.status_code == 403 and "Only a superadmin can manage admins." in answer.text
    assert (await alice.get("/admins/new")).status_code == 403
    assert await snapshot(store, TABLES) == before


async def test_a_read_only_admin_changes_nothing(store: Store, ids: dict[str, int]) -> None:
    async with store.write() as conn:
        await admins.update(conn, "test", ids["alice"], {"read_only": True})
        _key, secret = await apikeys.create(conn, "test", ids["alice"])
    async with pages_client(store) as client:
        alice = await log_in(client, "alice")
        assert "anna@a.org" in (await alice.get("/virtual-users/")).text
        # The API key's last use changes; nothing else may.
        tables = [table for table in TABLES if table is not schema.apikey]
        before = await snapshot(store, tables)
        answer = await alice.post(f"/virtual-domains/{ids['a']}/edit",
                                  {"display_name": "changed", "active": "on"})
        assert answer.status_code == 403 and "read-only" in answer.text
        answer = await alice.post(f"/virtual-domains/{ids['a']}/dkim", {"algorithm": "rsa"})
        assert answer.status_code == 403
        # The API, with a key that is not read-only itself.
        api = await client.patch(f"/api/virtualdomain/{ids['a']}/",
                                 json={"display_name": "changed"},
                                 headers={"Authorization": f"ApiKey alice:{secret}"})
        assert (api.status_code, api.json()["code"]) == (403, "read_only")
        assert api.json()["error"] == "this admin is read-only"
        assert await snapshot(store, tables) == before
        assert (await alice.post("/logout")).status_code == 303


# --- the audit log --------------------------------------------------------------------------------


async def _changes(store: Store, ids: dict[str, int]) -> None:
    async with store.write() as conn:
        await domains.update(conn, "admin:alice", EVERYTHING, ids["a"], {"display_name": "A"})
        await domains.update(conn, "admin:bob", EVERYTHING, ids["b"], {"display_name": "B"})
        await domains.update(conn, "apikey:abcd1234(alice)", EVERYTHING, ids["a"],
                             {"display_name": "=HYPERLINK(\"http://x\")"})
        await admins.create(conn, "admin:root", username="-cmd", password=PASSWORD)


async def test_audit_log_filters_and_pages(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    await _changes(store, ids)
    root = await log_in(client, "root")
    everything = await root.get("/audit-log/")
    assert everything.status_code == 200
    assert "admin:bob" in everything.text and "-cmd" in everything.text
    by_alice = await root.get("/audit-log/", admin="alice")
    assert "apikey:abcd1234(alice)" in by_alice.text and "admin:alice" in by_alice.text
    assert "admin:bob" not in by_alice.text
    on_b = await root.get("/audit-log/", domain="b.org", action="update")
    assert "admin:bob" in on_b.text and "admin:alice" not in on_b.text
    # The old and new values are shown.
    assert "<ins>B</ins>" in on_b.text
    assert "No entry matches." in (await root.get("/audit-log/", since="2999-01-01")).text
    assert "admin:bob" in (await root.get("/audit-log/", since="2000-01-01",
                                          until="2999-12-31")).text
    # The other spelling leads to the same page, keeping the filters.
    moved = await root.get("/auditlog/", admin="bob")
    assert (moved.status_code, moved.headers["location"]) == (308, "/audit-log/?admin=bob")

    # Paging by cursor: 60 more entries make two pages.
    async with store.write() as conn:
        for number in range(60):
            await domains.update(conn, "admin:root", EVERYTHING, ids["a"],
                                 {"display_name": f"name {number}"})
    first = await root.get("/audit-log/", domain="a.org")
    next_url = html.unescape(re.search(r'rel="next" href="([^"]+)"', first.text).group(1))  # type: ignore[union-attr]
    assert "after=" in next_url and "domain=a.org" in next_url
    second = await root.client.get(next_url)
    assert second.status_code == 200 and "name 59" not in second.text
    assert "name 59" in first.text and "name 0<" in second.text


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"since": "yesterday"}, "since", "Enter a date as YYYY-MM-DD."),
    ({"until": "2026-13-01"}, "until", "Enter a date as YYYY-MM-DD."),
    ({"since": "2026-12-02", "until": "2026-12-01"}, "until", "The end date is before"),
    ({"domain": "nowhere.example"}, "domain", "No such domain among yours."),
    ({"action": "DROP TABLE"}, "action", "No such action."),
    ({"admin": "no such name!"}, "admin", "Use 1 to 150 letters"),
])
async def test_audit_log_filters_refuse_bad_input(
    client: httpx.AsyncClient, params: dict[str, str], field: str, message: str,
) -> None:
    root = await log_in(client, "root")
    answer = await root.get("/audit-log/", **params)
    assert answer.status_code == 400
    assert message in error_of(answer, field)
    assert (await root.get("/audit-log/export.csv", **params)).status_code == 400


async def test_a_domain_admin_reads_only_the_entries_of_their_domains(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    await _changes(store, ids)
    alice = await log_in(client, "alice")
    shown = await alice.get("/audit-log/")
    assert shown.status_code == 200
    assert "admin:alice" in shown.text and "admin:bob" not in shown.text
    # Entries about no domain (admins) are for superadmins.
    assert "-cmd" not in shown.text
    # Another admin's domain in the filter is a domain that does not exist.
    theirs = await alice.get("/audit-log/", domain="b.org")
    nowhere = await alice.get("/audit-log/", domain="nowhere.example")
    assert theirs.status_code == nowhere.status_code == 400
    assert error_of(theirs, "domain") == error_of(nowhere, "domain")
    exported = await alice.get("/audit-log/export.csv")
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and {row["domain"] for row in rows} == {"a.org"}
    assert "admin:bob" not in exported.text


async def test_csv_export_has_the_selection_and_is_safe_in_a_spreadsheet(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    await _changes(store, ids)
    root = await log_in(client, "root")
    answer = await root.get("/audit-log/export.csv", admin="root")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["object_repr"] for row in rows] == ["'-cmd"]
    assert rows[0]["actor"] == "admin:root" and rows[0]["action"] == "create"
    assert "password" not in rows[0]["new_values"] and PASSWORD not in answer.text
    everything = list(csv.DictReader(io.StringIO(
        (await root.get("/audit-log/export.csv")).text)))
    for row in everything:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@")), cell
    assert any("HYPERLINK" in row["new_values"] for row in everything)


async def test_the_readme_section_names_pages_that_exist(
    client: httpx.AsyncClient, ids: dict[str, int],
) -> None:
    text = section("Admins, audit log and DKIM in the pages")
    paths = {path for path in re.findall(r"`(/[^`\s]*)`", text) if not path.startswith("/api/")}
    assert {"/admins/", "/audit-log/", "/auditlog/", "/audit-log/export.csv",
            "/virtual-domains/<id>/dkim"} <= paths
    root = await log_in(client, "root")
    for path in sorted(paths):
        answer = await root.get(path.replace("<id>", str(ids["a"])))
        assert answer.status_code in (200, 308), path


async def test_export_and_import_keep_a_read_only_admin_read_only(
    store: Store, ids: dict[str, int], tmp_path: Path,
) -> None:
    async with store.write() as conn:
        await admins.update(conn, "test", ids["alice"], {"read_only": True})
    doc = json.loads("".join([piece async for piece in export_document(store)]))
    shown = {row["username"]: row.get("read_only") for row in doc["admins"]}
    # Written only when true: documents of other admins are as before.
    assert shown == {"root": None, "alice": True, "bob": None}
    target = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    try:
        await migrate.upgrade(target.engine)
        report = await import_document(target, doc)
        assert not report.errors
        async with target.read() as conn:
            flags = {name: (await admins.get_by_username(conn, name))["read_only"]
                     for name in ("root", "alice", "bob")}
        assert flags == {"root": False, "alice": True, "bob": False}
        refused = await import_document(
            target, {**doc, "admins": [{**doc["admins"][1], "read_only": "yes"}]},
            on_conflict="update", dry_run=True)
        assert any("read_only" in str(error) for error in refused.errors)
    finally:
        await target.close()
