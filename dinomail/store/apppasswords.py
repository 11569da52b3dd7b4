"""App passwords (`dinomail_apppassword`): named passwords of a mailbox, each opening only some
protocols, shown once when made, stored hashed, revocable.

Dovecot checks them through the lookup daemon (the Lua passdb asks it to verify a login's
password: `lookupd.dovecot.verify`), against the hashes in its snapshot (loaded and followed
through the change log by `dinomail.store.changes`); it records their last use here.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.passwords import DEFAULT_SCHEME, hash_password
from dinomail.schema import apppassword, virtualuser
from dinomail.store import audit, mailboxes
from dinomail.store.common import Row, insert_id
from dinomail.store.errors import Conflict, LimitExceeded, NotFound
from dinomail.store.scope import Scope

OBJECT_TYPE = "app_password"
# The protocols an app password may open, as Dovecot names its services (`%{service}`), but
# smtp for Postfix's SASL, which Dovecot sees as the service "smtp" too.
PROTOCOLS = ("imap", "pop3", "sieve", "smtp")
MAX_PER_MAILBOX = 20
MAX_NAME_LENGTH = 100
# 20 characters of 31 (no 0/o, 1/l/i to misread): about 99 bits, in groups of four to type.
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_GROUPS, _GROUP_LENGTH = 5, 4

_LISTED = (
    apppassword.c.id,
    apppassword.c.name,
    apppassword.c.protocols,
    apppassword.c.created,
    apppassword.c.last_used,
)


def new_secret() -> str:
    """A fresh app password, e.g. `k7mq-2vxa-pt9d-wr3c-nh4e`."""
    return "-".join(
        "".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LENGTH)) for _ in range(_GROUPS)
    )


async def hash_secret(secret: str, scheme: str = DEFAULT_SCHEME) -> str:
    """The `{SCHEME}hash` of an app password, made in a worker thread: call it before the
    write transaction, hashing is slow on purpose."""
    return await asyncio.to_thread(hash_password, secret, scheme)


def normalize_protocols(value: object, field: str = "protocols") -> list[str]:
    """A non-empty set of PROTOCOLS, sorted; a string is refused (it would be its letters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Collection):
        raise v.ValidationError(field, f"must be a list of protocols among {', '.join(PROTOCOLS)}",
                                code="protocols_invalid")
    chosen = set()
    for item in value:
        name = item.strip().lower() if isinstance(item, str) else item
        if name not in PROTOCOLS:
            raise v.ValidationError(
                field, f"must be a list of protocols among {', '.join(PROTOCOLS)}",
                code="protocols_invalid",
            )
        chosen.add(name)
    if not chosen:
        raise v.ValidationError(field, "must name at least one protocol",
                                code="protocols_required")
    return sorted(chosen)


def _name(value: object) -> str:
    name = v.normalize_text(value, "name", MAX_NAME_LENGTH)
    if not name:
        raise v.ValidationError("name", "is required", code="field_required")
    return name


def _shown(row: Mapping[Any, Any]) -> Row:
    return {
        "id": row["id"],
        "name": row["name"],
        "protocols": row["protocols"].split(","),
        "created": row["created"],
        "last_used": row["last_used"],
    }


async def list_for(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> list[Row]:
    """The mailbox's app passwords, oldest first, without their hashes.

    NotFound when the mailbox does not exist or is outside `scope` (one answer for both).
    """
    await mailboxes.get(conn, scope, mailbox_id)
    query = (
        sa.select(*_LISTED).where(apppassword.c.user_id == mailbox_id).order_by(apppassword.c.id)
    )
    return [_shown(row) for row in (await conn.execute(query)).mappings()]


async def create(
    conn: AsyncConnection,
    actor: str,
    scope: Scope,
    mailbox_id: int,
    *,
    name: str,
    protocols: Collection[str],
    password_hash: str,
) -> Row:
    """Store a new app password (hashed by `hash_secret`), limited to `protocols`."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    clean_name = _name(name)
    chosen = normalize_protocols(protocols)
    if not isinstance(password_hash, str) or not password_hash.startswith("{"):
        raise ValueError("password_hash must be a {SCHEME}hash from hash_secret")
    # The mailbox row is locked so that two concurrent creations cannot both pass the count.
    await conn.execute(
        sa.select(virtualuser.c.id).where(virtualuser.c.id == mailbox_id).with_for_update()
    )
    names = set(
        (await conn.execute(
            sa.select(apppassword.c.name).where(apppassword.c.user_id == mailbox_id)
        )).scalars()
    )
    if clean_name in names:
        raise Conflict(
            f"the app password {clean_name} already exists", field="name",
            code="app_password_exists", params={"name": clean_name},
        )
    if len(names) >= MAX_PER_MAILBOX:
        raise LimitExceeded(
            f"a mailbox has at most {MAX_PER_MAILBOX} app passwords", field="name",
            code="app_password_limit", params={"limit": MAX_PER_MAILBOX},
        )
    new_id = await insert_id(conn, apppassword, user_id=mailbox_id, name=clean_name,
                             protocols=",".join(chosen), password=password_hash)
    await audit.record(
        conn, actor, "create", OBJECT_TYPE, new_id, f"{mailbox['email']}: {clean_name}",
        new={"mailbox": mailbox["email"], "name": clean_name, "protocols": chosen},
    )
    query = sa.select(*_LISTED).where(apppassword.c.id == new_id)
    return _shown((await conn.execute(query)).mappings().one())


async def revoke(
    conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int, app_password_id: int
) -> None:
    """Delete an app password of the mailbox; another mailbox's is "not found", as a missing one."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    query = sa.select(*_LISTED).where(
        apppassword.c.id == app_password_id, apppassword.c.user_id == mailbox_id
    )
    found = (await conn.execute(query)).mappings().first()
    if found is None:
        # No field: the id is the URL's, not the input's (a 404, not a 400).
        raise NotFound(
            "app password not found",
            code="app_password_not_found", params={"id": app_password_id},
        )
    await conn.execute(apppassword.delete().where(apppassword.c.id == app_password_id))
    old = _shown(found)
    await audit.record(
        conn, actor, "revoke", OBJECT_TYPE, app_password_id, f"{mailbox['email']}: {old['name']}",
        old={"mailbox": mailbox["email"], "name": old["name"], "protocols": old["protocols"]},
    )


# --- for the lookup daemon ------------------------------------------------------------------------


async def record_use(conn: AsyncConnection, used: Mapping[int, datetime]) -> None:
    """Set the last use of app passwords (id → when), one statement per password; a password
    revoked since is simply not there any more."""
    for app_password_id, when in used.items():
        await conn.execute(
            apppassword.update()
            .where(apppassword.c.id == app_password_id)
            .values(last_used=when)
        )
