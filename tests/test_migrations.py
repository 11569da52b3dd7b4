"""Migrations upgrade and downgrade on SQLite and PostgreSQL, and match `dinomail.schema`."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dinomail import migrate
from dinomail.database import create_engine
from dinomail.schema import metadata
from tests.support.schema_compare import _declared_for


async def _tables(engine) -> set[str]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await migrate.current_revision(engine) is None
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        assert set(metadata.tables) <= await _tables(engine)

        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert await _tables(engine) <= {"alembic_version", "sqlite_sequence"}

        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_migrated_database_matches_the_schema_module(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync,
                        opts={
                            "compare_type": True,
                            "include_object": _declared_for(sync.dialect.name),
                        },
                    ),
                    metadata,
                )
            )
    finally:
        await engine.dispose()
    assert differences == []
