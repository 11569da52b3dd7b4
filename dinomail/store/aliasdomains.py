"""Alias domains (`dinomail_aliasdomain`): `local@alias.tld` is `local@target.tld`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import aliasdomain, virtualdomain
from dinomail.store import audit, domains
from dinomail.store.common import (
    ListedTable,
    Row,
    fetch_one,
    lister,
)
from dinomail.store.errors import Forbidden, NotFound
from dinomail.store.fields import Normalizer, clean_fields
from dinomail.store.mailboxes import _normalize_id
from dinomail.store.scope import Scope

OBJECT_TYPE = "alias_domain"

NORMALIZERS: dict[str, Normalizer] = {
    "name": lambda value, field: v.normalize_domain(value, field),
    "target_domain_id": lambda value, field: _normalize_id(value, "target_domain"),
    "active": v.normalize_bool,
}
ORDERABLE = ("id", "name", "created_at")

_COLUMNS = (*aliasdomain.c, virtualdomain.c.name.label("target_domain_name"))
_FROM = aliasdomain.join(virtualdomain, virtualdomain.c.id == aliasdomain.c.target_domain_id)


def _select(scope: Scope) -> sa.Select:
    return sa.select(*_COLUMNS).select_from(_FROM).where(
        scope.filter(aliasdomain.c.target_domain_id)
    )


async def get(conn: AsyncConnection, scope: Scope, alias_domain_id: int) -> Row:
    query = _select(scope).where(aliasdomain.c.id == alias_domain_id)
    return await fetch_one(conn, query, "alias domain")



async def _check(
    conn: AsyncConnection, scope: Scope, values: Mapping[str, Any], alias_domain_id: int | None
) -> None:
    target = values["target_domain_id"]
    if not scope.allows(target) or await conn.scalar(
        sa.select(virtualdomain.c.id).where(virtualdomain.c.id == target)
    ) is None:
        raise NotFound("domain not found", field="target_domain", code="domain_not_found")
    await domains.check_name_free(
        conn, values["name"], alias_domain=True, own_id=alias_domain_id
    )


def _check_may_name(scope: Scope) -> None:
    """An alias domain is a mail domain: `x@name` is accepted, delivered and sent from here.
    Naming one takes that name for the whole server (a domain admin naming `gmail.com` would
    keep every local user's mail to gmail.com), so only those who may create domains may."""
    if not scope.is_global:
        raise Forbidden(
            "only a superadmin can create or rename an alias domain", field="name",
            code="superadmin_only_alias_domain",
        )


async def create(
    conn: AsyncConnection, actor: str, scope: Scope, data: Mapping[str, Any]
) -> Row:
    _check_may_name(scope)
    values = clean_fields(data, NORMALIZERS, required=("name", "target_domain_id"))
    await _check(conn, scope, values, None)
    new_id = await audit.insert_row(conn, actor, aliasdomain, OBJECT_TYPE, values["name"], values,
                                    domain_id=values["target_domain_id"])
    return await get(conn, scope, new_id)


async def update(
    conn: AsyncConnection,
    actor: str,
    scope: Scope,
    alias_domain_id: int,
    data: Mapping[str, Any],
) -> Row:
    old = await get(conn, scope, alias_domain_id)
    values = clean_fields(data, NORMALIZERS)
    merged = {"name": old["name"], "target_domain_id": old["target_domain_id"], **values}
    if merged["name"] != old["name"]:
        _check_may_name(scope)
    await _check(conn, scope, merged, alias_domain_id)
    await audit.update_row(
        conn, actor, aliasdomain, OBJECT_TYPE, alias_domain_id, old["name"], old, values,
        domain_id=merged["target_domain_id"],
    )
    return await get(conn, scope, alias_domain_id)


async def delete(
    conn: AsyncConnection, actor: str, scope: Scope, alias_domain_id: int
) -> Row:
    old = await get(conn, scope, alias_domain_id)
    await audit.delete_row(conn, actor, aliasdomain, OBJECT_TYPE, alias_domain_id, old["name"],
                           old, domain_id=old["target_domain_id"])
    return old


LISTED = ListedTable(
    id_column=aliasdomain.c.id, domain_column=aliasdomain.c.target_domain_id,
    sort_keys={name: aliasdomain.c[name] for name in ORDERABLE},
    searched=(aliasdomain.c.name,), rows=_select,
)


# A page of alias domains; `request.domain_id` keeps those of that target domain.
list_window = lister(LISTED)
