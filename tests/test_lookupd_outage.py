"""A PostgreSQL outage: the lookup daemon keeps answering from its last snapshot (never turning
an answer into NOTFOUND), exports the snapshot's age, and follows changes again once the
database is back, without a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dinomail import migrate
from dinomail.store import EVERYTHING, Store, mailboxes
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import PASSWORD_HASH, fill_mail_data
from tests.support.postgres import PostgresServer
from tests.support.socketmap_client import socketmap_query

EXPECTED = {
    ("mailboxes", "alice@example.org"): "OK example.org/alice/",
    ("aliases", "info@example.org"): "OK alice@example.org,bob@elsewhere.net",
    ("domains", "example.net"): "OK example.net",
    ("senders", "info@example.org"): "OK alice@example.org",
}


async def test_answers_survive_a_database_outage(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    store = Store(own_postgres.create_database("outage"))
    await migrate.upgrade(store.engine)
    await fill_mail_data(store)
    try:
        async with running_lookupd(store, tmp_path) as (daemon, settings):
            listen = settings.SOCKETMAP_LISTEN
            replies: list[str] = []
            stop_asking = asyncio.Event()

            async def keep_asking() -> None:
                while not stop_asking.is_set():
                    for (name, key), expected in EXPECTED.items():
                        reply = await socketmap_query(listen, name, key)
                        replies.append(reply)
                        assert reply == expected, (name, key, reply)
                    await asyncio.sleep(0.01)

            asker = asyncio.create_task(keep_asking())
            await asyncio.to_thread(own_postgres.stop)
            down_at = time.monotonic()
            # Long enough for the refresher to notice and retry several times.
            await wait_until(
                lambda: database_errors(daemon) >= 2, timeout=20,
                what="the refresher to see the outage",
            )
            await asyncio.sleep(1.0)
            assert daemon.metrics.current_snapshot_age() >= time.monotonic() - down_at - 0.5
            answered_while_down = len(replies)
            await asyncio.to_thread(own_postgres.start)
            stop_asking.set()
            await asker
            assert answered_while_down > 20

            # Changes flow again, without restarting the daemon.
            async with store.write() as conn:
                await mailboxes.create(
                    conn, "t", EVERYTHING, {"email": "back@example.org"},
                    password_hash=PASSWORD_HASH,
                )
            deadline = time.monotonic() + 15
            while await socketmap_query(listen, "mailboxes", "back@example.org") == "NOTFOUND ":
                assert time.monotonic() < deadline, "changes did not flow after the outage"
                await asyncio.sleep(0.05)
            assert daemon.metrics.current_snapshot_age() < 5
    finally:
        await store.close()


def database_errors(daemon) -> float:  # type: ignore[no-untyped-def]
    value = daemon.metrics.registry.get_sample_value("dinomail_lookupd_database_errors_total")
    return value or 0.0
