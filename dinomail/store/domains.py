"""Mail domains (`core_virtualdomain`) and their limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import aliasdomain, virtualalias, virtualdomain, virtualuser
from dinomail.store import audit, retiring
from dinomail.store.common import (
    ListedTable,
    Row,
    fetch_one,
    insert_id,
    lister,
)
from dinomail.store.errors import Conflict, Forbidden
from dinomail.store.fields import Normalizer, clean_fields
from dinomail.store.scope import Scope

OBJECT_TYPE = "domain"

NORMALIZERS: dict[str, Normalizer] = {
    "name": lambda value, field: v.normalize_domain(value, field),
    "dkim_key_name": lambda value, field: v.normalize_text(value, field, 200),
    "dkim_key": lambda value, field: v.normalize_text(value, field, 10_000),
    "display_name": lambda value, field: v.normalize_text(value, field, 200),
    "short_display_name": lambda value, field: v.normalize_text(value, field, 50),
    "imap_address": v.normalize_hostname,
    "pop_address": v.normalize_hostname,
    "smtp_address": v.normalize_hostname,
    "active": v.normalize_bool,
    "catchall_senders": v.normalize_bool,
    "require_app_passwords": v.normalize_bool,
    "max_mailboxes": v.normalize_limit,
    "max_aliases": v.normalize_limit,
    "max_quota_per_mailbox": v.normalize_quota,
    "total_quota": v.normalize_quota,
    "default_quota": v.normalize_quota,
}
ORDERABLE = ("id", "name", "created_at")


def _select(scope: Scope) -> sa.Select:
    return sa.select(virtualdomain).where(scope.filter(virtualdomain.c.id))


async def get(conn: AsyncConnection, scope: Scope, domain_id: int) -> Row:
    return await fetch_one(conn, _select(scope).where(virtualdomain.c.id == domain_id), "domain")


async def get_by_name(conn: AsyncConnection, scope: Scope, name: str) -> Row:
    query = _select(scope).where(virtualdomain.c.name == v.normalize_domain(name, "domain"))
    return await fetch_one(conn, query, "domain")



async def check_name_free(
    conn: AsyncConnection, name: str, *, alias_domain: bool = False, own_id: int | None = None
) -> None:
    """A name is one thing at a time: a mail domain or an alias domain, never both.

    `alias_domain` says which kind is being named, `own_id` the row being renamed (its own name
    is not a clash). The alias domain checks reach this only as a superadmin, who sees every
    domain, so saying which kind of name is taken tells nothing a tenant may not know.
    """
    skip_domain = 0 if alias_domain else (own_id or 0)
    skip_alias_domain = (own_id or 0) if alias_domain else 0
    params = {"name": name}
    # (the table, the row not to count, the refusal when naming an alias domain, when naming
    # a mail domain)
    clashes = (
        (virtualdomain, skip_domain,
         Conflict(f"{name} is already a mail domain", field="name", code="name_is_mail_domain",
                  params=params),
         Conflict(f"the domain {name} already exists", field="name", code="domain_exists",
                  params=params)),
        (aliasdomain, skip_alias_domain,
         Conflict(f"the alias domain {name} already exists", field="name",
                  code="alias_domain_exists", params=params),
         Conflict(f"{name} is already an alias domain", field="name",
                  code="name_is_alias_domain", params=params)),
    )
    for table, skip, naming_alias, naming_domain in clashes:
        taken = await conn.scalar(
            sa.select(table.c.id).where(table.c.name == name, table.c.id != skip))
        if taken is not None:
            raise naming_alias if alias_domain else naming_domain


async def create(
    conn: AsyncConnection, actor: str, scope: Scope, data: Mapping[str, Any]
) -> Row:
    if not scope.is_global:
        raise Forbidden(
            "only a superadmin can create a domain", code="superadmin_only_create_domain"
        )
    values = clean_fields(data, NORMALIZERS, required=("name",))
    await check_name_free(conn, values["name"])
    domain_id = await insert_id(conn, virtualdomain, **values)
    row = await get(conn, scope, domain_id)
    await audit.record(conn, actor, "create", OBJECT_TYPE, domain_id, row["name"], new=values,
                       domain_id=domain_id)
    return row


async def update(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, data: Mapping[str, Any]
) -> Row:
    old = await get(conn, scope, domain_id)
    values = clean_fields(data, NORMALIZERS)
    if not scope.is_global:
        for field in ("name", "max_mailboxes", "max_aliases", "max_quota_per_mailbox",
                      "total_quota"):
            if field in values and values[field] != old[field]:
                raise Forbidden("only a superadmin can change a domain's name or limits",
                                field=field, code="superadmin_only_domain_limits")
    if values.get("name", old["name"]) != old["name"]:
        await check_name_free(conn, values["name"], own_id=domain_id)
        # Mailboxes and aliases carry the domain in their addresses; renaming would leave them
        # pointing at the old name.
        if await _has_addresses(conn, domain_id):
            raise Conflict(
                "a domain with mailboxes or aliases cannot be renamed", field="name",
                code="domain_rename_with_addresses",
            )
    if "dkim_key_name" in values:
        # Another selector, by hand as by a rotation: the old record stays published (retiring)
        # until an admin retires it, or mail signed with it would no longer verify.
        await retiring.selector_changing(conn, old, values["dkim_key_name"])
    await audit.update_row(
        conn, actor, virtualdomain, OBJECT_TYPE, domain_id, old["name"], old, values,
        domain_id=domain_id,
    )
    return await get(conn, scope, domain_id)


async def _has_addresses(conn: AsyncConnection, domain_id: int) -> bool:
    for table in (virtualuser, virtualalias):
        found = await conn.scalar(sa.select(table.c.id).where(table.c.domain_id == domain_id))
        if found is not None:
            return True
    return False


async def delete(conn: AsyncConnection, actor: str, scope: Scope, domain_id: int) -> Row:
    """Delete a domain with its mailboxes, aliases and alias domains (the database cascades)."""
    if not scope.is_global:
        raise Forbidden(
            "only a superadmin can delete a domain", code="superadmin_only_delete_domain"
        )
    old = await get(conn, scope, domain_id)
    await audit.delete_row(conn, actor, virtualdomain, OBJECT_TYPE, domain_id, old["name"], old,
                           domain_id=domain_id)
    return old


async def set_dns_status(
    conn: AsyncConnection, domain_id: int, statuses: Mapping[str, Any]
) -> None:
    """Store the results of the DNS checks (not an admin's edit, so not audited)."""
    await conn.execute(
        virtualdomain.update().where(virtualdomain.c.id == domain_id).values(**statuses)
    )


async def count(conn: AsyncConnection, scope: Scope) -> int:
    query = sa.select(sa.func.count()).select_from(virtualdomain)
    return int(await conn.scalar(query.where(scope.filter(virtualdomain.c.id))) or 0)


async def names(conn: AsyncConnection, scope: Scope) -> list[tuple[int, str]]:
    """Every domain the scope sees, for filters and forms."""
    query = sa.select(virtualdomain.c.id, virtualdomain.c.name).where(
        scope.filter(virtualdomain.c.id)
    )
    return [(row.id, row.name) for row in await conn.execute(query.order_by(virtualdomain.c.name))]


LISTED = ListedTable(
    id_column=virtualdomain.c.id, domain_column=virtualdomain.c.id,
    sort_keys={name: virtualdomain.c[name] for name in ORDERABLE},
    searched=(virtualdomain.c.name,), rows=_select,
)


# A page of domains; `request.domain_id` keeps that one domain (the API's `?domain=`).
list_window = lister(LISTED)
