"""Run and inspect the Alembic migrations on an async engine (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "dinomail:migrations")
    config.attributes["connection"] = connection
    return config


def config(connection: Connection) -> Config:
    """Alembic's configuration for running migrations on `connection`, in its transaction."""
    return _config(connection)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.upgrade(_config(sync), revision)
        )


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(
            lambda sync: command.downgrade(_config(sync), revision)
        )


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def pending_revisions(current: str | None) -> list[tuple[str, str]]:
    """(revision, first line of its description) of each revision an upgrade would apply,
    oldest first."""
    script = ScriptDirectory.from_config(_config())
    revisions = script.iterate_revisions(head_revision(), current)
    return [(rev.revision, (rev.doc or "").strip().splitlines()[0] if rev.doc else "")
            for rev in reversed(list(revisions))]
