"""Each domain's MTA-STS policy (`dinomail_mtastspolicy`): what an admin sets, and what the
`mta-sts.<domain>` host serves.

A domain without a row publishes no policy (404). The MX patterns default to the host its MX
should name: the domain's `mx_host` (client settings), else the MX_HOST setting, so the policy
follows when either changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import mtasts
from dinomail import validation as v
from dinomail.schema import clientconfig, mtastspolicy, virtualdomain
from dinomail.store import audit, domains
from dinomail.store.common import Row, now
from dinomail.store.errors import NotFound
from dinomail.store.fields import clean_fields
from dinomail.store.scope import Scope

NORMALIZERS: dict[str, Any] = {
    "mode": mtasts.normalize_mode,
    "mx": mtasts.normalize_patterns,
    "max_age": mtasts.normalize_max_age,
}


async def _upsert(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(mtastspolicy).values(**values)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["domain_id"],
        set_={name: statement.excluded[name] for name in values if name != "domain_id"},
    ))


def default_mx(domain_mx_host: str | None, setting_mx_host: str) -> tuple[str, ...]:
    host = domain_mx_host or setting_mx_host
    return (v.normalize_hostname(host, "mx_host"),) if host else ()


def policy_of(
    row: Mapping[str, Any] | sa.RowMapping, default: tuple[str, ...]
) -> mtasts.Policy:
    patterns = tuple(row["mx"].split()) or default
    return mtasts.Policy(row["mode"], patterns, int(row["max_age"]))


async def _domain_mx_host(conn: AsyncConnection, domain_id: int) -> str:
    value = await conn.scalar(
        sa.select(clientconfig.c.mx_host).where(clientconfig.c.domain_id == domain_id)
    )
    return str(value or "")


async def get(
    conn: AsyncConnection, scope: Scope, domain_id: int, setting_mx_host: str
) -> Row:
    """The domain's policy as the API and pages show it: `published` false (and the defaults)
    when it has none; `default_mx` what an empty `mx` stands for; `policy_id`, `txt_record` and
    `text` of the served document."""
    domain = await domains.get(conn, scope, domain_id)
    row = (await conn.execute(
        sa.select(mtastspolicy).where(mtastspolicy.c.domain_id == domain_id)
    )).mappings().first()
    default = default_mx(await _domain_mx_host(conn, domain_id), setting_mx_host)
    stored: dict[str, Any] = dict(row) if row else {
        "mode": mtasts.DEFAULT_MODE, "mx": "", "max_age": mtasts.DEFAULT_MAX_AGE, "updated_at": None
    }
    policy = policy_of(stored, default)
    return {
        "domain_id": domain_id, "name": domain["name"], "published": row is not None,
        "mode": policy.mode, "mx": list(stored["mx"].split()), "default_mx": list(default),
        "effective_mx": list(policy.mx), "max_age": policy.max_age,
        "policy_id": policy.policy_id if row else None,
        "txt_record": mtasts.txt_record(policy) if row else None,
        "record_name": f"_mta-sts.{domain['name']}",
        "policy_url": f"https://{mtasts.HOST_PREFIX}{domain['name']}{mtasts.POLICY_PATH}",
        "text": policy.text() if row else None, "updated_at": stored["updated_at"],
    }


async def save(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, data: Mapping[str, Any],
    setting_mx_host: str,
) -> Row:
    """Publish or change the domain's policy; fields not given keep their value (or default).
    A policy in `testing` or `enforce` mode needs at least one MX pattern: senders would
    otherwise refuse every MX (enforce) or report every delivery as failed (testing)."""
    before = await get(conn, scope, domain_id, setting_mx_host)
    values = clean_fields(data, NORMALIZERS)
    mode = values.get("mode", before["mode"])
    patterns = values.get("mx", tuple(before["mx"]))
    max_age = values.get("max_age", before["max_age"])
    if mode != "none" and not (patterns or before["default_mx"]):
        raise v.ValidationError(
            "mx", "name the MX host(s) senders may deliver to (no MX host is configured for "
                  "the domain, nor MX_HOST)", code="mtasts_mx_required")
    await _upsert(conn, {
        "domain_id": domain_id, "mode": mode, "mx": "\n".join(patterns), "max_age": max_age,
        "updated_at": now(),
    })
    after = await get(conn, scope, domain_id, setting_mx_host)
    shown = ("mode", "mx", "max_age", "policy_id")
    if not before["published"] or any(before[key] != after[key] for key in shown):
        await audit.record(
            conn, actor, "update" if before["published"] else "create", "mtastspolicy",
            domain_id, before["name"],
            old={key: before[key] for key in shown} if before["published"] else None,
            new={key: after[key] for key in shown}, domain_id=domain_id,
        )
    return after


async def delete(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, setting_mx_host: str
) -> None:
    """Stop serving the domain's policy (remove the `_mta-sts` record first, or senders that
    cached it keep asking)."""
    before = await get(conn, scope, domain_id, setting_mx_host)
    if not before["published"]:
        raise NotFound("the domain publishes no MTA-STS policy", code="mtasts_not_published")
    await conn.execute(mtastspolicy.delete().where(mtastspolicy.c.domain_id == domain_id))
    await audit.record(conn, actor, "delete", "mtastspolicy", domain_id, before["name"],
                       old={"mode": before["mode"], "policy_id": before["policy_id"]},
                       domain_id=domain_id)


async def served(conn: AsyncConnection, name: str, setting_mx_host: str) -> mtasts.Policy | None:
    """The policy `mta-sts.<name>` serves: None unless `name` is an active domain with one."""
    query = (
        sa.select(mtastspolicy, clientconfig.c.mx_host)
        .join(virtualdomain, virtualdomain.c.id == mtastspolicy.c.domain_id)
        .outerjoin(clientconfig, clientconfig.c.domain_id == mtastspolicy.c.domain_id)
        .where(virtualdomain.c.name == name, virtualdomain.c.active.is_(True))
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    return policy_of(row, default_mx(row["mx_host"], setting_mx_host))
