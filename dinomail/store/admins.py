"""Admin accounts: superadmins, and domain admins limited to a set of domains."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import djangopasswords
from dinomail import validation as v
from dinomail.passwords import PasswordSchemeError, verify_password
from dinomail.schema import admin, admin_domain, virtualdomain
from dinomail.store import audit
from dinomail.store.common import Page, Row, fetch_one, now, paginate
from dinomail.store.errors import Conflict, NotFound
from dinomail.store.scope import Scope

OBJECT_TYPE = "admin"
MIN_PASSWORD_LENGTH = 8

# Argon2id with argon2-cffi's defaults (RFC 9106's second recommended option).
_hasher = PasswordHasher()
# Compared against when the account does not exist, so a wrong login name costs the same time.
_DUMMY_HASH = _hasher.hash("not a password")

_PUBLIC = (
    admin.c.id, admin.c.username, admin.c.email, admin.c.is_superadmin, admin.c.is_active,
    admin.c.created_at, admin.c.last_login,
)


def check_new_password(password: object, field: str = "password") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise v.ValidationError(
            field, f"must be at least {MIN_PASSWORD_LENGTH} characters",
            code="password_too_short", params={"limit": MIN_PASSWORD_LENGTH},
        )
    if len(password) > 1024:
        raise v.ValidationError(
            field, "is at most 1024 characters", code="text_too_long", params={"limit": 1024}
        )
    return password


async def _hash(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _is_foreign_hash(stored: str) -> bool:
    """A hash DinoMail did not make: Django's (an adopted original database) or a Dovecot-scheme
    one (admins imported from PostfixAdmin). Kept until the admin's first login."""
    return stored.startswith("{") or djangopasswords.is_django_hash(stored)


def _verify(stored: str, password: str) -> bool:
    # `{SCHEME}` first: Django's unsalted MD5 is any 32 characters without a `$`, which a
    # Dovecot `{PLAIN}` hash can be too.
    if stored.startswith("{"):
        try:
            return verify_password(password, stored)
        except PasswordSchemeError:
            return False
    if djangopasswords.is_django_hash(stored):
        return djangopasswords.verify(stored, password)
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _needs_rehash(stored: str) -> bool:
    """A foreign hash is replaced at the first login. (Argon2 hashes with older parameters are
    left alone: a new hash ends the admin's other page sessions.)"""
    return _is_foreign_hash(stored)


async def domain_ids(conn: AsyncConnection, admin_id: int) -> frozenset[int]:
    rows = await conn.scalars(
        sa.select(admin_domain.c.domain_id).where(admin_domain.c.admin_id == admin_id)
    )
    return frozenset(rows)


async def scope_of(conn: AsyncConnection, account: Row) -> Scope:
    if account["is_superadmin"]:
        return Scope()
    return Scope(await domain_ids(conn, account["id"]))


async def get(conn: AsyncConnection, admin_id: int) -> Row:
    row = await fetch_one(conn, sa.select(*_PUBLIC).where(admin.c.id == admin_id), "admin")
    row["domain_ids"] = sorted(await domain_ids(conn, admin_id))
    return row


async def password_hash(conn: AsyncConnection, admin_id: int) -> str:
    """The admin's stored password hash; the pages bind a login session to it, so that a new
    password ends every session opened with the old one."""
    stored = await conn.scalar(sa.select(admin.c.password).where(admin.c.id == admin_id))
    if stored is None:
        raise NotFound("admin not found", code="admin_not_found")
    return str(stored)


async def session_generation(conn: AsyncConnection, admin_id: int) -> int:
    """The generation a page session must carry to be valid; see `end_sessions`."""
    generation = await conn.scalar(
        sa.select(admin.c.session_generation).where(admin.c.id == admin_id)
    )
    if generation is None:
        raise NotFound("admin not found", code="admin_not_found")
    return int(generation)


async def end_sessions(conn: AsyncConnection, admin_id: int) -> None:
    """End every page session of the admin, server-side: a cookie copied before keeps nothing.
    Not audited on its own: logging out is not a change, and the changes that call it are."""
    await conn.execute(
        admin.update().where(admin.c.id == admin_id)
        .values(session_generation=admin.c.session_generation + 1)
    )


async def any_exists(conn: AsyncConnection) -> bool:
    return await conn.scalar(sa.select(admin.c.id).limit(1)) is not None


