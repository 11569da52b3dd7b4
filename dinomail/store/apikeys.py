"""API keys: several per admin, stored as SHA-256 hashes, shown once, revocable.

One key per admin is special: the login key, which the original API's clients obtain with
`GET /api/apikey/` and Basic credentials, expecting the same key every time. It is not random
but derived (HMAC-SHA256) from SECRET_KEY, the admin and a generation number, so it can be
computed again when asked for while the database holds only its hash, like every other key: a
copy of the database alone does not give it. Revoking it retires its generation; the next
request makes the next one, a different key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import admin, apikey
from dinomail.store import audit
from dinomail.store.common import Row, Window, aware, fetch_one, fetch_window, insert_id, now

OBJECT_TYPE = "api_key"
PREFIX_LENGTH = 8
# The name of the login keys, so that an admin can tell them from keys they made.
LOGIN_KEY_NAME = "login (GET /api/apikey/)"
# Keeps the login keys' HMAC apart from any other use of SECRET_KEY.
_LOGIN_KEY_PURPOSE = b"dinomail api login key"
# Writing last_used_at at every request would turn each read into a write; a minute is precise
# enough to tell which keys are in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_PUBLIC = (
    apikey.c.id, apikey.c.admin_id, apikey.c.name, apikey.c.prefix, apikey.c.read_only,
    apikey.c.created_at, apikey.c.last_used_at, apikey.c.revoked_at, apikey.c.generation,
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
    return await _insert(conn, actor, admin_id, new_secret(), name=name, read_only=read_only)


async def _insert(
    conn: AsyncConnection,
    actor: str,
    admin_id: int,
    secret: str,
    *,
    name: str,
    read_only: bool = False,
    generation: int | None = None,
) -> tuple[Row, str]:
    key_id = await insert_id(
        conn, apikey, admin_id=admin_id, name=name, prefix=secret[:PREFIX_LENGTH],
        key_hash=hash_key(secret), read_only=bool(read_only), generation=generation,
    )
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


def login_secret(secret_key: str, account: Row, generation: int) -> str:
    """The login key of `account` (an admin row) at `generation`.

    The admin's id, username and creation time are all in the message: an id that SQLite
    hands out again after a deletion must not give a new admin the old one's key.
    """
    if not secret_key:
        raise ValueError("SECRET_KEY is empty: login keys cannot be derived")
    created = int(aware(account["created_at"]).timestamp())
    message = b"\x00".join([
        _LOGIN_KEY_PURPOSE, str(account["id"]).encode(), str(account["username"]).encode(),
        str(created).encode(), str(generation).encode(),
    ])
    # 40 hexadecimal characters, the form of the original's keys; 160 bits of the HMAC.
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:40]


async def login_key(
    conn: AsyncConnection, actor: str, account: Row, secret_key: str
) -> tuple[Row, str]:
    """The admin's live login key and its secret, made when there is none.

    The same key comes back until it is revoked (then the next generation is made). If the
    stored key is no longer the derived one (SECRET_KEY changed), it cannot be shown again, so
    it is revoked and the next generation replaces it.
    """
    admin_id = int(account["id"])
    if conn.dialect.name == "postgresql":
        # Two first logins at once must not both make generation 1 (SQLite writes one at a time).
        await conn.execute(sa.select(admin.c.id).where(admin.c.id == admin_id).with_for_update())
    latest = (
        await conn.execute(
            sa.select(apikey.c.id, apikey.c.generation, apikey.c.key_hash, apikey.c.revoked_at)
            .where(apikey.c.admin_id == admin_id, apikey.c.generation.is_not(None))
            .order_by(apikey.c.generation.desc())
            .limit(1)
        )
    ).mappings().first()
    generation = 1
    if latest is not None:
        generation = int(latest["generation"]) + 1
        if latest["revoked_at"] is None:
            secret = login_secret(secret_key, account, int(latest["generation"]))
            if hmac.compare_digest(hash_key(secret), latest["key_hash"]):
                return await get(conn, admin_id, int(latest["id"])), secret
            await revoke(conn, actor, admin_id, int(latest["id"]))
    secret = login_secret(secret_key, account, generation)
    return await _insert(
        conn, actor, admin_id, secret, name=LOGIN_KEY_NAME, generation=generation
    )

