"""Authenticator apps (TOTP) kept in a table of one row per account: the admins'
(`dinomail_admintotp`) and the mailbox owners' (`dinomail_mailboxtotp`) have the same columns
(`secret`, `created_at`, `confirmed_at`, `last_step`) and differ only in their key column.

The rules of enrolment and of a code's use live here once; auditing is the callers'
(`dinomail.store.twofactor` names an admin, `dinomail.store.ownerlogin` a mailbox). Codes are
checked with `dinomail.totp`: within a step either side of now, and only for a step later than
the last accepted, so a code is never accepted twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import totp
from dinomail.store.common import now
from dinomail.store.errors import Conflict, NotFound, StoreError


class CodeRefused(StoreError):
    """A second-factor code (or passkey answer) that is wrong, expired or already used."""


def _table(key: sa.Column) -> sa.Table:
    table = key.table
    assert isinstance(table, sa.Table)
    return table


async def is_confirmed(conn: AsyncConnection, key: sa.Column, account_id: int) -> bool:
    """Whether the account has an app in effect (enrolled and confirmed)."""
    table = _table(key)
    found = await conn.scalar(sa.select(key).where(
        key == account_id, table.c.confirmed_at.is_not(None)))
    return found is not None


async def start(conn: AsyncConnection, key: sa.Column, account_id: int) -> str:
    """The secret of the app being enrolled: a new one, or the one shown before and not yet
    confirmed (so reloading the page does not invalidate the QR code already scanned).
    Nothing is in effect until `confirm`."""
    table = _table(key)
    row = (await conn.execute(
        sa.select(table.c.secret, table.c.confirmed_at).where(key == account_id)
    )).first()
    if row is not None and row.confirmed_at is not None:
        raise Conflict("an authenticator app is already set up; remove it first",
                       code="totp_enrolled")
    if row is not None:
        return str(row.secret)
    secret = totp.new_secret()
    await conn.execute(table.insert().values({key.name: account_id, "secret": secret}))
    return secret


async def confirm(conn: AsyncConnection, key: sa.Column, account_id: int, code: str, *,
                  at: float | None = None) -> None:
    """Put the app being enrolled in effect, once it has shown it makes the right codes."""
    table = _table(key)
    row = (await conn.execute(
        sa.select(table.c.secret, table.c.confirmed_at).where(key == account_id)
    )).first()
    if row is None or row.confirmed_at is not None:
        raise NotFound("no authenticator app is waiting for its first code",
                       code="totp_not_started")
    step = totp.matching_step(row.secret, code, at=at)
    if step is None:
        raise CodeRefused("the code is wrong or expired", field="code", code="wrong_code")
    await conn.execute(
        table.update().where(key == account_id).values(confirmed_at=now(), last_step=step)
    )


async def remove(conn: AsyncConnection, key: sa.Column, account_id: int) -> bool:
    """Forget the account's app, confirmed or half-enrolled; whether one was in effect."""
    table = _table(key)
    confirmed = await conn.scalar(sa.select(table.c.confirmed_at).where(key == account_id))
    deleted = await conn.execute(table.delete().where(key == account_id))
    return bool(deleted.rowcount) and confirmed is not None


async def check(conn: AsyncConnection, key: sa.Column, account_id: int, code: str, *,
                at: float | None = None) -> bool:
    """Whether `code` is a valid code of the account's app, never used before; it is used now.

    The last accepted step is written with a condition on its old value, so two requests
    carrying the same code at once cannot both succeed."""
    table = _table(key)
    row = (await conn.execute(
        sa.select(table.c.secret, table.c.last_step).where(
            key == account_id, table.c.confirmed_at.is_not(None))
    )).first()
    if row is None:
        return False
    step = totp.matching_step(row.secret, code, at=at, after=row.last_step)
    if step is None:
        return False
    last = table.c.last_step
    updated = await conn.execute(
        table.update()
        .where(key == account_id, sa.or_(last.is_(None), last < step))
        .values(last_step=step)
    )
    return updated.rowcount == 1
