"""The admin's pages of a mailbox's vacation reply and app passwords
(`/virtual-users/<id>/vacation`, `/virtual-users/<id>/app-passwords`) and the domain's
"require app passwords" switch, without a browser, on SQLite and PostgreSQL: saved through the
store and audited as the admin, bad input shown under its field with nothing changed, CSRF,
read-only admins refused, and a domain admin answered alike for another domain's mailbox and a
missing one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa

from dinomail import schema, totp
from dinomail.passwords import verify_password
from dinomail.store import (
    EVERYTHING,
    Store,
    admins,
    apppasswords,
    domains,
    ownerlogin,
    vacation,
)
from tests.support.admin_pages import log_in, pages_client, snapshot
from tests.support.adminapi import PASSWORD, add_domain, add_mailbox, fast_admin_hashing

TABLES = (schema.vacation, schema.apppassword, schema.auditlog, schema.virtualdomain,
          schema.mailboxtotp)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@dataclass
class World:
    anna: int  # anna@a.org
    bob: int   # bob@b.org
    a: int


@pytest.fixture
async def world(store: Store) -> World:
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    anna = await add_mailbox(store, "anna@a.org")
    bob = await add_mailbox(store, "bob@b.org")
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[a["id"]])
        await admins.create(conn, "test", username="reader", password=PASSWORD,
                            domain_ids=[a["id"], b["id"]], read_only=True)
    return World(anna=anna["id"], bob=bob["id"], a=a["id"])


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="error-{field}">.*?</p>', html, re.S)
    assert match, f"no error under {field}"
    return match.group(0)


async def last_audit(store: Store) -> dict[str, object]:
    async with store.read() as conn:
        return dict((await conn.execute(
            sa.select(schema.auditlog).order_by(schema.auditlog.c.id.desc()).limit(1)
        )).mappings().one())


async def test_admin_sets_and_removes_a_vacation_reply(store: Store, world: World) -> None:
    async with pages_client(store) as client:
        admin = await log_in(client, "alice")
        page = await admin.get(f"/virtual-users/{world.anna}/edit")
        assert f'href="/virtual-users/{world.anna}/vacation"' in page.text
        assert f'href="/virtual-users/{world.anna}/app-passwords"' in page.text
        page = await admin.get(f"/virtual-users/{world.anna}/vacation")
        assert page.status_code == 200 and "Remove the vacation reply" not in page.text
        answer = await admin.post(f"/virtual-users/{world.anna}/vacation", {
            "enabled": "on", "subject": "Away", "body": "Back soon.", "starts": "2030-07-01",
            "ends": "", "interval_days": "5"})
        assert (answer.status_code, answer.headers["location"]) == (
            303, f"/virtual-users/{world.anna}/vacation")
        async with store.read() as conn:
            row = await vacation.get(conn, EVERYTHING, world.anna)
        assert row is not None
        assert (row["enabled"], row["subject"], row["starts"], row["ends"],
                row["interval_days"]) == (True, "Away", date(2030, 7, 1), None, 5)
        entry = await last_audit(store)
        assert (entry["actor"], entry["object_type"]) == ("admin:alice", "vacation")
        page = await admin.get(f"/virtual-users/{world.anna}/vacation")
        assert "The vacation reply of anna@a.org was saved." in page.text
        assert 'value="2030-07-01"' in page.text
        assert f'action="/virtual-users/{world.anna}/vacation/delete"' in page.text

        before = await snapshot(store, TABLES)
        for form, field, message in (
            ({"enabled": "on", "body": "x", "starts": "2030-07-14", "ends": "2030-07-01",
              "interval_days": "3"}, "ends", "The last day cannot come before the first."),
            ({"enabled": "on", "body": "", "interval_days": "3"}, "body",
             "A message is needed to turn the reply on."),
            ({"body": "x", "interval_days": "0"}, "interval_days",
             "Enter a number of days from 1 to 30."),
        ):
            answer = await admin.post(f"/virtual-users/{world.anna}/vacation", form)
            assert answer.status_code == 400, form
            assert message in field_error(answer.text, field), form
        assert await snapshot(store, TABLES) == before

        answer = await admin.post(f"/virtual-users/{world.anna}/vacation/delete")
        assert answer.status_code == 303
        async with store.read() as conn:
            assert await vacation.get(conn, EVERYTHING, world.anna) is None
        assert (await last_audit(store))["actor"] == "admin:alice"


async def test_admin_creates_and_revokes_app_passwords(store: Store, world: World) -> None:
    async with pages_client(store) as client:
        admin = await log_in(client, "alice")
        url = f"/virtual-users/{world.anna}/app-passwords"
        page = await admin.get(url)
        assert "This mailbox has no app password yet." in page.text
        answer = await admin.post(url, {"name": "phone", "protocol_pop3": "on"})
        assert answer.status_code == 200, answer.text
        secret = re.search(r'id="new-secret" class="secret" type="text" value="([^"]+)"',
                           answer.text)
        assert secret, answer.text
        async with store.read() as conn:
            rows = await apppasswords.list_for(conn, EVERYTHING, world.anna)
            stored = (await conn.execute(sa.select(schema.apppassword.c.password))).scalar_one()
        assert [(row["name"], row["protocols"]) for row in rows] == [("phone", ["pop3"])]
        assert verify_password(secret.group(1), stored)
        entry = await last_audit(store)
        assert (entry["actor"], entry["action"], entry["object_type"]) == (
            "admin:alice", "create", "app_password")
        page = await admin.get(url)
        assert "phone" in page.text and secret.group(1) not in page.text

        before = await snapshot(store, TABLES)
        for form, field, message in (
            ({"name": "phone", "protocol_imap": "on"}, "name",
             "The app password phone already exists."),
            ({"name": "tablet"}, "protocols", "Choose at least one."),
            ({"name": "", "protocol_imap": "on"}, "name", "This field is required."),
        ):
            answer = await admin.post(url, form)
            assert answer.status_code == 400, form
            assert message in field_error(answer.text, field), form
            assert 'id="new-secret"' not in answer.text
        assert await snapshot(store, TABLES) == before

        answer = await admin.post(f"{url}/{rows[0]['id']}/revoke")
        assert (answer.status_code, answer.headers["location"]) == (303, url)
        async with store.read() as conn:
            assert await apppasswords.list_for(conn, EVERYTHING, world.anna) == []
        entry = await last_audit(store)
        assert (entry["actor"], entry["action"]) == ("admin:alice", "revoke")


async def test_another_domains_mailbox_is_as_missing(store: Store, world: World) -> None:
    async with store.write() as conn:
        bobs = await apppasswords.create(
            conn, "test", EVERYTHING, world.bob, name="laptop", protocols=["imap"],
            password_hash=await apppasswords.hash_secret("bob-secret"))
    missing = world.bob + 1000
    before = await snapshot(store, TABLES)
    async with pages_client(store) as client:
        admin = await log_in(client, "alice")
        for path in ("/vacation", "/app-passwords"):
            theirs = await admin.get(f"/virtual-users/{world.bob}{path}")
            nothing = await admin.get(f"/virtual-users/{missing}{path}")
            assert theirs.status_code == nothing.status_code == 404
            # The same page, but for the URL it names (the language switch's `next`).
            assert theirs.text.replace(f"/{world.bob}/", "/N/") == nothing.text.replace(
                f"/{missing}/", "/N/")
        for path, form in (
            ("/vacation", {"enabled": "on", "body": "x", "interval_days": "3"}),
            ("/vacation/delete", {}),
            ("/app-passwords", {"name": "evil", "protocol_imap": "on"}),
            (f"/app-passwords/{bobs['id']}/revoke", {}),
        ):
            theirs = await admin.post(f"/virtual-users/{world.bob}{path}", form)
            nothing = await admin.post(f"/virtual-users/{missing}{path}", form)
            assert theirs.status_code == nothing.status_code == 404, path
        # Their own mailbox with another mailbox's app password id: not found either.
        answer = await admin.post(
            f"/virtual-users/{world.anna}/app-passwords/{bobs['id']}/revoke")
        assert answer.status_code == 404
    assert await snapshot(store, TABLES) == before


async def test_csrf_and_read_only_admins_change_nothing(store: Store, world: World) -> None:
    async with store.write() as conn:  # anna's owner has an authenticator app
        secret = await ownerlogin.start_totp(conn, EVERYTHING, world.anna)
        await ownerlogin.confirm_totp(conn, "test", EVERYTHING, world.anna,
                                      totp.code_at(secret, totp.time_step()))
    before = await snapshot(store, TABLES)
    posts = (
        (f"/virtual-users/{world.anna}/vacation",
         {"enabled": "on", "body": "x", "interval_days": "3"}),
        (f"/virtual-users/{world.anna}/app-passwords", {"name": "p", "protocol_imap": "on"}),
        (f"/virtual-domains/{world.a}/edit", {"name": "a.org", "active": "on",
                                          "require_app_passwords": "on"}),
        (f"/virtual-users/{world.anna}/two-factor/remove", {}),
    )
    async with pages_client(store) as client:
        await log_in(client, "alice")
        for url, form in posts:
            for token in (None, "forged"):
                sent = dict(form) if token is None else {**form, "csrf_token": token}
                assert (await client.post(url, data=sent)).status_code == 403, url
    async with pages_client(store) as client:
        reader = await log_in(client, "reader")
        assert (await reader.get(f"/virtual-users/{world.anna}/app-passwords")).status_code == 200
        for url, form in posts:
            answer = await reader.post(url, form)
            assert answer.status_code == 403, url
            assert "read-only" in answer.text
    assert await snapshot(store, TABLES) == before


async def test_domain_page_sets_require_app_passwords(store: Store, world: World) -> None:
    async with pages_client(store) as client:
        admin = await log_in(client, "alice")
        page = await admin.get(f"/virtual-domains/{world.a}/edit")
        assert 'name="require_app_passwords"' in page.text
        assert not re.search(r'name="require_app_passwords"[^>]*checked', page.text)
        answer = await admin.post(f"/virtual-domains/{world.a}/edit", {
            "name": "a.org", "active": "on", "require_app_passwords": "on"})
        assert answer.status_code == 303, answer.text
        async with store.read() as conn:
            assert (await domains.get(conn, EVERYTHING, world.a))["require_app_passwords"]
        page = await admin.get(f"/virtual-domains/{world.a}/edit")
        assert re.search(r'name="require_app_passwords"[^>]*checked', page.text)
        answer = await admin.post(f"/virtual-domains/{world.a}/edit", {"name": "a.org",
                                                                  "active": "on"})
        assert answer.status_code == 303
        async with store.read() as conn:
            assert not (await domains.get(conn, EVERYTHING, world.a))["require_app_passwords"]
