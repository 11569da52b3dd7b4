"""Aliases (`core_virtualalias`): one row per source → destination; `@domain` is a catch-all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import aliasdomain, virtualalias, virtualdomain, virtualuser
from dinomail.store import audit, limits
from dinomail.store.common import (
    ListedTable,
    Row,
    fetch_one,
    lister,
)
from dinomail.store.errors import Conflict
from dinomail.store.fields import clean_fields
from dinomail.store.mailboxes import _normalize_id
from dinomail.store.scope import Scope

OBJECT_TYPE = "alias"

NORMALIZERS = {
    "domain_id": lambda value, field: _normalize_id(value, "domain"),
    "source": lambda value, field: v.normalize_alias_source(value, field),
    "destination": lambda value, field: v.normalize_email(value, field),
}
ORDERABLE = ("id", "source", "destination", "created_at")

_COLUMNS = (
    virtualalias.c.id,
    virtualalias.c.domain_id,
    virtualalias.c.source,
    virtualalias.c.destination,
    virtualalias.c.created_at,
    virtualdomain.c.name.label("domain_name"),
)
_FROM = virtualalias.join(virtualdomain, virtualdomain.c.id == virtualalias.c.domain_id)


def _select(scope: Scope) -> sa.Select:
    return sa.select(*_COLUMNS).select_from(_FROM).where(scope.filter(virtualalias.c.domain_id))


async def get(conn: AsyncConnection, scope: Scope, alias_id: int) -> Row:
    return await fetch_one(conn, _select(scope).where(virtualalias.c.id == alias_id), "alias")



async def _check_pair_free(
    conn: AsyncConnection, source: str, destination: str, alias_id: int | None
) -> None:
    taken = await conn.scalar(
        sa.select(virtualalias.c.id).where(
            virtualalias.c.source == source,
            virtualalias.c.destination == destination,
            virtualalias.c.id != (alias_id or 0),
        )
    )
    if taken is not None:
        raise Conflict(
            f"the alias {source} -> {destination} already exists", field="source",
            code="alias_exists", params={"source": source, "destination": destination},
        )


async def _check_not_on_mailbox(conn: AsyncConnection, source: str) -> None:
    """An alias on a mailbox's own address would take all its mail (aliases are looked up
    first), silently. Refused here: the mailbox's forwarding (`store.forwarding`) is the
    explicit form of it, with a copy kept or not and its own limits. The source's domain is the
    caller's, so saying so tells them nothing about anyone else."""
    if await conn.scalar(sa.select(virtualuser.c.id).where(virtualuser.c.email == source)):
        raise Conflict(
            f"{source} is a mailbox: an alias on its address would take its mail; set the "
            "mailbox's forwarding instead",
            field="source", code="alias_on_mailbox", params={"source": source},
        )


def _check_not_self(values: Mapping[str, Any]) -> None:
    if values["source"] == values["destination"]:
        raise v.ValidationError(
            "destination", "an alias cannot deliver to its own address", code="alias_to_itself"
        )


async def create(
    conn: AsyncConnection, actor: str, scope: Scope, data: Mapping[str, Any]
) -> Row:
    values = clean_fields(data, NORMALIZERS, required=("source", "destination"))
    domain = await limits.lock_domain_of(conn, scope, values.get("domain_id"), values["source"])
    values["domain_id"] = domain["id"]
    v.check_address_in_domain(values["source"], domain["name"], "source")
    _check_not_self(values)
    await _check_not_on_mailbox(conn, values["source"])
    await _check_pair_free(conn, values["source"], values["destination"], None)
    await limits.check_alias_count(conn, domain)
    alias_id = await audit.insert_row(conn, actor, virtualalias, OBJECT_TYPE, _label(values),
                                      values, domain_id=domain["id"])
    return await get(conn, scope, alias_id)


