"""Admin accounts: superadmins, and domain admins limited to a set of domains."""

from __future__ import annotations

import asyncio
import secrets
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
from dinomail.store.common import (
    Page,
    Row,
    Window,
    escape_like,
    fetch_all,
    fetch_one,
    fetch_window,
    insert_id,
    now,
    paginate,
)
from dinomail.store.errors import Conflict, Forbidden, NotFound
from dinomail.store.scope import Scope

OBJECT_TYPE = "admin"
MIN_PASSWORD_LENGTH = 8
# A password made for a reset: 16 URL-safe characters, 96 bits.
GENERATED_PASSWORD_BYTES = 12

# Argon2id with argon2-cffi's defaults (RFC 9106's second recommended option).
_hasher = PasswordHasher()
# Compared against when the account does not exist, so a wrong login name costs the same time.
_DUMMY_HASH = _hasher.hash("not a password")

_PUBLIC = (
    admin.c.id, admin.c.username, admin.c.email, admin.c.is_superadmin, admin.c.is_active,
    admin.c.created_at, admin.c.last_login, admin.c.read_only,
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


async def change_own_password(
    conn: AsyncConnection, actor: str, admin_id: int, *, current: str, new: str
) -> None:
    """An admin's new password, given with their current one. Every page session of theirs
    ends (the caller may open a new one for the session it answers)."""
    stored = await password_hash(conn, admin_id)
    if not current:
        raise v.ValidationError("current_password", "is required", code="field_required")
    if not await asyncio.to_thread(_verify, stored, current):
        raise Forbidden("the current password is wrong", field="current_password",
                        code="wrong_current_password")
    check_new_password(new, "new_password")
    await conn.execute(admin.update().where(admin.c.id == admin_id)
                       .values(password=await _hash(new)))
    await end_sessions(conn, admin_id)
    username = await conn.scalar(sa.select(admin.c.username).where(admin.c.id == admin_id))
    await audit.record(conn, actor, "set_password", OBJECT_TYPE, admin_id, str(username))


async def language(conn: AsyncConnection, admin_id: int) -> str | None:
    """The language the admin chose on their account page; None: the browser's."""
    chosen = await conn.scalar(sa.select(admin.c.language).where(admin.c.id == admin_id))
    return str(chosen) if chosen else None


async def set_language(
    conn: AsyncConnection, actor: str, admin_id: int, chosen: str | None, choices: Iterable[str]
) -> None:
    if chosen is not None and chosen not in set(choices):
        raise v.ValidationError("language", "is not a language of DinoMail",
                                code="language_unknown")
    old = await language(conn, admin_id)
    await conn.execute(admin.update().where(admin.c.id == admin_id).values(language=chosen))
    username = await conn.scalar(sa.select(admin.c.username).where(admin.c.id == admin_id))
    await audit.record(conn, actor, "update", OBJECT_TYPE, admin_id, str(username),
                       old={"language": old}, new={"language": chosen})


async def get_by_username(conn: AsyncConnection, username: str) -> Row:
    query = sa.select(*_PUBLIC).where(admin.c.username == username)
    return await fetch_one(conn, query, "admin")


async def any_exists(conn: AsyncConnection) -> bool:
    return await conn.scalar(sa.select(admin.c.id).limit(1)) is not None


async def list_page(conn: AsyncConnection, *, limit: int, offset: int = 0) -> Page:
    return await paginate(
        conn, sa.select(*_PUBLIC), order_by=[admin.c.id], limit=limit, offset=offset
    )


async def list_window(
    conn: AsyncConnection,
    *,
    q: str | None = None,
    only_id: int | None = None,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
) -> Window:
    """Admins by username, with their domain ids; `only_id` keeps one (a domain admin's own
    list), `q` those whose username or email contains it."""
    where: list[sa.ColumnElement[bool]] = []
    if only_id is not None:
        where.append(admin.c.id == only_id)
    if q:
        pattern = f"%{escape_like(q.lower())}%"
        where.append(sa.or_(admin.c.username.like(pattern, escape="\\"),
                            sa.func.lower(admin.c.email).like(pattern, escape="\\")))
    window = await fetch_window(
        conn, id_column=admin.c.id, where=where, sort=admin.c.username, descending=False,
        limit=limit, offset=offset, after=after,
        fetch=lambda ids: sa.select(*_PUBLIC).where(admin.c.id.in_(ids)),
    )
    ids = [row["id"] for row in window.rows]
    domains: dict[int, list[int]] = {admin_id: [] for admin_id in ids}
    if ids:
        query = sa.select(admin_domain.c.admin_id, admin_domain.c.domain_id).where(
            admin_domain.c.admin_id.in_(ids)).order_by(admin_domain.c.domain_id)
        for row in await fetch_all(conn, query):
            domains[row["admin_id"]].append(row["domain_id"])
    for row in window.rows:
        row["domain_ids"] = domains[row["id"]]
    return window


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
    read_only: bool = False,
) -> Row:
    username = v.normalize_username(username)
    check_new_password(password)
    email = v.normalize_email(email) if email else ""
    if await conn.scalar(sa.select(admin.c.id).where(admin.c.username == username)):
        raise Conflict(
            f"the admin {username} already exists", field="username", code="admin_exists",
            params={"username": username},
        )
    admin_id = await insert_id(
        conn, admin, username=username, email=email, password=await _hash(password),
        is_superadmin=bool(is_superadmin), read_only=bool(read_only),
    )
    await _set_domains(conn, admin_id, domain_ids)
    row = await get(conn, admin_id)
    await audit.record(conn, actor, "create", OBJECT_TYPE, admin_id, username, new=row)
    return row


