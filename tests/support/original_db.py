"""Databases made by the original DinoMail (Django), from the dumps in tests/fixtures/original-db/
(see its README: every account, password, key and expected lookup listed below comes from it).
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import dinomail
from tests.support.postgres import PostgresServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "original-db"
POSTGRESQL_DUMP = FIXTURES / "postgresql.sql"
SQLITE_DUMP = FIXTURES / "sqlite3.sqlite3.sql"

# Mailbox → documented password; ssha@ is the original's broken {SSHA} (no salt stored).
MAILBOXES = {
    "ssha512@legacy.example": "pw-ssha512-1",
    "sha512crypt@legacy.example": "pw-sha512crypt-1",
    "ssha256@legacy.example": "pw-ssha256-1",
    "plainmd5@legacy.example": "pw-plainmd5-1",
    "blf@legacy.example": "pw-blf-1",
    "argon2id@legacy.example": "pw-argon2id-1",
    "ssha@legacy.example": "pw-ssha-1",
    "bob@second.example": "pw-bob-1",
}
UNVERIFIABLE = "ssha@legacy.example"
ALIASES = {
    "info@legacy.example": {"bob@second.example", "ssha512@legacy.example"},
    "ext@legacy.example": {"someone@gmail.com"},
    "postmaster@second.example": {"bob@second.example"},
    "dup@second.example": {"bob@second.example"},
}
ADMINS = {"oldadmin": "OldAdminPass-2020", "helper": "HelperPass-2020"}
API_KEYS = {
    "postgresql": {
        "oldadmin": "8a7ddd388fe122c017f281dca3a70cb1cc52030c",
        "helper": "3519d7a59531d1d1102bd35a8faf5dbd2551aa12",
    },
    "sqlite": {
        "oldadmin": "0c557562e34b74c21da316bf97b779f6d037eceb",
        "helper": "4557e75fb1096b885bfc919d72da6e3b1c4dafd9",
    },
}
DJANGO_TABLE_PREFIXES = ("auth_", "django_", "tastypie_")
# pg_dump 15.14+ writes a random key in \restrict lines unless given one.
_PG_DUMP_OPTIONS = ("--restrict-key=dinomailtest",)


def load_sqlite(path: Path, script: str | None = None) -> str:
    """A SQLite file made from the original's dump (or `script`); returns its URL."""
    with sqlite3.connect(path) as conn:
        conn.executescript(script if script is not None else SQLITE_DUMP.read_text())
    conn.close()
    return f"sqlite:///{path}"


def load_postgres(server: PostgresServer, name: str, script: str | None = None) -> str:
    """A new PostgreSQL database made from the original's dump (or `script`); its URL."""
    server.create_database(name)
    server.psql_script(script if script is not None else POSTGRESQL_DUMP.read_text(), name)
    return server.url(name)


def dump_sqlite(path: Path, *, only_django: bool = False) -> str:
    """Every statement that recreates the database; with `only_django`, the definitions
    (tables, indexes) and rows of the Django tables only."""
    conn = sqlite3.connect(path)
    try:
        if not only_django:
            return "\n".join(conn.iterdump())
        lines = []
        for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY tbl_name, type, name"
        ):
            if table.startswith(DJANGO_TABLE_PREFIXES):
                lines.append(f"{kind} {name}: {sql}")
                if kind == "table":
                    rows = conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
                    lines.extend(f"  {row!r}" for row in rows)
    finally:
        conn.close()
    return "\n".join(lines)


def dump_postgres(server: PostgresServer, database: str, *, only_django: bool = False) -> str:
    options = list(_PG_DUMP_OPTIONS)
    if only_django:
        options += [f"--table={prefix}*" for prefix in DJANGO_TABLE_PREFIXES]
    return server.dump(database, *options)


_names = itertools.count(1)


@dataclass
class Original:
    """A database loaded from the original's dump, and how to dump it whole or in part."""

    kind: str
    url: str
    path: Path | None = None
    server: PostgresServer | None = None
    database: str = ""

    def dump(self, *, only_django: bool = False) -> str:
        if self.path is not None:
            return dump_sqlite(self.path, only_django=only_django)
        assert self.server is not None
        return dump_postgres(self.server, self.database, only_django=only_django)

    def env(self) -> dict[str, str]:
        return {"DINOMAIL_DATABASE_URL": self.url}

    def run(self, *args: str):  # type: ignore[no-untyped-def]
        return dinomail(*args, env=self.env(), timeout=120)


def new_original(kind: str, request: pytest.FixtureRequest, folder: Path,
                 extra_sql: str = "") -> Original:
    if kind == "sqlite":
        path = folder / f"original-{next(_names)}.sqlite3"
        url = load_sqlite(path)
        if extra_sql:
            load_sqlite(path, extra_sql)
        return Original(kind, url, path=path)
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"original_{next(_names)}"
    url = load_postgres(server, name)
    if extra_sql:
        server.psql_script(extra_sql, name)
    return Original(kind, url, server=server, database=name)
