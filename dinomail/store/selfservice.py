"""Self-service for mailbox owners: each domain's switches, and who may log in to `/me/`.

A domain's switches live in `dinomail_domainselfservice`; a domain without a row has the
defaults (self-service on, external forwarding allowed). The SELF_SERVICE setting, off, turns
self-service off everywhere; callers pass it in as `enabled`.

A mailbox owner logs in with the mailbox's own password, checked against the hash Dovecot
checks (any Dovecot scheme). Hashing is slow on purpose, so it never runs inside a
transaction: `login_candidate` reads, the caller verifies, `replace_hash` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import domainselfservice, virtualdomain, virtualuser
from dinomail.store import audit, domains
from dinomail.store.common import Row, changed_values, now
from dinomail.store.fields import Normalizer, clean_fields
from dinomail.store.scope import Scope

OBJECT_TYPE = "domainselfservice"
DEFAULTS: dict[str, bool] = {"self_service": True, "external_forwarding": True}
NORMALIZERS: dict[str, Normalizer] = {name: v.normalize_bool for name in DEFAULTS}


async def switches_of(conn: AsyncConnection, domain_id: int) -> dict[str, bool]:
    """A domain's switches, whoever asks (the caller has checked the scope)."""
    row = (
        await conn.execute(
            sa.select(domainselfservice).where(domainselfservice.c.domain_id == domain_id)
        )
    ).mappings().first()
    if row is None:
        return dict(DEFAULTS)
    return {name: bool(row[name]) for name in DEFAULTS}


async def get(conn: AsyncConnection, scope: Scope, domain_id: int) -> Row:
    """A domain's switches, for an admin who may see the domain (else NotFound)."""
    domain = await domains.get(conn, scope, domain_id)
    return {"domain_id": domain_id, "name": domain["name"],
            **await switches_of(conn, domain_id)}


async def put(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, data: Mapping[str, Any]
) -> Row:
    """Change some of a domain's switches (fields left out keep their value). A domain admin
    may: turning self-service or external forwarding off is theirs to decide."""
    old = await get(conn, scope, domain_id)
    values = clean_fields(data, NORMALIZERS)
    merged = {name: values.get(name, old[name]) for name in DEFAULTS}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(domainselfservice).values(domain_id=domain_id, updated_at=now(),
                                                  **merged)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["domain_id"],
        set_={name: statement.excluded[name] for name in (*DEFAULTS, "updated_at")},
    ))
    before, after = changed_values(old, values)
    if after:
        await audit.record(conn, actor, "update", OBJECT_TYPE, domain_id, old["name"],
                           old=before, new=after)
    return await get(conn, scope, domain_id)


def _may_log_in() -> sa.Select:
    return (
        sa.select(virtualuser.c.id, virtualuser.c.email, virtualuser.c.domain_id,
                  virtualuser.c.password)
        .select_from(virtualuser.join(virtualdomain,
                                      virtualdomain.c.id == virtualuser.c.domain_id))
        .where(virtualuser.c.active.is_(True), virtualdomain.c.active.is_(True))
    )


async def _if_enabled(conn: AsyncConnection, query: sa.Select) -> Row | None:
    row = (await conn.execute(query)).mappings().first()
    if row is None or not (await switches_of(conn, row["domain_id"]))["self_service"]:
        return None
    return dict(row)


async def login_candidate(
    conn: AsyncConnection, email: str, *, enabled: bool = True
) -> Row | None:
    """The mailbox `email` may log in to the self-service pages with: id, email, domain_id,
    password (the stored hash). None when it does not exist, is inactive, its domain is
    inactive, or self-service is off for it: one answer, so a login says nothing of which."""
    if not enabled:
        return None
    try:
        address = v.normalize_email(email)
    except v.ValidationError:
        return None
    return await _if_enabled(conn, _may_log_in().where(virtualuser.c.email == address))


async def owner_record(
    conn: AsyncConnection, mailbox_id: int, *, enabled: bool = True
) -> Row | None:
    """As `login_candidate`, by id: checked again on every request of a logged-in owner."""
    if not enabled:
        return None
    return await _if_enabled(conn, _may_log_in().where(virtualuser.c.id == mailbox_id))


async def replace_hash(
    conn: AsyncConnection, mailbox_id: int, old_hash: str, new_hash: str
) -> bool:
    """Store a mailbox's password hashed again in the current scheme, unless the password
    changed meanwhile (then the newer one stays). Not audited: the password is the same."""
    result = await conn.execute(
        virtualuser.update()
        .where(virtualuser.c.id == mailbox_id, virtualuser.c.password == old_hash)
        .values(password=new_hash)
    )
    return bool(result.rowcount)
