"""The audit log: who changed what, when, with the values before and after (never a secret)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.schema import auditlog
from dinomail.store.common import Row, Window, changed_values, fetch_one, fetch_window
from dinomail.store.scope import Scope

# Never written to the log, whatever the object: invariant 6.
SECRET_FIELDS = frozenset({"password", "key", "key_hash", "secret", "dkim_private_key"})


def _clean(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    kept = {
        key: (value.isoformat() if isinstance(value, datetime) else value)
        for key, value in values.items()
        if key not in SECRET_FIELDS
    }
    return json.dumps(kept, sort_keys=True, default=str)


async def record(
    conn: AsyncConnection,
    actor: str,
    action: str,
    object_type: str,
    object_id: object,
    object_repr: str,
    *,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        auditlog.insert().values(
            actor=actor[:200],
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            object_repr=object_repr[:300],
            old_values=_clean(old),
            new_values=_clean(new),
        )
    )



async def update_row(
    conn: AsyncConnection, actor: str, table: sa.Table, object_type: str, row_id: int,
    label: str, old: Mapping[str, Any], values: Mapping[str, Any],
) -> None:
    """Write the fields of `values` that differ from `old` to the row `row_id` of `table`, and
    log them, before and after; nothing at all when none differs."""
    before, after = changed_values(old, values)
    if after:
        await conn.execute(table.update().where(table.c.id == row_id).values(**after))
        await record(conn, actor, "update", object_type, row_id, label, old=before, new=after)


def _visible(scope: Scope) -> sa.ColumnElement[bool]:
    # Entries name objects of every domain; until they carry a domain, only superadmins read them.
    return sa.true() if scope.is_global else sa.false()


async def get(conn: AsyncConnection, scope: Scope, entry_id: int) -> Row:
    query = sa.select(auditlog).where(auditlog.c.id == entry_id, _visible(scope))
    return await fetch_one(conn, query, "audit log entry")


async def list_window(
    conn: AsyncConnection,
    scope: Scope,
    *,
    descending: bool = True,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
) -> Window:
    """The log, newest first unless asked otherwise, fast at any length (`fetch_window`)."""
    return await fetch_window(
        conn, id_column=auditlog.c.id, where=[_visible(scope)], sort=auditlog.c.id,
        descending=descending, limit=limit, offset=offset, after=after,
        fetch=lambda ids: sa.select(auditlog).where(auditlog.c.id.in_(ids)),
    )
