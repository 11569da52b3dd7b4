"""Trigram indexes for the admin API's substring search (`?q=`) on PostgreSQL.

A search for `%fragment%` cannot use a B-tree index; without these, each search reads the whole
table (~70 ms for a million mailboxes). pg_trgm's GIN indexes answer it in under a millisecond.
SQLite databases hold small installations and get nothing here. If the pg_trgm extension is not
installed or the database user may not create it, the indexes are skipped with a warning:
searches still work, only slower.

Revision ID: 0002_api_indexes
Revises: 0001
Create Date: 2026-11-25
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_api_indexes"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

# (index, table, column): the columns `?q=` searches; declared alike in dinomail.schema.
TRIGRAM_INDEXES = (
    ("ix_core_virtualdomain_name_trgm", "core_virtualdomain", "name"),
    ("ix_core_virtualuser_email_trgm", "core_virtualuser", "email"),
    ("ix_core_virtualalias_source_trgm", "core_virtualalias", "source"),
    ("ix_core_virtualalias_destination_trgm", "core_virtualalias", "destination"),
    ("ix_dinomail_aliasdomain_name_trgm", "dinomail_aliasdomain", "name"),
)


def _enable_trigrams(bind: sa.engine.Connection) -> bool:
    available = bind.scalar(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    )
    if not available:
        log.warning("pg_trgm is not installed: substring search will scan whole tables "
                    "(install postgresql-contrib and run `dinomail migrate` again)")
        return False
    try:
        # In a savepoint: a refusal must not abort the rest of the migration.
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as error:
        log.warning("cannot create the pg_trgm extension (%s): substring search will scan "
                    "whole tables; a superuser can run CREATE EXTENSION pg_trgm", error.orig)
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _enable_trigrams(bind):
        return
    for index, table, column in TRIGRAM_INDEXES:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin ({column} gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for index, _table, _column in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {index}")
