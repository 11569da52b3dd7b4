"""Domain limits: how many mailboxes and aliases, how much quota. Checked inside the write's
transaction, with the domain row locked on PostgreSQL so two writers cannot both squeeze in."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import quotausage, virtualalias, virtualdomain, virtualuser
from dinomail.store.common import Row
from dinomail.store.errors import LimitExceeded, NotFound
from dinomail.store.scope import Scope


async def lock_domain(conn: AsyncConnection, domain_id: int) -> Row:
    query = sa.select(virtualdomain).where(virtualdomain.c.id == domain_id).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound("domain not found", field="domain", code="domain_not_found")
    return dict(row)


async def lock_domain_of(
    conn: AsyncConnection, scope: Scope, domain_id: int | None, address: str
) -> Row:
    """The domain of a mailbox or an alias: the one named, else the address's; locked for the
    limit checks. Another tenant's domain and no domain at all get the same answer, so that a
    domain admin cannot learn which domains exist."""
    if domain_id is None:
        name = v.domain_of(address)
        domain_id = await conn.scalar(
            sa.select(virtualdomain.c.id).where(virtualdomain.c.name == name)
        )
        if domain_id is None or not scope.allows(domain_id):
            raise NotFound(
                f"{name} is not a domain you manage", field="domain", code="domain_not_yours",
                params={"name": name},
            )
    if not scope.allows(domain_id):
        raise NotFound("domain not found", field="domain", code="domain_not_found")
    return await lock_domain(conn, domain_id)


async def check_mailbox_count(conn: AsyncConnection, domain: Row) -> None:
    limit = domain["max_mailboxes"]
    if not limit:
        return
    used = await conn.scalar(
        sa.select(sa.func.count()).where(virtualuser.c.domain_id == domain["id"])
    )
    if used >= limit:
        raise LimitExceeded(
            f"the domain {domain['name']} already has its maximum of {limit} mailboxes",
            field="domain", code="too_many_mailboxes",
            params={"name": domain["name"], "limit": limit},
        )


async def check_alias_count(conn: AsyncConnection, domain: Row, adding: int = 1) -> None:
    limit = domain["max_aliases"]
    if not limit:
        return
    used = await conn.scalar(
        sa.select(sa.func.count()).where(virtualalias.c.domain_id == domain["id"])
    )
    assert used is not None, "COUNT(*) is never NULL"
    if used + adding > limit:
        raise LimitExceeded(
            f"the domain {domain['name']} allows at most {limit} aliases", field="domain",
            code="too_many_aliases", params={"name": domain["name"], "limit": limit},
        )


async def check_quota(
    conn: AsyncConnection, domain: Row, quota: int, *, replacing_mailbox: int | None = None
) -> None:
    """`quota` for one mailbox must fit the per-mailbox cap and the domain's total."""
    cap, total = domain["max_quota_per_mailbox"], domain["total_quota"]
    if cap and (quota == 0 or quota > cap):
        raise LimitExceeded(
            f"the quota must be between 1 and {cap} bytes in {domain['name']}", field="quota",
            code="quota_out_of_range", params={"name": domain["name"], "cap": cap},
        )
    if not total:
        return
    if quota == 0:
        raise LimitExceeded(
            f"{domain['name']} has a total quota, so each mailbox needs a quota", field="quota",
            code="quota_required", params={"name": domain["name"]},
        )
    others = await conn.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(virtualuser.c.quota), 0)).where(
            virtualuser.c.domain_id == domain["id"],
            virtualuser.c.id != (replacing_mailbox or 0),
        )
    )
    assert others is not None, "COALESCE(SUM(quota), 0) is never NULL"
    if int(others) + quota > total:
        raise LimitExceeded(
            f"{domain['name']} would exceed its total quota of {total} bytes "
            f"({int(others)} already given to other mailboxes)",
            field="quota", code="total_quota_exceeded",
            params={"name": domain["name"], "total": total, "others": int(others)},
        )


async def usage(conn: AsyncConnection, domain_ids: Sequence[int]) -> dict[int, Row]:
    """What each domain uses of its limits: mailboxes, aliases, quota given out, and the
    bytes and messages Dovecot reported (quota_clone). Every id asked for gets an entry."""
    wanted = sorted(set(domain_ids))
    result: dict[int, Row] = {
        domain_id: {
            "mailboxes": 0, "aliases": 0, "quota_allocated": 0,
            "quota_used_bytes": 0, "quota_used_messages": 0,
        }
        for domain_id in wanted
    }
    if not wanted:
        return result
    mailbox_rows = await conn.execute(
        sa.select(
            virtualuser.c.domain_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(virtualuser.c.quota), 0),
            sa.func.coalesce(sa.func.sum(quotausage.c.bytes), 0),
            sa.func.coalesce(sa.func.sum(quotausage.c.messages), 0),
        )
        .select_from(
            virtualuser.outerjoin(quotausage, quotausage.c.user_id == virtualuser.c.id)
        )
        .where(virtualuser.c.domain_id.in_(wanted))
        .group_by(virtualuser.c.domain_id)
    )
    for domain_id, count, allocated, used_bytes, used_messages in mailbox_rows:
        result[domain_id].update(
            mailboxes=int(count), quota_allocated=int(allocated),
            quota_used_bytes=int(used_bytes), quota_used_messages=int(used_messages),
        )
    alias_rows = await conn.execute(
        sa.select(virtualalias.c.domain_id, sa.func.count())
        .where(virtualalias.c.domain_id.in_(wanted))
        .group_by(virtualalias.c.domain_id)
    )
    for domain_id, count in alias_rows:
        result[domain_id]["aliases"] = int(count)
    return result
