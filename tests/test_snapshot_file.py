"""lookupd's snapshot on disk, on real files: what is written is what is read, readable by its
owner only, never half written, and ignored when it is not this version's for this database."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from datetime import date
from pathlib import Path

from dinomail import __version__
from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    AppPasswordRow,
    DomainRow,
    MailboxRow,
    MailData,
    VacationRow,
)
from dinomail.store import EVERYTHING, Store, mailboxes
from lookupd.snapshot import Snapshot
from lookupd.snapshot_file import database_name, read_snapshot_file, write_snapshot_file
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import fill_mail_data

DB = "postgresql://db.example:5432/dinomail"
DATA = MailData(
    # Every field of a row comes back, the catch-all sender and app password flags among them.
    domains=[DomainRow(1, "example.org", True, catchall_senders=True),
             DomainRow(2, "bücher.example", False, require_app_passwords=True)],
    alias_domains=[AliasDomainRow(3, "example.net", 1, True)],
    mailboxes=[
        MailboxRow(4, 1, "alice@example.org", "{SHA512-CRYPT}$6$x", 1_000_000, True),
        MailboxRow(5, 1, "bob@example.org", "{PLAIN}b\tc\n", None, False),
    ],
    aliases=[AliasRow(6, 1, "info@example.org", "alice@example.org")],
    app_passwords=[AppPasswordRow(7, 4, "imap,smtp", "{SHA512-CRYPT}$6$y"),
                   AppPasswordRow(8, 5, "pop3", "{PLAIN}z")],
    vacations=[VacationRow(4, True, "Away \"x\"", "Back\non Monday", date(2026, 12, 20),
                           date(2027, 1, 4), 3),
               VacationRow(5, False, "", "", None, None, 7)],
)


def test_what_is_written_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "snap.json"
    write_snapshot_file(path, DATA, database=DB, database_id="abc", seq=42)
    saved = read_snapshot_file(path, database=DB, database_id="abc")
    assert saved is not None
    assert saved.data == DATA and saved.seq == 42 and saved.database_id == "abc"
    assert 0 <= saved.age < 5
    assert Snapshot.build(saved.data).row_counts() == Snapshot.build(DATA).row_counts()
    # While the database is unreachable its id is unknown: the address must match.
    assert read_snapshot_file(path, database=DB) is not None


def test_only_its_owner_may_read_it_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        path = tmp_path / "snap.json"
        path.write_text("old")
        path.chmod(0o644)
        write_snapshot_file(path, DATA, database=DB, database_id=None, seq=1)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]


def test_another_database_version_or_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    write_snapshot_file(path, DATA, database=DB, database_id="abc", seq=1)
    assert read_snapshot_file(path, database="postgresql://db.example:5432/other") is None
    assert read_snapshot_file(path, database=DB, database_id="another") is None

    header, body = path.read_bytes().split(b"\n", 1)
    for change in ({"dinomail": "0.0.1"}, {"version": 99}, {"format": "pickle"}):
        path.write_bytes(json.dumps(json.loads(header) | change).encode() + b"\n" + body)
        assert read_snapshot_file(path, database=DB) is None, change
    path.write_bytes(header + b"\n" + body[: len(body) // 2])  # cut short
    assert read_snapshot_file(path, database=DB) is None
    path.write_bytes(header + b'\n{"domains": [[1]], "alias_domains": [], "mailboxes": [],'
                     b' "aliases": [], "app_passwords": []}\n')
    assert read_snapshot_file(path, database=DB) is None
    path.write_bytes(header + b'\n{"domains": [], "alias_domains": [], "mailboxes": [],'
                     b' "aliases": [], "app_passwords": [[7, 4, ["imap"], "{PLAIN}z"]],'
                     b' "vacations": []}\n')
    assert read_snapshot_file(path, database=DB) is None
    for day in (b'"20.12.2026"', b'20261220'):
        path.write_bytes(header + b'\n{"domains": [], "alias_domains": [], "mailboxes": [],'
                         b' "aliases": [], "app_passwords": [], "vacations": [[4, true, "",'
                         b' "x", ' + day + b', null, 7]]}\n')
        assert read_snapshot_file(path, database=DB) is None, day
    assert read_snapshot_file(tmp_path / "absent.json", database=DB) is None
    assert json.loads(header)["dinomail"] == __version__


def test_a_file_of_the_format_before_app_passwords_is_ignored(tmp_path: Path) -> None:
    # Version 2 had no app passwords: read, it would have refused every app password login
    # until the database answered. Ignored, the daemon answers temporary failures instead.
    path = tmp_path / "snap.json"
    write_snapshot_file(path, DATA, database=DB, database_id="abc", seq=1)
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    old_body = (b'{"domains": [[1, "example.org", true, false]], "alias_domains": [],'
                b' "mailboxes": [[4, 1, "alice@example.org", "{PLAIN}a", null, true]],'
                b' "aliases": []}\n')
    path.write_bytes(json.dumps(header | {"version": 2}).encode() + b"\n" + old_body)
    assert read_snapshot_file(path, database=DB) is None


def test_the_database_is_named_without_user_or_password(tmp_path: Path) -> None:
    assert database_name("postgresql://u:secret@db.example:5432/dinomail") == DB
    assert database_name("postgresql+asyncpg://u:secret@db.example:5432/dinomail") == DB
    sqlite = database_name(f"sqlite:///{tmp_path}/./db.sqlite3")
    assert sqlite == f"sqlite:///{tmp_path / 'db.sqlite3'}"


async def test_the_daemon_writes_it_after_the_load_and_after_changes_only(
    store: Store, tmp_path: Path
) -> None:
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path, LOOKUPD_SNAPSHOT_INTERVAL="0.3") as (
        daemon, settings
    ):
        path = settings.lookupd_snapshot_path
        assert path is not None and path.parent == Path(settings.STATE_DIR).resolve()
        await wait_until(path.exists, what="the file after the first load")
        saved = read_snapshot_file(path, database=database_name(store.url))
        assert saved is not None and saved.database_id == daemon.refresher.database_id
        assert "alice@example.org" in {row.email for row in saved.data.mailboxes}
        written = path.stat().st_mtime_ns
        await asyncio.sleep(1.0)  # no change: not written again
        assert path.stat().st_mtime_ns == written

        async with store.write() as conn:
            await mailboxes.create(conn, "test", EVERYTHING,
                                   {"email": "later@example.org"}, password_hash="{PLAIN}x")

        def has_later() -> bool:
            again = read_snapshot_file(path, database=database_name(store.url))
            return again is not None and "later@example.org" in {
                row.email for row in again.data.mailboxes
            }

        await wait_until(has_later, timeout=10, what="the change in the file")
        assert daemon.holder.stale is False


async def test_turned_off_no_file_is_written(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path, LOOKUPD_SNAPSHOT_FILE="") as (_, settings):
        assert settings.lookupd_snapshot_path is None
        await asyncio.sleep(0.5)
    assert not list((tmp_path / "state").glob("lookupd-snapshot*"))
