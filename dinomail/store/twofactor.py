"""Second factors of admins: an authenticator app (TOTP), passkeys and security keys (WebAuthn),
and single-use recovery codes; who must have one (the TWO_FACTOR_REQUIRED setting).

The rules live here; the pages and the API call them. Codes are checked here (TOTP with
`dinomail.totp`); a passkey's signature is checked by the pages with py_webauthn, against the
public key and the single-use challenge kept here. Every change is audited, never with a secret
(the TOTP secret, a code, a key) in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import admin, adminpasskey, adminrecoverycode, admintotp, webauthnchallenge
from dinomail.store import admins, audit, recoverycodes, totpsecrets
from dinomail.store.common import Row, aware, fetch_all, fetch_one, insert_id, now
from dinomail.store.errors import Conflict, NotFound
from dinomail.store.scope import Scope

# Re-exported: callers catch `twofactor.CodeRefused`.
from dinomail.store.totpsecrets import CodeRefused as CodeRefused

OBJECT_TYPE = "admin"
REQUIRED_CHOICES = ("nobody", "superadmins", "all")
RECOVERY_CODE_COUNT = recoverycodes.COUNT
_CODES = adminrecoverycode.c.admin_id
# A browser answers a WebAuthn challenge within seconds; past this it is refused.
CHALLENGE_LIFETIME = timedelta(minutes=5)
# Outstanding challenges kept per admin (a few tabs); older ones are dropped.
MAX_CHALLENGES = 5
REGISTER = "register"
LOGIN = "login"
MAX_PASSKEY_NAME = 100
MAX_PASSKEYS = 20
# Admin ids per `IN (...)` list: below SQLite's variable limit.
IN_CHUNK = 500


@dataclass
class Status:
    """What second factors an admin has."""

    totp: bool = False
    totp_pending: bool = False
    passkeys: list[Row] = field(default_factory=list)
    recovery_left: int = 0

    @property
    def enabled(self) -> bool:
        return self.totp or bool(self.passkeys)


@dataclass
class Summary:
    """What an admin list shows of an admin's second factors."""

    totp: bool = False
    passkeys: int = 0


def must_use(account: Row, required: str) -> bool:
    """Whether TWO_FACTOR_REQUIRED (`required`) asks this admin for a second factor."""
    return required == "all" or (required == "superadmins" and bool(account["is_superadmin"]))


async def status(conn: AsyncConnection, admin_id: int) -> Status:
    row = (await conn.execute(
        sa.select(admintotp.c.confirmed_at).where(admintotp.c.admin_id == admin_id)
    )).first()
    return Status(
        totp=row is not None and row.confirmed_at is not None,
        totp_pending=row is not None and row.confirmed_at is None,
        passkeys=await list_passkeys(conn, admin_id),
        recovery_left=await recoverycodes.left(conn, _CODES, admin_id),
    )


async def is_enabled(conn: AsyncConnection, admin_id: int) -> bool:
    """Whether the admin logs in with a second factor (a confirmed app or a passkey)."""
    app = await conn.scalar(sa.select(admintotp.c.admin_id).where(
        admintotp.c.admin_id == admin_id, admintotp.c.confirmed_at.is_not(None)))
    if app is not None:
        return True
    key = await conn.scalar(
        sa.select(adminpasskey.c.id).where(adminpasskey.c.admin_id == admin_id).limit(1))
    return key is not None


async def summaries(conn: AsyncConnection, admin_ids: Sequence[int]) -> dict[int, Summary]:
    """For each admin, whether they have a confirmed authenticator app and how many passkeys
    (the admin list shows it; no secret, no key name)."""
    out = {admin_id: Summary() for admin_id in admin_ids}
    ids = sorted(out)
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start:start + IN_CHUNK]
        apps = await conn.execute(sa.select(admintotp.c.admin_id).where(
            admintotp.c.admin_id.in_(chunk), admintotp.c.confirmed_at.is_not(None)))
        for (admin_id,) in apps:
            out[admin_id].totp = True
        keys = await conn.execute(
            sa.select(adminpasskey.c.admin_id, sa.func.count())
            .where(adminpasskey.c.admin_id.in_(chunk)).group_by(adminpasskey.c.admin_id))
        for admin_id, count in keys:
            out[admin_id].passkeys = int(count)
    return out


async def must_enrol(conn: AsyncConnection, account: Row, required: str) -> bool:
    """An admin the setting asks for a second factor, who has none yet."""
    return must_use(account, required) and not await is_enabled(conn, int(account["id"]))


