"""The store: every SQL query and write of DinoMail, in one package.

Callers open a transaction and call the functions of one module per concept:

    async with store.write() as conn:
        domain = await domains.create(conn, actor, {"name": "example.org"})

A write transaction commits as a whole or not at all (invariant 5), and after it commits the
store tells its listeners (the lookup daemon in the same process wakes at once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dinomail.database import Dialect, create_engine, dialect_of
from dinomail.errortext import first_line
from dinomail.store.errors import (
    Conflict,
    Forbidden,
    LimitExceeded,
    NotFound,
    StoreError,
    Unavailable,
    as_unavailable,
)
from dinomail.store.scope import EVERYTHING, Scope

__all__ = [
    "EVERYTHING",
    "Conflict",
    "Forbidden",
    "LimitExceeded",
    "NotFound",
    "Scope",
    "Store",
    "StoreError",
    "Unavailable",
]


class Store:
    def __init__(self, url: str, **engine_options: object) -> None:
        self.url = url
        self.dialect: Dialect = dialect_of(url)
        self.engine: AsyncEngine = create_engine(url, **engine_options)
        self._write_listeners: list[Callable[[], None]] = []

    def on_write(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each committed write transaction of this store."""
        self._write_listeners.append(listener)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading. An outage of the database raises `Unavailable`."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except Exception as error:
            _raise_outage(error)
            raise

    @asynccontextmanager
    async def write(self, *, quiet: bool = False) -> AsyncIterator[AsyncConnection]:
        """A transaction, committed as a whole when the block ends without an error.

        A uniqueness conflict with a concurrent writer raises `Conflict`, an outage of the
        database `Unavailable`. After the commit the store tells its write listeners (the
        refresher of the lookup daemon), unless `quiet`: for what no lookup answer is made of
        (the daemon's own sending counts and login blocks), which must not wake it.
        """
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError as error:
            # Unique checks run before each insert, so this is a race with a concurrent writer.
            raise Conflict(
                f"this conflicts with existing data ({_constraint(error)})",
                code="write_conflict",
            ) from None
        except Exception as error:
            _raise_outage(error)
            raise
        if not quiet:
            for listener in self._write_listeners:
                listener()

    async def ping(self) -> None:
        """Raise `Unavailable` if the database does not answer a trivial query."""
        async with self.read() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()


def _raise_outage(error: Exception) -> None:
    unavailable = as_unavailable(error)
    if unavailable is not None and unavailable is not error:
        raise unavailable from error


def _constraint(error: IntegrityError) -> str:
    return first_line(error) if error.orig else "integrity error"
