"""Changes reach the lookup daemon without a restart: through the store, and by hand in SQL
(insert, update, delete) from another client, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from dinomail.store import EVERYTHING, Store, aliases, mailboxes
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import PASSWORD_HASH, fill_mail_data
from tests.support.postgres import PostgresServer
from tests.support.socketmap_client import answer_becomes, socketmap_query


async def raw_sql(store: Store, request, sql: str) -> None:  # type: ignore[no-untyped-def]
    """Run SQL from a client of its own, as an admin would in sqlite3 or psql."""
    if store.dialect == "sqlite":
        path = store.url.removeprefix("sqlite:///")

        def run() -> None:
            with sqlite3.connect(path) as connection:
                connection.execute("PRAGMA foreign_keys=ON")
                connection.executescript(sql)

        await asyncio.to_thread(run)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database = store.url.rsplit("/", 1)[1]
        await asyncio.to_thread(server.psql, sql, database)


async def test_store_writes_propagate(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path) as (_, settings):
        listen = settings.SOCKETMAP_LISTEN
        assert await socketmap_query(listen, "mailboxes", "new@example.org") == "NOTFOUND "
        async with store.write() as conn:
            box = await mailboxes.create(
                conn, "t", EVERYTHING, {"email": "new@example.org"}, password_hash=PASSWORD_HASH
            )
            alias = await aliases.create(
                conn, "t", EVERYTHING,
                {"source": "team@example.org", "destination": "new@example.org"},
            )
        await answer_becomes(listen, "mailboxes", "new@example.org", "OK example.org/new/")
        await answer_becomes(listen, "aliases", "team@example.org", "OK new@example.org")
        async with store.write() as conn:
            await mailboxes.update(conn, "t", EVERYTHING, box["id"], {"active": False})
            await aliases.delete(conn, "t", EVERYTHING, alias["id"])
        await answer_becomes(listen, "mailboxes", "new@example.org", "NOTFOUND ")
        # Without the alias, the catch-all of example.org takes the address.
        await answer_becomes(listen, "aliases", "team@example.org", "OK alice@example.org")


async def test_raw_sql_changes_propagate(store: Store, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    ids = await fill_mail_data(store)
    domain_id = ids["example.org"]
    async with running_lookupd(store, tmp_path) as (_, settings):
        listen = settings.SOCKETMAP_LISTEN
        await raw_sql(
            store, request,
            "INSERT INTO core_virtualuser (domain_id, email, password, quota, active) "
            f"VALUES ({domain_id}, 'raw@example.org', '{{PLAIN}}x', 0, TRUE);",
        )
        await answer_becomes(listen, "mailboxes", "raw@example.org", "OK example.org/raw/")
        await raw_sql(
            store, request,
            "UPDATE core_virtualuser SET email = 'renamed@example.org' "
            "WHERE email = 'raw@example.org';",
        )
        await answer_becomes(listen, "mailboxes", "renamed@example.org", "OK example.org/renamed/")
        assert await socketmap_query(listen, "mailboxes", "raw@example.org") == "NOTFOUND "
        await raw_sql(store, request, "DELETE FROM core_virtualuser WHERE email LIKE 'renamed@%';")
        await answer_becomes(listen, "mailboxes", "renamed@example.org", "NOTFOUND ")
        # A domain switched off by hand takes its mailboxes with it.
        await raw_sql(
            store, request, f"UPDATE core_virtualdomain SET active = FALSE WHERE id = {domain_id};"
        )
        await answer_becomes(listen, "domains", "example.org", "NOTFOUND ")
        await answer_becomes(listen, "mailboxes", "alice@example.org", "NOTFOUND ")
