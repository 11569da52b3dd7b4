"""The audit log: who changed what, when, from where, with the values before and after (never a
secret), and which domain the change was about.

A domain admin reads the entries about their domains; entries about no domain (admins, API
keys, blocked logins) are for superadmins only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.schema import auditlog
from dinomail.store.common import (
    Row,
    Window,
    changed_values,
    escape_like,
    fetch_all,
    fetch_one,
    fetch_window,
    insert_id,
)
from dinomail.store.scope import Scope

# Never written to the log, whatever the object: invariant 6.
SECRET_FIELDS = frozenset({"password", "key", "key_hash", "secret", "dkim_private_key"})
# The actions the store writes, for the pages' filter (any other is still accepted there).
KNOWN_ACTIONS = (
    "create", "update", "delete", "set_password", "revoke", "reset", "unblock",
    "reset_password", "generate_dkim", "rotate_dkim", "export_dkim", "import",
)
MAX_ADDRESS_LENGTH = 64
# Entries read at a time by an export.
EXPORT_BATCH = 500

# The client address of the request being answered: set once per request by the HTTP layer,
# so that every store function records it without each taking another argument.
_client_address: ContextVar[str | None] = ContextVar("audit_client_address", default=None)


@contextmanager
def client_address(address: str | None) -> Any:
    """Record `address` as where the changes made inside come from."""
    token = _client_address.set(address[:MAX_ADDRESS_LENGTH] if address else None)
    try:
        yield
    finally:
        _client_address.reset(token)


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
    domain_id: int | None = None,
) -> None:
    """Write one entry; `domain_id` names the domain the change is about, if any."""
    await conn.execute(
        auditlog.insert().values(
            actor=actor[:200],
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            object_repr=object_repr[:300],
            old_values=_clean(old),
            new_values=_clean(new),
            domain_id=domain_id,
            address=_client_address.get(),
        )
    )


async def update_row(
    conn: AsyncConnection, actor: str, table: sa.Table, object_type: str, row_id: int,
    label: str, old: Mapping[str, Any], values: Mapping[str, Any], *, domain_id: int | None,
) -> dict[str, Any]:
    """Write the fields of `values` that differ from `old` to the row `row_id` of `table`, and
    log them, before and after; nothing at all when none differs. Returns what changed."""
    before, after = changed_values(old, values)
    if after:
        await conn.execute(table.update().where(table.c.id == row_id).values(**after))
        await record(conn, actor, "update", object_type, row_id, label, old=before, new=after,
                     domain_id=domain_id)
    return after


async def insert_row(
    conn: AsyncConnection, actor: str, table: sa.Table, object_type: str, label: str,
    values: Mapping[str, Any], *, domain_id: int | None, hidden: Mapping[str, Any] | None = None,
) -> int:
    """Insert `values` as a new row of `table` and log them; `hidden` values are written but
    kept out of the log (a password hash). The new row's id."""
    row_id = await insert_id(conn, table, **values, **(hidden or {}))
    await record(conn, actor, "create", object_type, row_id, label, new=values,
                 domain_id=domain_id)
    return row_id


async def delete_row(
    conn: AsyncConnection, actor: str, table: sa.Table, object_type: str, row_id: int,
    label: str, old: Mapping[str, Any], *, domain_id: int | None = None,
) -> None:
    """Delete the row `row_id` of `table` (as it was: `old`) and log it."""
    await conn.execute(table.delete().where(table.c.id == row_id))
    await record(conn, actor, "delete", object_type, row_id, label, old=old, domain_id=domain_id)


def _visible(scope: Scope) -> sa.ColumnElement[bool]:
    # An entry about no domain (NULL) is outside every domain admin's scope.
    return scope.filter(auditlog.c.domain_id)


@dataclass(frozen=True)
class Filters:
    """What the log is narrowed to; None means any."""

    admin: str | None = None
    domain_id: int | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses: list[sa.ColumnElement[bool]] = []
        if self.admin is not None:
            # The admin's own changes and those made with their API keys.
            clauses.append(sa.or_(
                auditlog.c.actor == f"admin:{self.admin}",
                auditlog.c.actor.like(f"apikey:%({escape_like(self.admin)})", escape="\\"),
            ))
        if self.domain_id is not None:
            clauses.append(auditlog.c.domain_id == self.domain_id)
        if self.action is not None:
            clauses.append(auditlog.c.action == self.action)
        if self.since is not None:
            clauses.append(auditlog.c.at >= _utc(self.since))
        if self.until is not None:
            clauses.append(auditlog.c.at < _utc(self.until))
        return clauses


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no offset: every stored time is UTC, so compare in UTC.
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


async def get(conn: AsyncConnection, scope: Scope, entry_id: int) -> Row:
    query = sa.select(auditlog).where(auditlog.c.id == entry_id, _visible(scope))
    return await fetch_one(conn, query, "audit log entry")


async def list_window(
    conn: AsyncConnection,
    scope: Scope,
    *,
    filters: Filters | None = None,
    descending: bool = True,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
) -> Window:
    """The log, newest first unless asked otherwise, fast at any length (`fetch_window`)."""
    where = [_visible(scope), *(filters or Filters()).where()]
    return await fetch_window(
        conn, id_column=auditlog.c.id, where=where, sort=auditlog.c.id,
        descending=descending, limit=limit, offset=offset, after=after,
        fetch=lambda ids: sa.select(auditlog).where(auditlog.c.id.in_(ids)),
    )


async def iterate(
    conn: AsyncConnection, scope: Scope, filters: Filters, *, batch: int = EXPORT_BATCH,
    limit: int | None = None,
) -> AsyncIterator[Row]:
    """Every matching entry, newest first, read `batch` at a time (an export)."""
    clauses = [_visible(scope), *filters.where()]
    before: int | None = None
    given = 0
    while limit is None or given < limit:
        query = sa.select(auditlog).where(*clauses)
        if before is not None:
            query = query.where(auditlog.c.id < before)
        rows = await fetch_all(conn, query.order_by(auditlog.c.id.desc()).limit(batch))
        for row in rows:
            if limit is not None and given >= limit:
                return
            given += 1
            yield row
        if len(rows) < batch:
            return
        before = rows[-1]["id"]
