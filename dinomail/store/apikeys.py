"""API keys: several per admin, stored as SHA-256 hashes, shown once, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import admin, apikey
from dinomail.store import audit
from dinomail.store.common import Row, Window, aware, fetch_one, fetch_window, now

OBJECT_TYPE = "api_key"
PREFIX_LENGTH = 8
# Writing last_used_at at every request would turn each read into a write; a minute is precise
# enough to tell which keys are in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_PUBLIC = (
    apikey.c.id, apikey.c.admin_id, apikey.c.name, apikey.c.prefix, apikey.c.read_only,
    apikey.c.created_at, apikey.c.last_used_at, apikey.c.revoked_at,
)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    # 40 hexadecimal characters, the form of the original product's keys, so clients that
    # check the shape keep working; 160 random bits.
    return secrets.token_hex(20)


async def create(
    conn: AsyncConnection, actor: str, admin_id: int, *, name: str = "", read_only: bool = False
) -> tuple[Row, str]:
    """A new key for the admin; returns the row and the secret, which is never shown again."""
    name = v.normalize_text(name, "name", 100)
    secret = new_secret()
    key_id = (
        await conn.execute(
            apikey.insert()
            .values(
                admin_id=admin_id,
                name=name,
                prefix=secret[:PREFIX_LENGTH],
                key_hash=hash_key(secret),
                read_only=bool(read_only),
            )
            .returning(apikey.c.id)
        )
    ).scalar_one()
    row = await get(conn, admin_id, key_id)
    await audit.record(conn, actor, "create", OBJECT_TYPE, key_id, row["prefix"], new=row)
    return row, secret


async def get(conn: AsyncConnection, admin_id: int | None, key_id: int) -> Row:
    """A key by id; `admin_id` None lets a superadmin see any admin's key."""
    query = sa.select(*_PUBLIC).where(apikey.c.id == key_id)
    if admin_id is not None:
        query = query.where(apikey.c.admin_id == admin_id)
    return await fetch_one(conn, query, "API key")



async def revoke(conn: AsyncConnection, actor: str, admin_id: int | None, key_id: int) -> Row:
    row = await get(conn, admin_id, key_id)
    if row["revoked_at"] is None:
        await conn.execute(apikey.update().where(apikey.c.id == key_id).values(revoked_at=now()))
        await audit.record(conn, actor, "revoke", OBJECT_TYPE, key_id, row["prefix"])
    return await get(conn, admin_id, key_id)


async def authenticate(
    conn: AsyncConnection, secret: str, *, username: str | None = None
) -> tuple[Row, Row] | None:
    """The (key, admin) for a secret, if the key is live and its admin active.

    `username`, given by the original `ApiKey username:key` form, must name the key's owner.
    """
    query = (
        sa.select(*_PUBLIC, admin.c.username, admin.c.is_active)
        .select_from(apikey.join(admin, admin.c.id == apikey.c.admin_id))
        .where(apikey.c.key_hash == hash_key(secret), apikey.c.revoked_at.is_(None))
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None or not row["is_active"]:
        return None
    if username is not None and row["username"] != username:
        return None
    moment = now()
    last_used = row["last_used_at"]
    if last_used is None or aware(last_used) < moment - LAST_USED_RESOLUTION:
        await conn.execute(
            apikey.update().where(apikey.c.id == row["id"]).values(last_used_at=moment)
        )
    key = {name: row[name] for name in row if name not in ("username", "is_active")}
    account = dict(
        (await conn.execute(sa.select(admin).where(admin.c.id == row["admin_id"])))
        .mappings()
        .one()
    )
    account.pop("password")
    return key, account


async def list_window(
    conn: AsyncConnection,
    admin_id: int,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
) -> Window:
    """An admin's keys, newest first (live and revoked)."""
    return await fetch_window(
        conn, id_column=apikey.c.id, where=[apikey.c.admin_id == admin_id], sort=apikey.c.id,
        descending=True, limit=limit, offset=offset, after=after,
        fetch=lambda ids: sa.select(*_PUBLIC).where(apikey.c.id.in_(ids)),
    )


async def revoke_least_recently_used(
    conn: AsyncConnection, actor: str, admin_id: int, *, name: str, keep: int
) -> list[Row]:
    """Revoke the admin's live keys called `name` beyond the `keep` most recently used.

    Keys handed out on each login of the original API's clients carry one name; this bounds
    how many of them stay valid. A key never used counts as used when it was created.
    """
    last_use = sa.func.coalesce(apikey.c.last_used_at, apikey.c.created_at)
    query = (
        sa.select(*_PUBLIC)
        .where(
            apikey.c.admin_id == admin_id, apikey.c.name == name, apikey.c.revoked_at.is_(None)
        )
        .order_by(last_use.desc(), apikey.c.id.desc())
        .offset(keep)
    )
    stale = [dict(row) for row in (await conn.execute(query)).mappings()]
    for row in stale:
        await revoke(conn, actor, admin_id, row["id"])
    return stale
