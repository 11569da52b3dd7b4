"""The change-log triggers of migration 0018_apppassword_changelog, on SQLite and PostgreSQL.
App passwords: what a login reads is logged (creation, a change of hash or protocols,
revocation, the mailbox's removal), the last-use writes are not. Vacations: every change, under
the mailbox's id. The change log brings the rows a snapshot applies."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from dinomail.records import AppPasswordRow, VacationRow
from dinomail.schema import apppassword
from dinomail.schema import vacation as vacation_table
from dinomail.store import EVERYTHING, Store, apppasswords, changes, domains, mailboxes, vacation
from lookupd.snapshot import Snapshot

TABLE = "dinomail_apppassword"


async def _logged(store: Store, since: int, table: str = TABLE) -> list[tuple[int, str]]:
    """The changes of `table` logged after `since`: (row id, op)."""
    async with store.read() as conn:
        return [(change.row_id, change.op)
                for change in await changes.changes_since(conn, since, 1000)
                if change.table_name == table]


async def _latest(store: Store) -> int:
    async with store.read() as conn:
        return await changes.latest_seq(conn)


async def _two_mailboxes(store: Store) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The domain example.org with ann@ and bob@."""
    async with store.write() as conn:
        domain = await domains.create(conn, "t", EVERYTHING, {"name": "example.org"})
        box = await mailboxes.create(conn, "t", EVERYTHING, {"email": "ann@example.org"},
                                     password_hash="{PLAIN}x")
        other = await mailboxes.create(conn, "t", EVERYTHING, {"email": "bob@example.org"},
                                       password_hash="{PLAIN}x")
    return domain, box, other


class Follower:
    """A snapshot loaded in full, then kept current from the change log, as the lookup
    daemon's catch-up does."""

    def __init__(self, store: Store, seq: int, snapshot: Snapshot) -> None:
        self.store = store
        self.seq = seq
        self.snapshot = snapshot

    @classmethod
    async def load(cls, store: Store) -> Follower:
        async with store.read() as conn:
            seq, data = await changes.load_mail_data(conn)
        return cls(store, seq, Snapshot.build(data))

    async def follow(self) -> None:
        """Apply what the log says since the last time."""
        async with self.store.read() as conn:
            logged = await changes.changes_since(conn, self.seq, 1000)
            self.snapshot.apply(await changes.fetch_changes(conn, logged))
        self.seq = logged[-1].seq if logged else self.seq


