"""What a database holds: nothing yet, DinoMail's schema, or the original product's (Django)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

CORE_TABLES = ("core_virtualdomain", "core_virtualuser", "core_virtualalias")
# The last migration of the original's `core` app (DinoMail 1.1.1); earlier releases stopped
# at an earlier one, and their tables lack columns that adoption copies.
CORE_MIGRATIONS = (
    "0001_initial", "0002_auto_20200604_1836", "0003_auto_20200616_1132",
    "0004_auto_20200616_1218",
)

Kind = Literal["empty", "dinomail", "original", "unsupported"]


@dataclass(frozen=True)
class DatabaseState:
    kind: Kind
    tables: frozenset[str]
    revision: str | None = None
    # For "unsupported": why the database cannot be migrated or adopted, in one sentence.
    reason: str = ""


def _core_migrations(conn: Connection) -> set[str]:
    rows = conn.execute(
        sa.text("SELECT name FROM django_migrations WHERE app = 'core'")
    ).scalars()
    return set(rows)


def _revision(conn: Connection) -> str | None:
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def inspect_database(conn: Connection) -> DatabaseState:
    tables = frozenset(sa.inspect(conn).get_table_names())
    has_core = [name for name in CORE_TABLES if name in tables]
    if "alembic_version" in tables:
        revision = _revision(conn)
        if revision is not None or not has_core:
            return DatabaseState("dinomail", tables, revision)
    if not has_core:
        return DatabaseState("empty", tables)
    if len(has_core) < len(CORE_TABLES) or "django_migrations" not in tables:
        return DatabaseState(
            "unsupported", tables,
            reason="the database has tables named core_* but was made neither by DinoMail nor "
                   "by the original DinoMail (no django_migrations, or a core table missing)",
        )
    applied = _core_migrations(conn)
    missing = [name for name in CORE_MIGRATIONS if name not in applied]
    if missing:
        return DatabaseState(
            "unsupported", tables,
            reason="this database of the original DinoMail lacks its core migration "
                   f"{missing[0]}: upgrade it to DinoMail 1.1 first (the original's "
                   "`manage.py migrate`), then run `dinomail migrate`",
        )
    return DatabaseState("original", tables)
