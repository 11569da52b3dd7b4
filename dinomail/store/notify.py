"""Being told when the change log grows: PostgreSQL's LISTEN, on a connection of its own.

The triggers call `pg_notify('dinomail_changelog', '')`; PostgreSQL delivers it when the writing
transaction commits. A notification only says "look": what changed is read from the log.
SQLite has no such thing; its readers poll the log, which is cheap (one indexed MAX query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from dinomail.database import asyncpg_connect_args

CHANNEL = "dinomail_changelog"
CONNECT_TIMEOUT = 10.0


class ChangeListener:
    """A LISTEN connection; `on_change` is called for each notification, `on_lost` when the
    connection dies (the caller reconnects)."""

    def __init__(self, on_change: Callable[[], None], on_lost: Callable[[], None]) -> None:
        self._on_change = on_change
        self._on_lost = on_lost
        self._connection: asyncpg.Connection | None = None

    async def start(self, url: str) -> None:
        # Notifications are sent by the primary only (a standby cannot LISTEN): with several
        # servers in the URL, this connection goes to the one that takes writes.
        options = asyncpg_connect_args(url, target_session_attrs="read-write")
        connection = await asyncpg.connect(**options, timeout=CONNECT_TIMEOUT)
        connection.add_termination_listener(lambda _conn: self._on_lost())
        await connection.add_listener(CHANNEL, self._notified)
        self._connection = connection

    def _notified(self, *_args: Any) -> None:
        self._on_change()

    @property
    def alive(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            if not connection.is_closed():
                connection.terminate()
