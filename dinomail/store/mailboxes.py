"""Mailboxes (`core_virtualuser`): address, password hash, quota, active flag, usage."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.passwords import hash_password
from dinomail.passwords.common import is_common
from dinomail.passwords.unverifiable import is_saltless_ssha
from dinomail.schema import quotausage, virtualalias, virtualdomain, virtualuser
from dinomail.store import audit, limits
from dinomail.store.common import (
    ListedTable,
    Row,
    fetch_one,
    lister,
)
from dinomail.store.errors import Conflict
from dinomail.store.fields import Normalizer, clean_fields
from dinomail.store.scope import Scope

if TYPE_CHECKING:
    from dinomail.store import Store

OBJECT_TYPE = "mailbox"
MAX_PASSWORD_LENGTH = 1024

NORMALIZERS: dict[str, Normalizer] = {
    "domain_id": lambda value, field: _normalize_id(value, "domain"),
    "email": lambda value, field: v.normalize_email(value, field),
    "quota": lambda value, field: None if value is None else v.normalize_quota(value, field),
    "active": v.normalize_bool,
}
ORDERABLE = ("id", "email", "quota", "created_at")

# What lists show: the mailbox, its domain's name and its usage; never the password hash.
_COLUMNS = (
    virtualuser.c.id,
    virtualuser.c.domain_id,
    virtualuser.c.email,
    virtualuser.c.quota,
    virtualuser.c.active,
    virtualuser.c.created_at,
    virtualdomain.c.name.label("domain_name"),
    sa.func.coalesce(quotausage.c.bytes, 0).label("quota_used_bytes"),
    sa.func.coalesce(quotausage.c.messages, 0).label("quota_used_messages"),
    quotausage.c.updated_at.label("quota_updated_at"),
)
_FROM = virtualuser.join(virtualdomain, virtualdomain.c.id == virtualuser.c.domain_id).outerjoin(
    quotausage, quotausage.c.user_id == virtualuser.c.id
)


def _normalize_id(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise v.ValidationError(field, "must be the id of an existing object", code="not_an_id")
    return value


def _select(scope: Scope) -> sa.Select:
    return sa.select(*_COLUMNS).select_from(_FROM).where(scope.filter(virtualuser.c.domain_id))


# The shortest new mailbox password, unless MAILBOX_PASSWORD_MIN_LENGTH says otherwise.
DEFAULT_MIN_PASSWORD_LENGTH = 10


def check_new_password(
    plain: object, *, email: str, min_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
    field: str = "password",
) -> str:
    """The mailbox password policy (in the spirit of NIST SP 800-63B 5.1.1.2): at least
    `min_length` characters, not the mailbox's address or the part before its @, not one of the
    commonest passwords. No rule on the kinds of characters, which only makes passwords harder
    to remember. Hashes given as they are (import, adoption) are not judged: only new plain
    passwords come here.
    """
    if not isinstance(plain, str) or not plain:
        raise v.ValidationError(field, "a new password is required", code="password_required")
    if len(plain) > MAX_PASSWORD_LENGTH:
        raise v.ValidationError(
            field, f"is at most {MAX_PASSWORD_LENGTH} characters",
            code="text_too_long", params={"limit": MAX_PASSWORD_LENGTH},
        )
    if any(char in plain for char in "\0\r\n\t"):
        # Dovecot's protocols cannot carry these; a mailbox with one could never log in.
        raise v.ValidationError(
            field, "must not contain tabs, line breaks or NUL characters",
            code="password_bad_characters",
        )
    if len(plain) < min_length:
        raise v.ValidationError(
            field, f"must be at least {min_length} characters",
            code="password_too_short", params={"limit": min_length},
        )
    lowered = plain.lower()
    email = email.strip().lower()
    if email and lowered in (email, email.rpartition("@")[0]):
        raise v.ValidationError(
            field, "must not be the mailbox's address or its name", code="password_is_address"
        )
    if is_common(plain):
        raise v.ValidationError(
            field, "is one of the commonest passwords; choose another", code="password_common"
        )
    return plain


async def hash_new_password(
    plain: object, scheme: str, *, email: str, field: str = "password",
    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
) -> str:
    """Check a new password against the policy and hash it in a worker thread (hashing is slow
    on purpose). Every way of setting a mailbox's password from a plain one comes here.

    `email` is the mailbox's login name: DIGEST-MD5 hashes it in with the password.
    """
    check_new_password(plain, email=email, min_length=min_length, field=field)
    assert isinstance(plain, str)
    return await asyncio.to_thread(hash_password, plain, scheme, user=email)


async def unusable_password(scheme: str, *, email: str) -> str:
    """A hash of a random secret nobody knows, for a mailbox created without a password."""
    return await asyncio.to_thread(
        hash_password, secrets.token_urlsafe(24), scheme, user=email
    )


async def new_mailbox_password(
    plain: object | None, scheme: str, *, email: str, min_length: int
) -> str:
    """The hash a new mailbox is created with: of the password given, checked against the
    policy, else (as the original) of a random secret nobody knows. Called before the write
    opens: hashing is slow on purpose, and the write locks the domain's row."""
    # The login name, for schemes that hash it in; a bad address is reported by `create`.
    email = email.strip().lower()
    if plain is None:
        return await unusable_password(scheme, email=email)
    return await hash_new_password(plain, scheme, email=email, min_length=min_length)