async def _record(conn: AsyncConnection, actor: str, admin_id: int, action: str,
                  *, old: dict[str, Any] | None = None,
                  new: dict[str, Any] | None = None) -> None:
    username = await conn.scalar(
        sa.select(admin.c.username).where(admin.c.id == admin_id))
    await audit.record(conn, actor, action, OBJECT_TYPE, admin_id, str(username or admin_id),
                       old=old, new=new)


# --- TOTP ----------------------------------------------------------------------------------------


async def start_totp(conn: AsyncConnection, admin_id: int) -> str:
    """The secret of the app being enrolled (`totpsecrets.start`); not audited, since nothing
    is in effect until `confirm_totp`."""
    return await totpsecrets.start(conn, admintotp.c.admin_id, admin_id)


async def confirm_totp(
    conn: AsyncConnection, actor: str, admin_id: int, code: str, *, at: float | None = None
) -> None:
    """Put the app being enrolled in effect, once it has shown it makes the right codes.
    Every page session of the admin ends, as with a new password: a session opened with the
    password alone (perhaps by whoever made them turn the second factor on) does not outlive
    it. The caller may open a new one for the session it answers."""
    await totpsecrets.confirm(conn, admintotp.c.admin_id, admin_id, code, at=at)
    await admins.end_sessions(conn, admin_id)
    await _record(conn, actor, admin_id, "enable_totp", new={"totp": True})


async def remove_totp(conn: AsyncConnection, actor: str, admin_id: int) -> None:
    if await totpsecrets.remove(conn, admintotp.c.admin_id, admin_id):
        await _record(conn, actor, admin_id, "remove_totp", old={"totp": True},
                      new={"totp": False})


async def check_totp(
    conn: AsyncConnection, admin_id: int, code: str, *, at: float | None = None
) -> bool:
    """Whether `code` is a valid code of the admin's app, never used before; it is used now."""
    return await totpsecrets.check(conn, admintotp.c.admin_id, admin_id, code, at=at)


# --- recovery codes (made, hashed and used as the owners' are: `recoverycodes`) ---------------

async def new_recovery_codes(conn: AsyncConnection, actor: str, admin_id: int) -> list[str]:
    """Ten new codes in place of any before; returned this once, stored hashed."""
    codes = await recoverycodes.replace(conn, _CODES, admin_id)
    await _record(conn, actor, admin_id, "new_recovery_codes",
                  new={"recovery_codes": RECOVERY_CODE_COUNT})
    return codes


async def use_recovery_code(conn: AsyncConnection, actor: str, admin_id: int, code: str) -> bool:
    """Whether `code` is one of the admin's unused codes; it is used now, never again."""
    if not await recoverycodes.use(conn, _CODES, admin_id, code):
        return False
    await _record(conn, actor, admin_id, "use_recovery_code")
    return True


# --- passkeys ------------------------------------------------------------------------------------

_PASSKEY_PUBLIC = (adminpasskey.c.id, adminpasskey.c.name, adminpasskey.c.created_at,
                   adminpasskey.c.last_used_at)


async def list_passkeys(conn: AsyncConnection, admin_id: int) -> list[Row]:
    return await fetch_all(conn, sa.select(*_PASSKEY_PUBLIC, adminpasskey.c.credential_id)
                           .where(adminpasskey.c.admin_id == admin_id)
                           .order_by(adminpasskey.c.id))


def normalize_passkey_name(name: object) -> str:
    text = v.normalize_text(name, "name", MAX_PASSKEY_NAME)
    if not text:
        raise v.ValidationError("name", "is required", code="field_required")
    return text


async def add_passkey(
    conn: AsyncConnection, actor: str, admin_id: int, *, name: str, credential_id: str,
    public_key: str, sign_count: int,
) -> Row:
    """Add a passkey to the admin's second factors. Their first one ends every page session of
    theirs, as `confirm_totp` does (the caller may open a new one for its own)."""
    name = normalize_passkey_name(name)
    taken = await conn.scalar(sa.select(adminpasskey.c.id).where(
        adminpasskey.c.admin_id == admin_id, adminpasskey.c.name == name))
    if taken is not None:
        raise Conflict(f"you already have a passkey named {name}", field="name",
                       code="passkey_name_exists", params={"name": name})
    count = await conn.scalar(sa.select(sa.func.count()).select_from(adminpasskey).where(
        adminpasskey.c.admin_id == admin_id))
    if int(count or 0) >= MAX_PASSKEYS:
        raise Conflict(f"an admin has at most {MAX_PASSKEYS} passkeys", field="name",
                       code="too_many_passkeys", params={"limit": MAX_PASSKEYS})
    known = await conn.scalar(sa.select(adminpasskey.c.id).where(
        adminpasskey.c.credential_id == credential_id))
    if known is not None:
        raise Conflict("this passkey is already registered", code="passkey_exists")
    passkey_id = await insert_id(
        conn, adminpasskey, admin_id=admin_id, name=name, credential_id=credential_id,
        public_key=public_key, sign_count=sign_count,
    )
    if not count:
        await admins.end_sessions(conn, admin_id)
    await _record(conn, actor, admin_id, "add_passkey", new={"passkey": name})
    return await fetch_one(conn, sa.select(*_PASSKEY_PUBLIC).where(adminpasskey.c.id == passkey_id),
                           "passkey")