async def test_what_a_login_reads_is_logged_and_the_last_use_is_not(store: Store) -> None:
    domain, box, other = await _two_mailboxes(store)
    follower = await Follower.load(store)
    snapshot, follow = follower.snapshot, follower.follow

    start = await _latest(store)
    async with store.write() as conn:
        made = await apppasswords.create(conn, "t", EVERYTHING, box["id"], name="phone",
                                         protocols=["imap"], password_hash="{PLAIN}one")
    assert await _logged(store, start) == [(made["id"], "I")]
    await follow()
    assert snapshot.app_passwords(box["id"]) == [
        AppPasswordRow(made["id"], box["id"], "imap", "{PLAIN}one")
    ]

    start = await _latest(store)
    async with store.write() as conn:
        when = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
        await apppasswords.record_use(conn, {made["id"]: when})
        # Renaming changes nothing a login reads either.
        await conn.execute(apppassword.update().where(apppassword.c.id == made["id"])
                           .values(name="old phone"))
    assert await _logged(store, start) == []

    # Changed by hand in SQL (protocols, hash; then moved to another mailbox): followed.
    async with store.write() as conn:
        await conn.execute(apppassword.update().where(apppassword.c.id == made["id"])
                           .values(protocols="imap,smtp", password="{PLAIN}two"))
    await follow()
    assert snapshot.app_passwords(box["id"]) == [
        AppPasswordRow(made["id"], box["id"], "imap,smtp", "{PLAIN}two")
    ]
    async with store.write() as conn:
        await conn.execute(apppassword.update().where(apppassword.c.id == made["id"])
                           .values(user_id=other["id"]))
    await follow()
    assert snapshot.app_passwords(box["id"]) == []
    assert [row.id for row in snapshot.app_passwords(other["id"])] == [made["id"]]

    start = await _latest(store)
    async with store.write() as conn:
        await apppasswords.revoke(conn, "t", EVERYTHING, other["id"], made["id"])
    assert await _logged(store, start) == [(made["id"], "D")]
    await follow()
    assert snapshot.app_passwords(other["id"]) == []

    # A mailbox removed takes its app passwords along (the foreign key cascades), logged too.
    async with store.write() as conn:
        kept = await apppasswords.create(conn, "t", EVERYTHING, box["id"], name="tablet",
                                         protocols=["pop3"], password_hash="{PLAIN}three")
    await follow()
    assert snapshot.row_counts()["app_passwords"] == 1
    start = await _latest(store)
    async with store.write() as conn:
        await mailboxes.delete(conn, "t", EVERYTHING, box["id"])
    assert (kept["id"], "D") in await _logged(store, start)
    await follow()
    assert snapshot.row_counts()["app_passwords"] == 0

    # The domain's rule comes with its row.
    async with store.write() as conn:
        await domains.update(conn, "t", EVERYTHING, domain["id"], {"require_app_passwords": True})
    await follow()
    found = snapshot.domain_by_id(domain["id"])
    assert found is not None and found.require_app_passwords


async def test_emptying_the_app_password_table_is_logged(store: Store) -> None:
    async with store.write() as conn:
        await domains.create(conn, "t", EVERYTHING, {"name": "example.org"})
        box = await mailboxes.create(conn, "t", EVERYTHING, {"email": "ann@example.org"},
                                     password_hash="{PLAIN}x")
        await apppasswords.create(conn, "t", EVERYTHING, box["id"], name="phone",
                                  protocols=["imap"], password_hash="{PLAIN}one")
    start = await _latest(store)
    async with store.write() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text(f"TRUNCATE {TABLE}"))
            expected = [(0, "T")]  # the refresher reloads in full on a truncation
        else:
            await conn.execute(sa.text(f"DELETE FROM {TABLE}"))  # SQLite has no TRUNCATE
            expected = [(1, "D")]
    assert await _logged(store, start) == expected


async def test_vacation_changes_are_logged_under_the_mailbox_id(store: Store) -> None:
    _, box, other = await _two_mailboxes(store)
    follower = await Follower.load(store)
    snapshot, follow = follower.snapshot, follower.follow

    start = await _latest(store)
    async with store.write() as conn:
        await vacation.put(conn, "t", EVERYTHING, box["id"],
                           {"enabled": True, "body": "Away", "starts": "2026-12-20"})
        await vacation.put(conn, "t", EVERYTHING, box["id"], {"subject": "Off"})
    assert await _logged(store, start, vacation_table.name) == [(box["id"], "I"), (box["id"], "U")]
    await follow()
    assert snapshot.vacation(box["id"]) == VacationRow(
        box["id"], True, "Off", "Away", date(2026, 12, 20), None, 7
    )
    # Moved to another mailbox by hand: the old key is gone, the new one present.
    async with store.write() as conn:
        await conn.execute(vacation_table.update().where(vacation_table.c.user_id == box["id"])
                           .values(user_id=other["id"]))
    await follow()
    assert snapshot.vacation(box["id"]) is None
    moved = snapshot.vacation(other["id"])
    assert moved is not None and moved.subject == "Off"

    start = await _latest(store)
    async with store.write() as conn:
        await vacation.delete(conn, "t", EVERYTHING, other["id"])
    assert await _logged(store, start, vacation_table.name) == [(other["id"], "D")]
    await follow()
    assert snapshot.row_counts()["vacations"] == 0
