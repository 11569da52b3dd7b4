"""The README's backup and restore commands, run as written, on PostgreSQL and SQLite: the
restored database holds the same rows, its change-log triggers still work, and a lookup daemon
started on it answers as it did on the original."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from dinomail import migrate, schema
from dinomail.store import Store
from tests.conftest import new_postgres_database
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import fill_mail_data
from tests.support.postgres import PostgresServer
from tests.support.readme import run_block, shell_blocks
from tests.support.socketmap_client import socketmap_query

BLOCKS = shell_blocks("Backup and restore")
PG_FULL_DUMP, PG_FULL_RESTORE, PG_DATA_ONLY, SQLITE_BACKUP, SQLITE_RESTORE = BLOCKS
# Each database has its own schema version and change log; every other table must come back.
NOT_RESTORED = {"alembic_version", "dinomail_changelog"}
QUERIES = [
    ("mailboxes", "alice@example.org"), ("mailboxes", "eve@xn--bcher-kva.example"),
    ("aliases", "info@example.org"), ("aliases", "anyone@example.org"),
    ("aliases", "alice@example.net"), ("domains", "example.net"), ("senders", "bob@example.org"),
    ("mailboxes", "nobody@nowhere.test"),
]


def table_names() -> list[str]:
    return sorted(set(schema.metadata.tables) - NOT_RESTORED)


def pg_rows(server: PostgresServer, url: str) -> dict[str, str]:
    database = url.rsplit("/", 1)[1]
    return {
        table: server.psql(f"SELECT * FROM {table} ORDER BY 1, 2", database)
        for table in table_names()
    }


def sqlite_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in table_names()
        }


async def answers(store: Store, tmp_path: Path) -> list[str]:
    tmp_path.mkdir()
    async with running_lookupd(store, tmp_path) as (_, settings):
        return [
            await socketmap_query(settings.SOCKETMAP_LISTEN, name, key) for name, key in QUERIES
        ]


async def filled_postgres(server: PostgresServer) -> Store:
    store = Store(new_postgres_database(server))
    await fill_mail_data(store)
    return store


@pytest.mark.parametrize("block", [PG_FULL_RESTORE, PG_DATA_ONLY], ids=["full", "data-only"])
async def test_postgresql_restore(postgres: PostgresServer, tmp_path: Path, block: str) -> None:
    source = await filled_postgres(postgres)
    target_url = new_postgres_database(postgres, migrated=False)
    dump = PG_FULL_DUMP if block is PG_FULL_RESTORE else ""
    try:
        expected = await answers(source, tmp_path / "source")
        if dump:
            run_block(dump, tmp_path, DATABASE=source.url)
        run_block(block, tmp_path, DATABASE=source.url, NEW_DATABASE=target_url)
        assert pg_rows(postgres, target_url) == pg_rows(postgres, source.url)

        target = Store(target_url)
        try:
            assert await migrate.current_revision(target.engine) == migrate.head_revision()
            assert await answers(target, tmp_path / "target") == expected
            # The change-log triggers of the restored database fire under any search_path, and
            # number their entries after everything restored.
            database = target_url.rsplit("/", 1)[1]
            before = int(postgres.psql("SELECT last_value FROM dinomail_changelog_seq_seq",
                                       database))
            postgres.psql("SET search_path = ''; INSERT INTO public.core_virtualdomain (name) "
                          "VALUES ('after-restore.test')", database)
            logged = postgres.psql("SELECT seq, table_name, op FROM dinomail_changelog "
                                   "ORDER BY seq DESC LIMIT 1", database)
            seq, table, op = logged.strip().split("|")
            assert (table, op) == ("core_virtualdomain", "I") and int(seq) > before
        finally:
            await target.close()
    finally:
        await source.close()


async def test_sqlite_online_backup_and_restore(tmp_path: Path) -> None:
    database = tmp_path / "dinomail.sqlite3"
    store = Store(f"sqlite:///{database}")
    await migrate.upgrade(store.engine)
    await fill_mail_data(store)
    expected = await answers(store, tmp_path / "before")
    saved = sqlite_rows(database)
    try:
        # Taken while the store still holds the database open, in WAL mode.
        run_block(SQLITE_BACKUP, tmp_path)
        async with store.write() as conn:
            await conn.execute(schema.virtualdomain.insert().values(name="after-backup.test"))
        assert sqlite_rows(database) != saved
    finally:
        await store.close()

    checked = run_block(SQLITE_RESTORE, tmp_path)
    assert "dinomail migrate" not in checked.stdout
    assert sqlite_rows(database) == saved
    restored = Store(f"sqlite:///{database}")
    try:
        assert await answers(restored, tmp_path / "after") == expected
    finally:
        await restored.close()