async def remove_passkey(conn: AsyncConnection, actor: str, admin_id: int, passkey_id: int) -> Row:
    """Remove one of the admin's own passkeys; another's is "not found"."""
    row = await fetch_one(conn, sa.select(*_PASSKEY_PUBLIC).where(
        adminpasskey.c.id == passkey_id, adminpasskey.c.admin_id == admin_id), "passkey")
    await conn.execute(adminpasskey.delete().where(adminpasskey.c.id == passkey_id))
    await _record(conn, actor, admin_id, "remove_passkey", old={"passkey": row["name"]})
    return row


async def passkey_for_login(conn: AsyncConnection, admin_id: int, credential_id: str) -> Row | None:
    """The admin's passkey with this credential id, with its public key and signature count."""
    row = (await conn.execute(sa.select(adminpasskey).where(
        adminpasskey.c.admin_id == admin_id, adminpasskey.c.credential_id == credential_id)
    )).mappings().first()
    return dict(row) if row else None


async def passkey_used(conn: AsyncConnection, passkey_id: int, sign_count: int) -> None:
    await conn.execute(adminpasskey.update().where(adminpasskey.c.id == passkey_id)
                       .values(sign_count=sign_count, last_used_at=now()))


# --- WebAuthn challenges -------------------------------------------------------------------------


async def save_challenge(
    conn: AsyncConnection, admin_id: int, purpose: str, challenge: str
) -> None:
    """Keep a challenge given to the admin's browser until it is answered (`take_challenge`)."""
    kept = await conn.scalars(
        sa.select(webauthnchallenge.c.challenge).where(webauthnchallenge.c.admin_id == admin_id)
        .order_by(webauthnchallenge.c.created_at.desc()).offset(MAX_CHALLENGES - 1)
    )
    stale = list(kept)
    expired = webauthnchallenge.c.created_at < now() - CHALLENGE_LIFETIME
    await conn.execute(webauthnchallenge.delete().where(
        sa.or_(expired, webauthnchallenge.c.challenge.in_(stale)) if stale else expired))
    await conn.execute(webauthnchallenge.insert().values(
        challenge=challenge, admin_id=admin_id, purpose=purpose, created_at=now()))


async def take_challenge(conn: AsyncConnection, admin_id: int, purpose: str,
                         challenge: str) -> bool:
    """Whether `challenge` was given to this admin for this purpose and is still fresh; it is
    deleted either way, so an answer to it is accepted once."""
    row = (await conn.execute(sa.select(webauthnchallenge.c.created_at).where(
        webauthnchallenge.c.challenge == challenge, webauthnchallenge.c.admin_id == admin_id,
        webauthnchallenge.c.purpose == purpose))).first()
    if row is None:
        return False
    deleted = await conn.execute(webauthnchallenge.delete().where(
        webauthnchallenge.c.challenge == challenge))
    return deleted.rowcount == 1 and aware(row.created_at) >= now() - CHALLENGE_LIFETIME


# --- a superadmin's removal ----------------------------------------------------------------------


async def status_of(conn: AsyncConnection, scope: Scope, admin_id: int) -> tuple[Row, Status]:
    """Another admin's account and second factors, for a superadmin; "not found" otherwise."""
    if not scope.is_global:
        raise NotFound("admin not found", code="admin_not_found")
    return await admins.get(conn, admin_id), await status(conn, admin_id)


async def remove_all(conn: AsyncConnection, actor: str, scope: Scope, admin_id: int) -> Row:
    """Remove every second factor of an admin (who lost their phone and codes); superadmins
    only. Their sessions end too. A domain admin is answered "not found", whoever it is."""
    account, before = await status_of(conn, scope, admin_id)
    for table in (admintotp, adminpasskey, adminrecoverycode, webauthnchallenge):
        await conn.execute(table.delete().where(table.c.admin_id == admin_id))
    await admins.end_sessions(conn, admin_id)
    await audit.record(
        conn, actor, "remove_two_factor", OBJECT_TYPE, admin_id, account["username"],
        old={"totp": before.totp, "passkeys": [key["name"] for key in before.passkeys],
             "recovery_codes": before.recovery_left},
        new={"totp": False, "passkeys": [], "recovery_codes": 0},
    )
    return account
