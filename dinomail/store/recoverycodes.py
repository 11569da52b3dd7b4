"""Single-use recovery codes kept hashed, in a table of rows per account: the admins'
(`dinomail_adminrecoverycode`) and the mailbox owners' (`dinomail_mailboxrecoverycode`) have
the same columns (`id`, `code_hash`, `used_at`) and differ only in their key column.

How codes are made, hashed and used lives here once; auditing is the callers'
(`dinomail.store.twofactor` names an admin, `dinomail.store.ownerlogin` a mailbox).
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.store.common import now

COUNT = 10
# 10 characters of a 32-letter alphabet: 50 bits each, beyond guessing with the login limits.
LENGTH = 10
# RFC 4648's base32 letters, lowercase: no 0/1 to mistake for o/l.
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def _table(key: sa.Column) -> sa.Table:
    table = key.table
    assert isinstance(table, sa.Table)
    return table


def normalize(code: str) -> str:
    """The code as compared: lowercase, without the dash or spaces people type."""
    return "".join(char for char in code.lower() if char.isalnum())


def looks_like(code: str) -> bool:
    return len(normalize(code)) == LENGTH


def hash_code(code: str) -> str:
    # A fast hash is enough: each code has 50 random bits and guesses meet the login limits.
    return hashlib.sha256(normalize(code).encode()).hexdigest()


def _new_code() -> str:
    letters = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return f"{letters[:5]}-{letters[5:]}"


async def replace(conn: AsyncConnection, key: sa.Column, account_id: int) -> list[str]:
    """`COUNT` new codes in place of any before; returned this once, stored hashed."""
    table = _table(key)
    await conn.execute(table.delete().where(key == account_id))
    codes = [_new_code() for _ in range(COUNT)]
    await conn.execute(table.insert(), [
        {key.name: account_id, "code_hash": hash_code(code)} for code in codes
    ])
    return codes


async def use(conn: AsyncConnection, key: sa.Column, account_id: int, code: str) -> bool:
    """Whether `code` is one of the account's unused codes; it is used now, never again (the
    update's condition on `used_at` lets one of two requests with the same code succeed)."""
    if not looks_like(code):
        return False
    table = _table(key)
    updated = await conn.execute(
        table.update().where(
            key == account_id,
            table.c.code_hash == hash_code(code),
            table.c.used_at.is_(None),
        ).values(used_at=now())
    )
    return updated.rowcount == 1


async def left(conn: AsyncConnection, key: sa.Column, account_id: int) -> int:
    """How many of the account's codes are still unused."""
    table = _table(key)
    count = await conn.scalar(sa.select(sa.func.count()).select_from(table).where(
        key == account_id, table.c.used_at.is_(None)))
    return int(count or 0)


async def remove(conn: AsyncConnection, key: sa.Column, account_id: int) -> int:
    """Forget every code of the account; how many were unused."""
    unused = await left(conn, key, account_id)
    table = _table(key)
    await conn.execute(table.delete().where(key == account_id))
    return unused