def _keep_own_rights(acting_admin_id: int | None, admin_id: int, values: dict[str, Any]) -> None:
    # A superadmin locking themself out would leave the server without anyone to undo it.
    if acting_admin_id != admin_id:
        return
    if values.get("is_superadmin") is False:
        raise Forbidden("you cannot remove your own superadmin rights", field="is_superadmin",
                        code="own_superadmin_rights")
    if values.get("is_active") is False:
        raise Forbidden("you cannot deactivate your own account", field="is_active",
                        code="own_account_deactivation")
    if values.get("read_only") is True:
        raise Forbidden("you cannot make your own account read-only", field="read_only",
                        code="own_account_read_only")


async def update(
    conn: AsyncConnection, actor: str, admin_id: int, changes: dict[str, Any], *,
    acting_admin_id: int | None = None,
) -> Row:
    """Change an admin. `acting_admin_id` is the admin making the change (None: the CLI), who
    may not take away their own rights; the username never changes."""
    old = await get(conn, admin_id)
    if "username" in changes and v.normalize_username(changes["username"]) != old["username"]:
        raise v.ValidationError("username", "cannot be changed; create another admin instead",
                                code="username_unchangeable")
    values: dict[str, Any] = {}
    for field in ("is_superadmin", "is_active", "read_only"):
        if field in changes:
            values[field] = v.normalize_bool(changes[field], field)
    if "email" in changes:
        values["email"] = v.normalize_email(changes["email"]) if changes["email"] else ""
    if "password" in changes:
        values["password"] = await _hash(check_new_password(changes["password"]))
    _keep_own_rights(acting_admin_id, admin_id, values)
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


async def reset_password(
    conn: AsyncConnection, actor: str, admin_id: int, *, acting_admin_id: int | None = None
) -> tuple[Row, str]:
    """Give the admin a new random password (returned, to be shown once: only its hash is
    kept) and end their sessions. An admin changes their own password on their account page,
    with the current one."""
    if acting_admin_id == admin_id:
        raise Forbidden("change your own password on your account page, with the current one",
                        code="own_password_reset")
    old = await get(conn, admin_id)
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    await conn.execute(
        admin.update().where(admin.c.id == admin_id).values(password=await _hash(password))
    )
    await end_sessions(conn, admin_id)
    await audit.record(conn, actor, "reset_password", OBJECT_TYPE, admin_id, old["username"])
    return old, password


async def delete(
    conn: AsyncConnection, actor: str, admin_id: int, *, acting_admin_id: int | None = None
) -> Row:
    if acting_admin_id == admin_id:
        raise Forbidden("you cannot delete your own account", code="own_account_deletion")
    old = await get(conn, admin_id)
    await audit.delete_row(conn, actor, admin, OBJECT_TYPE, admin_id, old["username"], old)
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
