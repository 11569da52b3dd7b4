"""`authblock`: clients and logins the Dovecot auth policy refuses now, and unblocking them.

Each lookup daemon counts failed logins in memory and writes its current blocks to the
database every AUTH_POLICY_SYNC_INTERVAL; a DELETE marks the block released, and every daemon
forgets that client's or login's failures within that interval (`dinomail.store.authblocks`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from adminapi.api.auth import Caller
from adminapi.api.paging import ListOptions, ListQuery
from adminapi.api.resource import DATETIME, Field, Resource, id_field
from dinomail.store import authblocks
from dinomail.store.common import Window


async def _list_blocks(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
    return await authblocks.list_window(
        conn, caller.scope, q=query.q, order_by=query.order_by, descending=query.descending,
        limit=query.limit, offset=query.offset, after=query.after,
    )


authblock = Resource(
    name="authblock",
    title="Blocked clients and logins",
    description="Client addresses (an IPv4 address, or the /64 of an IPv6 one) and logins that "
    "the Dovecot auth policy refuses now for too many failed logins, one object per lookup "
    "daemon that blocks them (each counts in its own memory), at most "
    "AUTH_POLICY_SYNC_INTERVAL seconds old. A superadmin sees every block; a domain admin the "
    "logins of their domains. DELETE unblocks (audited): every daemon forgets that client's "
    "or login's failures within AUTH_POLICY_SYNC_INTERVAL seconds.",
    fields=(
        id_field(),
        Field("kind", {"type": "string", "enum": list(authblocks.KINDS)},
              "client (an address) or login.", read_only=True),
        Field("key", {"type": "string"}, "The client's address (IPv6: its /64) or the login.",
              read_only=True),
        Field("domain", {"type": "string"}, "A login's domain; empty for a client.",
              read_only=True),
        Field("failures", {"type": "integer"},
              "Distinct failed logins within AUTH_POLICY_WINDOW.", read_only=True),
        Field("blocked_at", DATETIME, "When the daemon first wrote this block.",
              read_only=True),
        Field("last_failure_at", DATETIME, "The last failure counted.", read_only=True),
        Field("blocked_until", DATETIME,
              "When the block ends if no failure comes meanwhile.", read_only=True),
        Field("writer", {"type": "string"}, "Which lookup daemon blocks it (its random id "
              "of this run).", read_only=True),
        Field("updated_at", DATETIME, "When the daemon last wrote it.", read_only=True),
    ),
    list_options=ListOptions(
        orderable=authblocks.ORDERABLE, keyset=authblocks.ORDERABLE,
        search="the address or login",
    ),
    read_list=_list_blocks,
    read_one=lambda conn, caller, pk: authblocks.get(conn, caller.scope, pk),
    delete=lambda conn, caller, pk: authblocks.release(conn, caller.actor, caller.scope, pk),
    notes={"DELETE": "Unblocks the client or login in every lookup daemon (audited)."},
)