async def change_password(
    store: Store, actor: str, scope: Scope, mailbox_id: int, plain: object, *,
    scheme: str, min_length: int,
) -> Row:
    """Set a mailbox's password from a plain one: the mailbox must be the caller's, the
    password must pass the policy; hashed between the read and the write."""
    async with store.read() as conn:
        mailbox = await get(conn, scope, mailbox_id)
    password_hash = await hash_new_password(
        plain, scheme, email=mailbox["email"], min_length=min_length
    )
    async with store.write() as conn:
        return await set_password(conn, actor, scope, mailbox_id, password_hash)


async def get(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> Row:
    query = _select(scope).where(virtualuser.c.id == mailbox_id)
    return await fetch_one(conn, query, "mailbox")


async def get_by_email(conn: AsyncConnection, scope: Scope, email: str) -> Row:
    query = _select(scope).where(virtualuser.c.email == v.normalize_email(email))
    return await fetch_one(conn, query, "mailbox")



async def _check_email_free(conn: AsyncConnection, email: str, mailbox_id: int | None) -> None:
    taken = await conn.scalar(
        sa.select(virtualuser.c.id).where(
            virtualuser.c.email == email, virtualuser.c.id != (mailbox_id or 0)
        )
    )
    if taken is not None:
        raise Conflict(
            f"the mailbox {email} already exists", field="email", code="mailbox_exists",
            params={"email": email},
        )


async def create(
    conn: AsyncConnection,
    actor: str,
    scope: Scope,
    data: Mapping[str, Any],
    *,
    password_hash: str,
) -> Row:
    values = clean_fields(data, NORMALIZERS, required=("email",))
    domain = await limits.lock_domain_of(conn, scope, values.get("domain_id"), values["email"])
    values["domain_id"] = domain["id"]
    v.check_address_in_domain(values["email"], domain["name"], "email")
    await _check_email_free(conn, values["email"], None)
    await limits.check_mailbox_count(conn, domain)
    if values.get("quota") is None:
        values["quota"] = domain["default_quota"]
    await limits.check_quota(conn, domain, values["quota"])
    mailbox_id = await audit.insert_row(
        conn, actor, virtualuser, OBJECT_TYPE, values["email"], values, domain_id=domain["id"],
        hidden={"password": password_hash},
    )
    return await get(conn, scope, mailbox_id)


async def update(
    conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int, data: Mapping[str, Any]
) -> Row:
    old = await get(conn, scope, mailbox_id)
    values = clean_fields(data, NORMALIZERS)
    merged = {"domain_id": old["domain_id"], "email": old["email"], **values}
    domain = await limits.lock_domain_of(conn, scope, merged["domain_id"], merged["email"])
    v.check_address_in_domain(merged["email"], domain["name"], "email")
    if merged["email"] != old["email"]:
        await _check_email_free(conn, merged["email"], mailbox_id)
    if merged["domain_id"] != old["domain_id"]:
        await limits.check_mailbox_count(conn, domain)
    if "quota" in values:
        if values["quota"] is None:
            values["quota"] = domain["default_quota"]
        await limits.check_quota(conn, domain, values["quota"], replacing_mailbox=mailbox_id)
    after = await audit.update_row(
        conn, actor, virtualuser, OBJECT_TYPE, mailbox_id, old["email"], old, values,
        domain_id=domain["id"],
    )
    if "email" in after:
        await _move_forwarding(conn, old["email"], merged["email"], domain["id"])
    return await get(conn, scope, mailbox_id)


async def _move_forwarding(
    conn: AsyncConnection, old_email: str, new_email: str, domain_id: int
) -> None:
    """A renamed mailbox keeps its forwarding (alias rows on its address, `store.forwarding`),
    its kept copy included; left on the old address they would take that address's mail."""
    await conn.execute(
        virtualalias.update().where(virtualalias.c.source == old_email)
        .values(source=new_email, domain_id=domain_id)
    )
    await conn.execute(
        virtualalias.update()
        .where(virtualalias.c.source == new_email, virtualalias.c.destination == old_email)
        .values(destination=new_email)
    )


async def set_password(
    conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int, password_hash: str
) -> Row:
    old = await get(conn, scope, mailbox_id)
    await conn.execute(
        virtualuser.update().where(virtualuser.c.id == mailbox_id).values(password=password_hash)
    )
    await audit.record(
        conn, actor, "set_password", OBJECT_TYPE, mailbox_id, old["email"],
        domain_id=old["domain_id"],
    )
    return old


async def password_hash(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> str:
    await get(conn, scope, mailbox_id)
    return str(
        await conn.scalar(sa.select(virtualuser.c.password).where(virtualuser.c.id == mailbox_id))
    )


async def delete(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int) -> Row:
    old = await get(conn, scope, mailbox_id)
    await audit.delete_row(conn, actor, virtualuser, OBJECT_TYPE, mailbox_id, old["email"], old,
                           domain_id=old["domain_id"])
    # Its forwarding (alias rows on its address) goes with it, or mail would go on leaving.
    await conn.execute(virtualalias.delete().where(virtualalias.c.source == old["email"]))
    return old


async def count(conn: AsyncConnection, scope: Scope) -> int:
    query = sa.select(sa.func.count()).select_from(virtualuser)
    return int(await conn.scalar(query.where(scope.filter(virtualuser.c.domain_id))) or 0)


async def record_usage(
    conn: AsyncConnection, usage: Mapping[str, tuple[int | None, int | None]]
) -> int:
    """Store quota usage reported by Dovecot: email → (bytes, messages); None keeps the value.

    Returns how many mailboxes were known. Unknown addresses are skipped: the mailbox may have
    been deleted while Dovecot still held its mail.
    """
    if not usage:
        return 0
    rows = await conn.execute(
        sa.select(virtualuser.c.id, virtualuser.c.email).where(
            virtualuser.c.email.in_(sorted(usage))
        )
    )
    ids = {row.email: row.id for row in rows}
    if not ids:
        return 0
    existing = await conn.execute(
        sa.select(quotausage).where(quotausage.c.user_id.in_(sorted(ids.values())))
    )
    current = {row.user_id: (row.bytes, row.messages) for row in existing}
    for email, user_id in ids.items():
        used_bytes, used_messages = usage[email]
        old_bytes, old_messages = current.get(user_id, (0, 0))
        values = {
            "bytes": old_bytes if used_bytes is None else max(0, used_bytes),
            "messages": old_messages if used_messages is None else max(0, used_messages),
            "updated_at": sa.func.now(),
        }
        if user_id in current:
            await conn.execute(
                quotausage.update().where(quotausage.c.user_id == user_id).values(**values)
            )
        else:
            await conn.execute(quotausage.insert().values(user_id=user_id, **values))
    return len(ids)


# Sort keys of `list_window`; a NULL quota means unlimited, like 0, and sorts with it.
_SORT_KEYS: dict[str, sa.ColumnElement[Any]] = {
    "id": virtualuser.c.id,
    "email": virtualuser.c.email,
    "quota": sa.func.coalesce(virtualuser.c.quota, 0),
    "created_at": virtualuser.c.created_at,
}


LISTED = ListedTable(
    id_column=virtualuser.c.id, domain_column=virtualuser.c.domain_id,
    sort_keys=_SORT_KEYS, searched=(virtualuser.c.email,), rows=_select,
)


# A page of mailboxes, fast on a million of them.
list_window = lister(LISTED)


async def unverifiable_passwords(conn: AsyncConnection) -> list[Row]:
    """Mailboxes whose stored hash no password can match (the original's saltless {SSHA}):
    they cannot log in until their password is reset."""
    query = (
        sa.select(virtualuser.c.id, virtualuser.c.email, virtualuser.c.password)
        .where(virtualuser.c.password.like("{SSHA}%"))
        .order_by(virtualuser.c.id)
    )
    return [
        {"id": row.id, "email": row.email}
        for row in await conn.execute(query)
        if is_saltless_ssha(row.password)
    ]