async def list_page(conn: AsyncConnection, *, limit: int, offset: int = 0) -> Page:
    return await paginate(
        conn, sa.select(*_PUBLIC), order_by=[admin.c.id], limit=limit, offset=offset
    )


async def _set_domains(conn: AsyncConnection, admin_id: int, ids: Iterable[int]) -> None:
    wanted = sorted(set(ids))
    if wanted:
        found = set(
            await conn.scalars(sa.select(virtualdomain.c.id).where(virtualdomain.c.id.in_(wanted)))
        )
        missing = [domain_id for domain_id in wanted if domain_id not in found]
        if missing:
            raise NotFound(
                f"domain {missing[0]} not found", field="domains", code="domain_id_not_found",
                params={"id": missing[0]},
            )
    await conn.execute(admin_domain.delete().where(admin_domain.c.admin_id == admin_id))
    if wanted:
        await conn.execute(
            admin_domain.insert(), [{"admin_id": admin_id, "domain_id": d} for d in wanted]
        )


async def create(
    conn: AsyncConnection,
    actor: str,
    *,
    username: str,
    password: str,
    email: str = "",
    is_superadmin: bool = False,
    domain_ids: Iterable[int] = (),
) -> Row:
    username = v.normalize_username(username)
    check_new_password(password)
    email = v.normalize_email(email) if email else ""
    if await conn.scalar(sa.select(admin.c.id).where(admin.c.username == username)):
        raise Conflict(
            f"the admin {username} already exists", field="username", code="admin_exists",
            params={"username": username},
        )
    admin_id = (
        await conn.execute(
            admin.insert()
            .values(
                username=username,
                email=email,
                password=await _hash(password),
                is_superadmin=bool(is_superadmin),
            )
            .returning(admin.c.id)
        )
    ).scalar_one()
    await _set_domains(conn, admin_id, domain_ids)
    row = await get(conn, admin_id)
    await audit.record(conn, actor, "create", OBJECT_TYPE, admin_id, username, new=row)
    return row


async def update(
    conn: AsyncConnection, actor: str, admin_id: int, changes: dict[str, Any]
) -> Row:
    old = await get(conn, admin_id)
    values: dict[str, Any] = {}
    for field in ("is_superadmin", "is_active"):
        if field in changes:
            values[field] = v.normalize_bool(changes[field], field)
    if "email" in changes:
        values["email"] = v.normalize_email(changes["email"]) if changes["email"] else ""
    if "password" in changes:
        values["password"] = await _hash(check_new_password(changes["password"]))
    if values:
        await conn.execute(admin.update().where(admin.c.id == admin_id).values(**values))
    if "password" in values or values.get("is_active", old["is_active"]) != old["is_active"]:
        # A new password or a deactivation ends the sessions opened before it.
        await end_sessions(conn, admin_id)
    if "domain_ids" in changes:
        await _set_domains(conn, admin_id, changes["domain_ids"])
    new = await get(conn, admin_id)
    await audit.record(conn, actor, "update", OBJECT_TYPE, admin_id, old["username"],
                       old=old, new=new)
    return new


async def delete(conn: AsyncConnection, actor: str, admin_id: int) -> Row:
    old = await get(conn, admin_id)
    await conn.execute(admin.delete().where(admin.c.id == admin_id))
    await audit.record(conn, actor, "delete", OBJECT_TYPE, admin_id, old["username"], old=old)
    return old


async def authenticate(conn: AsyncConnection, username: str, password: str) -> Row | None:
    """The active admin with these credentials, or None; as slow for unknown names.

    A hash of an older scheme (Django's, from an adopted database) is replaced by Argon2 now
    that the password is known; the pages read the stored hash after this call, so the login
    session they open is bound to the new hash.
    """
    row = (
        await conn.execute(
            sa.select(admin.c.id, admin.c.password, admin.c.is_active).where(
                admin.c.username == username
            )
        )
    ).first()
    stored = row.password if row else _DUMMY_HASH
    valid = await asyncio.to_thread(_verify, stored, password)
    if not (row and valid and row.is_active):
        return None
    values: dict[str, Any] = {"last_login": now()}
    if _needs_rehash(stored):
        values["password"] = await _hash(password)
    await conn.execute(admin.update().where(admin.c.id == row.id).values(**values))
    return await get(conn, row.id)
