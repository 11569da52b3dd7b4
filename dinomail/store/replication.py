"""Which PostgreSQL server a connection reached, and whether it is a standby.

A streaming-replication standby (in recovery) answers reads, the mail data and the change log
included, but refuses every write and LISTEN. The lookup daemon asks this to choose how it
follows the change log, and to notice that a connection now reaches another server (after a
failover), whose log it must not trust to continue the one it followed.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_STATE = sa.text(
    "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port'),"
    " pg_postmaster_start_time()::text, pg_is_in_recovery()"
)


@dataclass(frozen=True)
class ServerState:
    address: str  # the server's own address and port ("local:5432" over a unix socket)
    started: str  # when its postmaster started: a restarted server is another run of it
    in_recovery: bool  # a standby (promotion turns this off without a new connection)

    @property
    def identity(self) -> tuple[str, str]:
        """Equal for two connections to one run of one server."""
        return self.address, self.started


async def server_state(conn: AsyncConnection) -> ServerState | None:
    """The server behind `conn`; None on SQLite (one file, never a standby)."""
    if conn.dialect.name != "postgresql":
        return None
    row = (await conn.execute(_STATE)).one()
    return ServerState(str(row[0]), str(row[1]), bool(row[2]))


async def in_recovery(conn: AsyncConnection) -> bool:
    """Whether the database is a standby, which takes no writes (False on SQLite)."""
    state = await server_state(conn)
    return state is not None and state.in_recovery
