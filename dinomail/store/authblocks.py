"""The blocks of the Dovecot auth policy: clients and logins refused for too many failed
logins, as each lookup daemon writes them, and admins' unblocks.

The failures are counted in each daemon's memory (`lookupd.authpolicy`). Every sync interval a
daemon writes the blocks that changed (`write_blocks`) and takes the unblocks meant for it
(`take_releases`): an unblock marks every daemon's row of that client or login released; each
daemon deletes its released rows as it reads them, in one statement, so none is lost between
a read and a delete. Rows of a daemon that died go once their block has ended
(`prune_blocks`).

Who sees what: a superadmin every block; a domain admin the logins of their domains (a client
address belongs to no domain). Unblocking follows the same rule, and is audited.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.schema import authblock, virtualdomain
from dinomail.store import audit
from dinomail.store.common import Row, Window, conflict_insert, fetch_one, fetch_window, now
from dinomail.store.scope import Scope

if TYPE_CHECKING:
    pass

CLIENT = "client"
LOGIN = "login"
KINDS = (CLIENT, LOGIN)
MAX_KEY_LENGTH = 320
ORDERABLE = ("id", "blocked_until")
# Rows of a block that ended are deleted this long after (a daemon that is alive removes its
# own at once; these are the rows of daemons that stopped without saying so).
PRUNE_MARGIN = timedelta(minutes=10)


class Block(NamedTuple):
    """One daemon's current block of one client or login."""

    kind: str
    key: str
    failures: int
    last_failure_at: datetime
    blocked_until: datetime


def domain_of_key(kind: str, key: str) -> str:
    """The domain a block belongs to: a login's part after @; none for a client."""
    return key.rpartition("@")[2] if kind == LOGIN and "@" in key else ""


# --- what the lookup daemons write and read ------------------------------------------------------


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    statement = conflict_insert(dialect, authblock)
    return statement.on_conflict_do_update(
        index_elements=["kind", "key", "writer"],
        set_={
            "failures": statement.excluded.failures,
            "last_failure_at": statement.excluded.last_failure_at,
            "blocked_until": statement.excluded.blocked_until,
            "updated_at": sa.func.now(),
        },
    )


async def write_blocks(
    conn: AsyncConnection, writer: str, blocks: Iterable[Block], gone: Iterable[tuple[str, str]]
) -> None:
    """Insert or update `writer`'s rows of `blocks`; delete its rows of the (kind, key) pairs
    in `gone` (blocks that ended), unless released (those go with `take_releases`)."""
    rows = [
        {**block._asdict(), "domain": domain_of_key(block.kind, block.key), "writer": writer}
        for block in sorted(blocks)
        if len(block.key) <= MAX_KEY_LENGTH
    ]
    if rows:
        await conn.execute(_upsert_statement(conn.dialect.name), rows)
    by_kind: dict[str, list[str]] = {}
    for kind, key in gone:
        by_kind.setdefault(kind, []).append(key)
    for kind, keys in by_kind.items():
        await conn.execute(authblock.delete().where(
            authblock.c.writer == writer, authblock.c.kind == kind,
            authblock.c.key.in_(sorted(keys)), authblock.c.released_at.is_(None),
        ))


async def take_releases(
    conn: AsyncConnection, writer: str, *, since: datetime | None
) -> tuple[set[tuple[str, str]], datetime]:
    """The (kind, key) pairs admins unblocked: `writer`'s released rows (deleted here) and the
    other daemons' rows released at `since` or later (a daemon may block a key it has not
    written yet). Also the database's time of the read, for the next `since`."""
    read_at = await conn.scalar(sa.select(sa.func.now()))
    assert read_at is not None, "now() is never NULL"
    mine = await conn.execute(
        authblock.delete()
        .where(authblock.c.writer == writer, authblock.c.released_at.is_not(None))
        .returning(authblock.c.kind, authblock.c.key)
    )
    released = {(row.kind, row.key) for row in mine}
    if since is not None:
        others = await conn.execute(
            sa.select(authblock.c.kind, authblock.c.key).where(
                authblock.c.writer != writer, authblock.c.released_at >= since
            )
        )
        released |= {(row.kind, row.key) for row in others}
    return released, read_at


async def remove_writer(conn: AsyncConnection, writer: str) -> None:
    """A daemon that stops forgets its failures: its rows go with it."""
    await conn.execute(authblock.delete().where(authblock.c.writer == writer))


async def prune_blocks(conn: AsyncConnection, moment: datetime) -> int:
    """Delete the rows whose block ended before `moment` less PRUNE_MARGIN; return how many."""
    result = await conn.execute(
        authblock.delete().where(authblock.c.blocked_until < moment - PRUNE_MARGIN)
    )
    return int(result.rowcount or 0)


# --- what admins see and do ----------------------------------------------------------------------


def _visible(scope: Scope, moment: datetime) -> list[sa.ColumnElement[bool]]:
    where = [authblock.c.released_at.is_(None), authblock.c.blocked_until > moment]
    if not scope.is_global:
        domains = sa.select(virtualdomain.c.name).where(scope.filter(virtualdomain.c.id))
        where += [authblock.c.kind == LOGIN, authblock.c.domain.in_(domains)]
    return where


async def get(conn: AsyncConnection, scope: Scope, block_id: int) -> Row:
    query = sa.select(authblock).where(authblock.c.id == block_id, *_visible(scope, now()))
    return await fetch_one(conn, query, "block")


async def list_window(
    conn: AsyncConnection,
    scope: Scope,
    *,
    q: str | None = None,
    order_by: str = "id",
    descending: bool = False,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
) -> Window:
    """The current blocks (not released, not ended), `q` a substring of the key."""
    where = _visible(scope, now())
    if q:
        where.append(authblock.c.key.contains(q.lower(), autoescape=True))
    return await fetch_window(
        conn, id_column=authblock.c.id, where=where, sort=authblock.c[order_by],
        descending=descending, limit=limit, offset=offset, after=after,
        fetch=lambda ids: sa.select(authblock).where(authblock.c.id.in_(ids)),
    )


async def release(conn: AsyncConnection, actor: str, scope: Scope, block_id: int) -> Row:
    """Unblock: every daemon's row of this client or login is marked released; each daemon
    forgets the key's failures within its sync interval."""
    row = await get(conn, scope, block_id)
    await conn.execute(
        authblock.update()
        .where(authblock.c.kind == row["kind"], authblock.c.key == row["key"],
               authblock.c.released_at.is_(None))
        .values(released_at=sa.func.now(), released_by=actor[:200])
    )
    await audit.record(
        conn, actor, "unblock", f"auth_{row['kind']}", block_id, row["key"],
        old={"failures": row["failures"], "blocked_until": row["blocked_until"]},
    )
    return row
