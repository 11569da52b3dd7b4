"""A mailbox owner's own login to the self-service pages (`/me/`): their optional authenticator
app (TOTP) and the generation that ends their sessions server-side.

The app guards the self-service pages only: mail clients (IMAP, POP3, SMTP, ManageSieve) log in
with the mailbox's password or its app passwords, never with a code. Its rules are those of the
admins' apps (`dinomail.store.totpsecrets`): a code is never accepted twice. Confirming the
app makes ten recovery codes (`dinomail.store.recoverycodes`, as the admins'), each of which
opens one login in place of a code of the app; they go when the app goes.

A session of `/me/` carries the mailbox's session generation at login; logging out and a new
password increase it, so a cookie copied before is no longer a login.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import totp
from dinomail.schema import mailboxrecoverycode, mailboxsession, mailboxtotp, virtualuser
from dinomail.store import audit, mailboxes, recoverycodes, totpsecrets
from dinomail.store.common import Row
from dinomail.store.errors import Conflict
from dinomail.store.scope import Scope

OBJECT_TYPE = "mailbox"
_KEY = mailboxtotp.c.user_id
_CODES = mailboxrecoverycode.c.user_id


async def _record(conn: AsyncConnection, actor: str, mailbox: Row, action: str, *,
                  enabled: bool, codes: int = 0) -> None:
    old: dict[str, object] = {"totp": not enabled}
    new: dict[str, object] = {"totp": enabled}
    if codes:
        # The recovery codes made with the app, or left unused when it was removed.
        (new if enabled else old)["recovery_codes"] = codes
    await audit.record(conn, actor, action, OBJECT_TYPE, mailbox["id"], mailbox["email"],
                       old=old, new=new)


async def totp_enabled(conn: AsyncConnection, mailbox_id: int) -> bool:
    """Whether logging in to `/me/` as this mailbox asks for a code after the password."""
    return await totpsecrets.is_confirmed(conn, _KEY, mailbox_id)


async def start_totp(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> str:
    """The secret of the app being enrolled (see `totpsecrets.start`); not audited."""
    await mailboxes.get(conn, scope, mailbox_id)
    return await totpsecrets.start(conn, _KEY, mailbox_id)


async def confirm_totp(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int,
                       code: str, *, at: float | None = None) -> list[str]:
    """Put the app being enrolled in effect with its first code (CodeRefused otherwise), with
    ten new recovery codes: returned this once (to be shown to the owner), stored hashed."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    await totpsecrets.confirm(conn, _KEY, mailbox_id, code, at=at)
    codes = await recoverycodes.replace(conn, _CODES, mailbox_id)
    await _record(conn, actor, mailbox, "enable_totp", enabled=True, codes=len(codes))
    return codes


async def remove_totp(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int) -> bool:
    """Remove the mailbox's app (the owner's choice, or an admin's for a lost phone) and its
    recovery codes; audited when an app was in effect. NotFound for a mailbox outside
    `scope`."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    removed = await totpsecrets.remove(conn, _KEY, mailbox_id)
    unused = await recoverycodes.remove(conn, _CODES, mailbox_id)
    if removed:
        await _record(conn, actor, mailbox, "remove_totp", enabled=False, codes=unused)
    return removed


async def recovery_codes_left(conn: AsyncConnection, mailbox_id: int) -> int:
    return await recoverycodes.left(conn, _CODES, mailbox_id)


async def new_recovery_codes(conn: AsyncConnection, actor: str, scope: Scope,
                             mailbox_id: int) -> list[str]:
    """Ten new recovery codes in place of those before (which stop working); returned this
    once, stored hashed. Only with an app in effect: the codes stand in for its codes."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    if not await totp_enabled(conn, mailbox_id):
        raise Conflict("recovery codes come with an authenticator app: set one up first",
                       code="totp_not_enrolled", params={})
    codes = await recoverycodes.replace(conn, _CODES, mailbox_id)
    await audit.record(conn, actor, "new_recovery_codes", OBJECT_TYPE, mailbox_id,
                       mailbox["email"], new={"recovery_codes": len(codes)})
    return codes


async def check_code(conn: AsyncConnection, actor: str, mailbox_id: int, code: str) -> bool:
    """Whether `code` is a code of the mailbox's app or one of its unused recovery codes,
    never accepted before; it is used now. A recovery code's use is audited (one fewer left)."""
    if totp.normalize_code(code) is not None:
        return await check_totp(conn, mailbox_id, code)
    if not await totp_enabled(conn, mailbox_id):
        return False
    if not await recoverycodes.use(conn, _CODES, mailbox_id, code):
        return False
    email = await conn.scalar(
        sa.select(virtualuser.c.email).where(virtualuser.c.id == mailbox_id))
    await audit.record(conn, actor, "use_recovery_code", OBJECT_TYPE, mailbox_id,
                       str(email or mailbox_id))
    return True


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
