"""A mailbox owner's own login to the self-service pages (`/me/`): their optional authenticator
app (TOTP) and the generation that ends their sessions server-side.

The app guards the self-service pages only: mail clients (IMAP, POP3, SMTP, ManageSieve) log in
with the mailbox's password or its app passwords, never with a code. Its rules are those of the
admins' apps (`dinomail.store.totpsecrets`): a code is never accepted twice.

A session of `/me/` carries the mailbox's session generation at login; logging out and a new
password increase it, so a cookie copied before is no longer a login.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.schema import mailboxsession, mailboxtotp
from dinomail.store import audit, mailboxes, totpsecrets
from dinomail.store.common import Row
from dinomail.store.scope import Scope

OBJECT_TYPE = "mailbox"
_KEY = mailboxtotp.c.user_id


async def _record(conn: AsyncConnection, actor: str, mailbox: Row, action: str, *,
                  enabled: bool) -> None:
    await audit.record(conn, actor, action, OBJECT_TYPE, mailbox["id"], mailbox["email"],
                       old={"totp": not enabled}, new={"totp": enabled})


async def totp_enabled(conn: AsyncConnection, mailbox_id: int) -> bool:
    """Whether logging in to `/me/` as this mailbox asks for a code after the password."""
    return await totpsecrets.is_confirmed(conn, _KEY, mailbox_id)


async def start_totp(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> str:
    """The secret of the app being enrolled (see `totpsecrets.start`); not audited."""
    await mailboxes.get(conn, scope, mailbox_id)
    return await totpsecrets.start(conn, _KEY, mailbox_id)


async def confirm_totp(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int,
                       code: str, *, at: float | None = None) -> None:
    """Put the app being enrolled in effect with its first code (CodeRefused otherwise)."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    await totpsecrets.confirm(conn, _KEY, mailbox_id, code, at=at)
    await _record(conn, actor, mailbox, "enable_totp", enabled=True)


async def remove_totp(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int) -> bool:
    """Remove the mailbox's app (the owner's choice, or an admin's for a lost phone); audited
    when one was in effect. NotFound for a mailbox outside `scope`."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    removed = await totpsecrets.remove(conn, _KEY, mailbox_id)
    if removed:
        await _record(conn, actor, mailbox, "remove_totp", enabled=False)
    return removed


async def check_totp(conn: AsyncConnection, mailbox_id: int, code: str, *,
                     at: float | None = None) -> bool:
    """Whether `code` is a good code of the mailbox's app, never used before; it is used now."""
    return await totpsecrets.check(conn, _KEY, mailbox_id, code, at=at)


async def session_generation(conn: AsyncConnection, mailbox_id: int) -> int:
    """The generation an owner's session must carry to be valid (0 until first increased)."""
    generation = await conn.scalar(
        sa.select(mailboxsession.c.generation).where(mailboxsession.c.user_id == mailbox_id))
    return int(generation or 0)


async def end_sessions(conn: AsyncConnection, mailbox_id: int) -> int:
    """End every `/me/` session of the mailbox; the new generation. Not audited: logging out
    is not a change, and a new password is audited where it is set."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(mailboxsession).values(user_id=mailbox_id, generation=1)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["user_id"],
        set_={"generation": mailboxsession.c.generation + 1},
    ))
    return await session_generation(conn, mailbox_id)