async def update(
    conn: AsyncConnection, actor: str, scope: Scope, alias_id: int, data: Mapping[str, Any]
) -> Row:
    old = await get(conn, scope, alias_id)
    values = clean_fields(data, NORMALIZERS)
    merged = {key: old[key] for key in ("domain_id", "source", "destination")} | values
    domain = await limits.lock_domain_of(conn, scope, merged["domain_id"], merged["source"])
    v.check_address_in_domain(merged["source"], domain["name"], "source")
    _check_not_self(merged)
    if merged["source"] != old["source"]:
        await _check_not_on_mailbox(conn, merged["source"])
    await _check_pair_free(conn, merged["source"], merged["destination"], alias_id)
    if merged["domain_id"] != old["domain_id"]:
        await limits.check_alias_count(conn, domain)
    label = _label(old)
    await audit.update_row(conn, actor, virtualalias, OBJECT_TYPE, alias_id, label, old, values,
                           domain_id=domain["id"])
    return await get(conn, scope, alias_id)


def _label(alias: Mapping[str, Any]) -> str:
    """How the audit log names an alias."""
    return f"{alias['source']} -> {alias['destination']}"


async def delete(conn: AsyncConnection, actor: str, scope: Scope, alias_id: int) -> Row:
    old = await get(conn, scope, alias_id)
    await audit.delete_row(conn, actor, virtualalias, OBJECT_TYPE, alias_id, _label(old), old,
                           domain_id=old["domain_id"])
    return old


async def count(conn: AsyncConnection, scope: Scope) -> int:
    query = sa.select(sa.func.count()).select_from(virtualalias)
    return int(await conn.scalar(query.where(scope.filter(virtualalias.c.domain_id))) or 0)


async def destination_status(
    conn: AsyncConnection, scope: Scope, destinations: list[str]
) -> dict[str, bool]:
    """For the pages' "Exterior ?" / "Ok ?" columns: is each destination's domain one of the
    caller's domains (or an alias domain of one), and if so, does the address exist there as an
    active mailbox or an alias source (a catch-all does not count: it would hide typos).

    Returns destination → ok, only for interior destinations. A domain outside the caller's
    scope counts as exterior whether or not it exists here, so the columns never tell a domain
    admin what another tenant has. A mailbox that is not active is not ok: mail to it is
    refused.
    """
    wanted = sorted(set(destinations))
    if not wanted:
        return {}
    domain_names = sorted({v.domain_of(address) for address in wanted})
    own = {
        row.name: row.name
        for row in await conn.execute(
            sa.select(virtualdomain.c.name).where(
                virtualdomain.c.name.in_(domain_names), scope.filter(virtualdomain.c.id)
            )
        )
    }
    # An alias domain's addresses are its target's.
    for row in await conn.execute(
        sa.select(aliasdomain.c.name, virtualdomain.c.name.label("target"))
        .select_from(aliasdomain.join(
            virtualdomain, virtualdomain.c.id == aliasdomain.c.target_domain_id))
        .where(aliasdomain.c.name.in_(domain_names), scope.filter(virtualdomain.c.id))
    ):
        own[row.name] = row.target
    target_of = {
        address: f"{address.rpartition('@')[0]}@{own[v.domain_of(address)]}"
        for address in wanted if v.domain_of(address) in own
    }
    targets = sorted(set(target_of.values()))
    receiving = set(
        await conn.scalars(
            sa.select(virtualuser.c.email).where(
                virtualuser.c.email.in_(targets), virtualuser.c.active.is_(True)
            )
        )
    ) | set(
        await conn.scalars(
            sa.select(virtualalias.c.source).where(
                virtualalias.c.source.in_(targets)
            )
        )
    )
    return {address: target in receiving for address, target in target_of.items()}


LISTED = ListedTable(
    id_column=virtualalias.c.id, domain_column=virtualalias.c.domain_id,
    sort_keys={name: virtualalias.c[name] for name in ORDERABLE},
    searched=(virtualalias.c.source, virtualalias.c.destination), rows=_select,
)


# A page of aliases; `q` searches the source and the destination.
list_window = lister(LISTED)
