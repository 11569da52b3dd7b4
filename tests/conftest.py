"""Fixtures shared by the test suite: databases (SQLite and a real PostgreSQL), stores."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from dinomail import migrate
from dinomail.database import create_engine
from dinomail.store import Store
from tests.support.postgres import PostgresServer, find_bindir

# Fixtures more than one module uses, kept in tests/support/ (a test module never imports another).
pytest_plugins = ("tests.support.pages", "tests.support.dict_server")

_database_numbers = itertools.count(1)
TEMPLATE = "dinomail_migrated"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    server.create_database(TEMPLATE)

    async def migrate_template() -> None:
        engine = create_engine(server.url(TEMPLATE))
        await migrate.upgrade(engine)
        await engine.dispose()

    # In a thread: an async fixture may ask for this one while its event loop runs.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate_template()).result()
    yield server
    server.destroy()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start again."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def new_postgres_database(server: PostgresServer, *, migrated: bool = True) -> str:
    name = f"test_{next(_database_numbers)}"
    return server.create_database(name, template=TEMPLATE if migrated else None)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """An empty, unmigrated database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dinomail.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return new_postgres_database(server, migrated=False)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
    """A migrated store on each kind of database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dinomail.sqlite3'}"
        store = Store(url)
        await migrate.upgrade(store.engine)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        store = Store(new_postgres_database(server))
    yield store
    await store.close()
