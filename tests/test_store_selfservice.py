"""Vacation settings and app passwords in the store, on SQLite and PostgreSQL: validation,
scope, limits, audit."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from dinomail.passwords import verify_password
from dinomail.records import AppPasswordRow, VacationRow
from dinomail.schema import auditlog
from dinomail.store import (
    EVERYTHING,
    Conflict,
    LimitExceeded,
    NotFound,
    Scope,
    Store,
    apppasswords,
    changes,
    domains,
    mailboxes,
    vacation,
)
from dinomail.validation import ValidationError

HASH = "{PLAIN}not-a-real-hash"


async def _mailbox(store: Store, email: str) -> dict:
    async with store.write() as conn:
        name = email.rpartition("@")[2]
        try:
            await domains.get_by_name(conn, EVERYTHING, name)
        except NotFound:
            await domains.create(conn, "test", EVERYTHING, {"name": name})
        return await mailboxes.create(
            conn, "test", EVERYTHING, {"email": email}, password_hash=HASH
        )


async def _audit(store: Store, object_type: str) -> list[dict]:
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(auditlog).where(auditlog.c.object_type == object_type)
            .order_by(auditlog.c.id)
        )
        return [dict(row) for row in rows.mappings()]


async def test_vacation_put_get_delete(store: Store) -> None:
    box = await _mailbox(store, "ann@example.org")
    async with store.read() as conn:
        assert await vacation.get(conn, EVERYTHING, box["id"]) is None
    async with store.write() as conn:
        row = await vacation.put(conn, "admin", EVERYTHING, box["id"], {
            "enabled": True, "subject": "Away", "body": "Back on Monday.\r\n",
            "starts": "2026-12-01", "ends": date(2026, 12, 24),
        })
    assert row["enabled"] is True
    assert row["body"] == "Back on Monday."
    assert row["starts"] == date(2026, 12, 1) and row["ends"] == date(2026, 12, 24)
    assert row["interval_days"] == vacation.DEFAULT_INTERVAL_DAYS
    # A PUT keeps what it leaves out.
    async with store.write() as conn:
        row = await vacation.put(conn, "admin", EVERYTHING, box["id"], {"interval_days": 3})
    assert row["subject"] == "Away" and row["interval_days"] == 3
    async with store.read() as conn:
        assert (await vacation.get(conn, EVERYTHING, box["id"]))["interval_days"] == 3
        _, data = await changes.load_mail_data(conn)
    # What the lookup daemon loads, to make the Sieve script of.
    assert data.vacations == [VacationRow(box["id"], True, "Away", "Back on Monday.",
                                          date(2026, 12, 1), date(2026, 12, 24), 3)]
    async with store.write() as conn:
        await vacation.delete(conn, "admin", EVERYTHING, box["id"])
        await vacation.delete(conn, "admin", EVERYTHING, box["id"])  # nothing left: no error
    async with store.read() as conn:
        assert await vacation.get(conn, EVERYTHING, box["id"]) is None
    entries = await _audit(store, "vacation")
    assert [entry["action"] for entry in entries] == ["create", "update", "delete"]
    assert json.loads(entries[1]["new_values"]) == {"interval_days": 3}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"subject": "a" * 256}, "subject"),
        ({"subject": "two\nlines"}, "subject"),
        ({"body": "bell\x07"}, "body"),
        ({"body": "x" * 10_001}, "body"),
        ({"enabled": True}, "body"),
        ({"starts": "2026-13-01"}, "starts"),
        ({"starts": "20261201"}, "starts"),
        ({"ends": 5}, "ends"),
        ({"starts": "2026-12-10", "ends": "2026-12-09"}, "ends"),
        ({"interval_days": 0}, "interval_days"),
        ({"interval_days": 31}, "interval_days"),
        ({"interval_days": True}, "interval_days"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_vacation_refuses_bad_fields(store: Store, values: dict, field: str) -> None:
    box = await _mailbox(store, "bob@example.org")
    with pytest.raises(ValidationError) as caught:
        async with store.write() as conn:
            await vacation.put(conn, "admin", EVERYTHING, box["id"], values)
    assert caught.value.field == field


async def test_vacation_and_app_passwords_are_scoped(store: Store) -> None:
    box = await _mailbox(store, "cat@example.org")
    other = Scope(frozenset({box["domain_id"] + 1000}))
    for call in (
        lambda conn: vacation.get(conn, other, box["id"]),
        lambda conn: vacation.put(conn, "x", other, box["id"], {"subject": "hi"}),
        lambda conn: vacation.delete(conn, "x", other, box["id"]),
        lambda conn: apppasswords.list_for(conn, other, box["id"]),
        lambda conn: apppasswords.create(
            conn, "x", other, box["id"], name="phone", protocols=["imap"], password_hash=HASH
        ),
        lambda conn: apppasswords.revoke(conn, "x", other, box["id"], 1),
        lambda conn: vacation.get(conn, EVERYTHING, 999_999),
    ):
        with pytest.raises(NotFound):
            async with store.write() as conn:
                await call(conn)


async def test_app_password_lifecycle(store: Store) -> None:
    box = await _mailbox(store, "dan@example.org")
    other = await _mailbox(store, "eve@example.org")
    secret = apppasswords.new_secret()
    assert len(secret) == 24 and secret.count("-") == 4
    assert apppasswords.new_secret() != secret
    password_hash = await apppasswords.hash_secret(secret)
    assert password_hash.startswith("{SHA512-CRYPT}")
    assert verify_password(secret, password_hash)
    async with store.write() as conn:
        row = await apppasswords.create(
            conn, "admin", EVERYTHING, box["id"], name=" Phone ", protocols=("IMAP", "smtp"),
            password_hash=password_hash,
        )
    assert row["name"] == "Phone" and row["protocols"] == ["imap", "smtp"]
    assert row["last_used"] is None and row["created"] is not None
    with pytest.raises(Conflict) as conflict:
        async with store.write() as conn:
            await apppasswords.create(
                conn, "admin", EVERYTHING, box["id"], name="Phone", protocols=["imap"],
                password_hash=password_hash,
            )
    assert conflict.value.code == "app_password_exists"
    assert conflict.value.params == {"name": "Phone"}
    # What the lookup daemon loads to check logins: the hash and protocols, not the name.
    async with store.read() as conn:
        _, data = await changes.load_mail_data(conn)
    assert data.app_passwords == [AppPasswordRow(row["id"], box["id"], "imap,smtp", password_hash)]
    assert [d.require_app_passwords for d in data.domains if d.id == box["domain_id"]] == [False]
    when = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
    async with store.write() as conn:
        await apppasswords.record_use(conn, {row["id"]: when, 999_999: when})
    async with store.read() as conn:
        (listed,) = await apppasswords.list_for(conn, EVERYTHING, box["id"])
    assert listed["last_used"].replace(tzinfo=UTC) == when
    # Another mailbox's app password is "not found", like a missing one.
    with pytest.raises(NotFound) as missing:
        async with store.write() as conn:
            await apppasswords.revoke(conn, "admin", EVERYTHING, other["id"], row["id"])
    assert missing.value.code == "app_password_not_found"
    async with store.write() as conn:
        await apppasswords.revoke(conn, "admin", EVERYTHING, box["id"], row["id"])
    async with store.read() as conn:
        assert await apppasswords.list_for(conn, EVERYTHING, box["id"]) == []
    entries = await _audit(store, "app_password")
    assert [entry["action"] for entry in entries] == ["create", "revoke"]
    assert password_hash not in json.dumps([entry["new_values"] for entry in entries])


@pytest.mark.parametrize(
    ("name", "protocols", "field"),
    [
        ("", ["imap"], "name"),
        ("x" * 101, ["imap"], "name"),
        ("phone", [], "protocols"),
        ("phone", "imap", "protocols"),
        ("phone", ["imap", "http"], "protocols"),
        ("phone", [1], "protocols"),
    ],
)
async def test_app_password_refuses_bad_fields(
    store: Store, name: str, protocols: object, field: str
) -> None:
    box = await _mailbox(store, "fay@example.org")
    with pytest.raises(ValidationError) as caught:
        async with store.write() as conn:
            await apppasswords.create(
                conn, "admin", EVERYTHING, box["id"], name=name,
                protocols=protocols,  # type: ignore[arg-type]
                password_hash=HASH,
            )
    assert caught.value.field == field


async def test_app_passwords_per_mailbox_are_limited(store: Store) -> None:
    box = await _mailbox(store, "gus@example.org")
    async with store.write() as conn:
        for number in range(apppasswords.MAX_PER_MAILBOX):
            await apppasswords.create(
                conn, "admin", EVERYTHING, box["id"], name=f"device {number}",
                protocols=["imap"], password_hash=HASH,
            )
    with pytest.raises(LimitExceeded) as caught:
        async with store.write() as conn:
            await apppasswords.create(
                conn, "admin", EVERYTHING, box["id"], name="one more", protocols=["imap"],
                password_hash=HASH,
            )
    assert caught.value.code == "app_password_limit"


async def test_domain_can_require_app_passwords(store: Store) -> None:
    box = await _mailbox(store, "hal@example.org")
    async with store.write() as conn:
        domain = await domains.update(
            conn, "admin", EVERYTHING, box["domain_id"], {"require_app_passwords": True}
        )
    assert domain["require_app_passwords"] is True
    async with store.read() as conn:
        _, data = await changes.load_mail_data(conn)
    assert [d.require_app_passwords for d in data.domains if d.id == box["domain_id"]] == [True]
    assert data.app_passwords == []


