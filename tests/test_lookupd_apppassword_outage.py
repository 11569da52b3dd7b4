"""App passwords are checked against the lookup daemon's snapshot, never the database: a revoked
one is refused once its removal comes through the change log, and while PostgreSQL is stopped
(a real outage) an app password login still works, a revoked one stays refused, the domain's
"require app passwords" still holds, and the last uses are written once the database is back.
A daemon started during the outage checks app passwords against the snapshot saved on disk,
and serves the vacation script saved there too."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import httpx

from dinomail import migrate
from dinomail.passwords import hash_password
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store, apppasswords, domains, mailboxes, vacation
from dinomail.store import changes as changelog
from lookupd.daemon import Lookupd
from lookupd.snapshot_file import database_name, read_snapshot_file
from tests.support.lookupd import eventually, running_lookupd, wait_until
from tests.support.postgres import PostgresServer

PASSWORD = "Main-password-123"
OK = (200, {"result": "ok", "fields": {}})
MISMATCH = (200, {"result": "mismatch", "fields": {}})
# Each app password check is a SHA512-CRYPT in a thread; a loaded machine is slow.
PROPAGATION_TIMEOUT = 30.0


async def _verify(settings: Settings, password: str, service: str = "imap") -> tuple[int, object]:
    async with httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}") as http:
        answer = await http.post(
            "/dovecot/verify",
            content=urlencode({"user": "ann@example.org", "password": password,
                               "service": service}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    return answer.status_code, answer.json()


async def _new_app_password(store: Store, mailbox_id: int, name: str) -> tuple[int, str]:
    secret = apppasswords.new_secret()
    async with store.write() as conn:
        row = await apppasswords.create(
            conn, "t", EVERYTHING, mailbox_id, name=name, protocols=["imap"],
            password_hash=await apppasswords.hash_secret(secret),
        )
    return row["id"], secret


async def _last_used(store: Store, mailbox_id: int) -> dict[int, object]:
    async with store.read() as conn:
        rows = await apppasswords.list_for(conn, EVERYTHING, mailbox_id)
    return {row["id"]: row["last_used"] for row in rows}


def _database_errors(daemon: Lookupd) -> float:
    value = daemon.metrics.registry.get_sample_value("dinomail_lookupd_database_errors_total")
    return value or 0.0


async def test_app_passwords_come_from_the_snapshot_through_an_outage(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    store = Store(own_postgres.create_database("apppasswords"))
    await migrate.upgrade(store.engine)
    try:
        async with store.write() as conn:
            domain = await domains.create(conn, "t", EVERYTHING, {"name": "example.org"})
            box = await mailboxes.create(conn, "t", EVERYTHING, {"email": "ann@example.org"},
                                         password_hash=hash_password(PASSWORD, "SHA512-CRYPT"))
        async with store.write() as conn:
            await vacation.put(conn, "t", EVERYTHING, box["id"], {"enabled": True, "body": "Away"})
        kept_id, kept = await _new_app_password(store, box["id"], "phone")
        revoked_id, revoked = await _new_app_password(store, box["id"], "laptop")

        async with running_lookupd(
            store, tmp_path, APP_PASSWORD_FLUSH_INTERVAL="0.1", LOOKUPD_SNAPSHOT_INTERVAL="0.1",
        ) as (daemon, settings):
            async with store.read() as conn:
                logged_before = await changelog.latest_seq(conn)
            assert await _verify(settings, kept) == OK
            assert await _verify(settings, revoked) == OK

            async def both_used() -> bool:
                return None not in (await _last_used(store, box["id"])).values()

            await eventually(both_used, what="the last uses written")
            # The last-use writes change no column a login reads: they log no change.
            async with store.read() as conn:
                assert await changelog.latest_seq(conn) == logged_before
            used_before = (await _last_used(store, box["id"]))[kept_id]

            async with store.write() as conn:
                await apppasswords.revoke(conn, "t", EVERYTHING, box["id"], revoked_id)
                await domains.update(conn, "t", EVERYTHING, domain["id"],
                                     {"require_app_passwords": True})
            took = await eventually(
                lambda: _is(settings, revoked, MISMATCH), timeout=PROPAGATION_TIMEOUT,
                what="the revoked app password refused",
            )
            await eventually(lambda: _is(settings, PASSWORD, MISMATCH),
                             timeout=PROPAGATION_TIMEOUT, what="the domain's rule applied")
            assert took < PROPAGATION_TIMEOUT
            assert await _verify(settings, kept) == OK

            # The snapshot on disk has caught up too (for the restart below).
            path = settings.lookupd_snapshot_path
            assert path is not None
            target = database_name(store.url)

            def saved_without_revoked() -> bool:
                saved = read_snapshot_file(path, database=target)
                return saved is not None and [row.id for row in saved.data.app_passwords] == [
                    kept_id
                ] and saved.data.domains[0].require_app_passwords

            await wait_until(saved_without_revoked, timeout=PROPAGATION_TIMEOUT,
                             what="the revocation in the file")

            await asyncio.to_thread(own_postgres.stop)
            down_at = time.monotonic()
            await wait_until(lambda: _database_errors(daemon) >= 2, timeout=20,
                             what="the refresher to see the outage")
            assert await _verify(settings, kept) == OK
            assert await _verify(settings, revoked) == MISMATCH
            assert await _verify(settings, PASSWORD) == MISMATCH  # app passwords required
            assert await _verify(settings, PASSWORD, "doveadm") == OK
            assert await _verify(settings, kept, "pop3") == MISMATCH  # imap only
            assert daemon.vacations.script("ann@example.org") is not None
            assert daemon.metrics.current_snapshot_age() >= time.monotonic() - down_at - 0.5

            # A daemon started now, the database still down, reads the snapshot on disk.
            async with running_lookupd(
                store, tmp_path, DICT_LISTEN=f"unix:{tmp_path / 'second.sock'}"
            ) as (second, second_settings):
                assert second.holder.stale
                assert await _verify(second_settings, kept) == OK
                assert await _verify(second_settings, revoked) == MISMATCH
                assert await _verify(second_settings, PASSWORD) == MISMATCH
                script = second.vacations.script("ann@example.org")
                assert script is not None and '"Away";' in script.text

            await asyncio.to_thread(own_postgres.start)
            # The last use of the outage, kept in memory, is written once the database is back.
            await eventually(
                lambda: _used_after(store, box["id"], kept_id, used_before),
                timeout=PROPAGATION_TIMEOUT, what="the last use written after the outage",
            )
    finally:
        await store.close()


async def _is(settings: Settings, password: str, expected: tuple[int, object]) -> bool:
    return await _verify(settings, password) == expected


async def _used_after(store: Store, mailbox_id: int, app_password_id: int, before: object) -> bool:
    try:
        used = (await _last_used(store, mailbox_id))[app_password_id]
    except Exception:  # the database still starting
        return False
    assert isinstance(before, datetime)
    return isinstance(used, datetime) and used > before
