"""A change log that goes back (a database restored from an older dump, or replaced under the
same address): lookupd cannot follow it from where it was, and reloads in full."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from dinomail.store import Store
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import fill_mail_data
from tests.support.postgres import PostgresServer
from tests.support.socketmap_client import socketmap_query


async def test_a_log_that_went_back_reloads_in_full(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = "log_reset"
    store = Store(postgres.create_database(database, template="dinomail_migrated"))
    ids = await fill_mail_data(store)
    caplog.set_level(logging.INFO, logger="dinomail")
    try:
        async with running_lookupd(store, tmp_path) as (daemon, settings):
            listen = settings.SOCKETMAP_LISTEN
            assert daemon.holder.seq > 0
            # What a restore leaves: a row the log never saw, and a log started again.
            await asyncio.to_thread(
                postgres.psql,
                "SET session_replication_role = replica; "
                "INSERT INTO core_virtualuser (domain_id, email, password, quota, active) "
                f"VALUES ({ids['example.org']}, 'restored@example.org', '{{PLAIN}}x', 0, TRUE);"
                "TRUNCATE dinomail_changelog; "
                "SELECT setval(pg_get_serial_sequence('dinomail_changelog', 'seq'), 1, false);",
                database,
            )
            deadline = time.monotonic() + 20
            while (reply := await socketmap_query(listen, "mailboxes", "restored@example.org")
                   ) != "OK example.org/restored/":
                assert reply == "NOTFOUND ", reply
                assert time.monotonic() < deadline, "the log went back and nothing reloaded"
                await asyncio.sleep(0.05)
            assert "the change log went back" in caplog.text
            assert daemon.holder.seq == 0
    finally:
        await store.close()
