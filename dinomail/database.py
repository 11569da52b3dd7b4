"""Database URLs and engines: SQLite (embedded default) and PostgreSQL.

Admins write the URLs they know (`sqlite:///path`, `postgresql://user:pw@host/db`); the async
drivers (aiosqlite, asyncpg) are chosen here, in one place.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

Dialect = Literal["sqlite", "postgresql"]

_DRIVERS: dict[str, tuple[Dialect, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
}

# SQLite waits this long for another writer (the admin API and lookupd share the file).
SQLITE_BUSY_TIMEOUT_MS = 5000


class DatabaseURLError(ValueError):
    """The URL cannot name a database DinoMail supports."""


def async_url(url: str) -> URL:
    """Parse an admin's URL and give the SQLAlchemy URL with the async driver."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseURLError(
            f"{url!r} is not a database URL (try sqlite:///path or postgresql://user@host/db)"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseURLError(
            f"unsupported database {parsed.drivername!r} (use sqlite:// or postgresql://)"
        )
    dialect, drivername = driver
    if dialect == "sqlite" and not parsed.database:
        raise DatabaseURLError("a SQLite URL needs a file, as in sqlite:///dinomail.sqlite3")
    if dialect == "postgresql" and not parsed.database:
        raise DatabaseURLError("a PostgreSQL URL needs a database name, as in .../dinomail")
    return parsed.set(drivername=drivername)


def dialect_of(url: str) -> Dialect:
    return _DRIVERS[async_url(url).drivername][0]


def _configure_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the lookup daemon read while the admin API writes; foreign keys are off by
    # default in SQLite and the cascades of the schema depend on them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine(url: str, **options: object) -> AsyncEngine:
    """An async engine for the admin's URL, with the pragmas SQLite needs."""
    target = async_url(url)
    if target.drivername.startswith("sqlite"):
        engine = create_async_engine(target, **options)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    options.setdefault("pool_pre_ping", True)
    return create_async_engine(target, **options)
