"""What a mailbox owner does with their own password: log in to `/me/`, change it.

Both check a password with the mailbox's stored Dovecot scheme and hash in a worker thread,
outside any transaction (hashing is slow on purpose; a transaction held open meanwhile would
hold locks). The writes go through the store: `mailboxes.set_password` (audited) for a change,
`selfservice.replace_hash` for the silent upgrade of an old scheme at login. Either write
reaches the lookup daemons through the change log, so Dovecot sees the new hash at once.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from dinomail.passwords import PasswordSchemeError, hash_password, split_stored, verify_password
from dinomail.store import Scope, Store, mailboxes, ownerlogin, selfservice
from dinomail.validation import ValidationError

# Longer than any mailbox password can be; anything longer is not worth hashing.
MAX_LOGIN_PASSWORD_LENGTH = mailboxes.MAX_PASSWORD_LENGTH


@dataclass(frozen=True, slots=True)
class Owner:
    """A logged-in mailbox owner: their mailbox, and what the store calls them."""

    mailbox_id: int
    email: str
    domain_id: int

    @property
    def scope(self) -> Scope:
        """Their own domain; the pages pass only their own mailbox id within it."""
        return Scope(frozenset({self.domain_id}))

    @property
    def actor(self) -> str:
        """Who the audit log names: the address itself."""
        return self.email


@functools.cache
def _dummy_hash(scheme: str) -> str:
    return hash_password("not the password of anyone", scheme, user="nobody@invalid")


def _matches(plain: str, stored: str, email: str) -> bool:
    try:
        return verify_password(plain, stored, user=email)
    except PasswordSchemeError:
        # A hash no password can match (an unknown scheme, a damaged value): no login.
        return False


def needs_rehash(stored: str, scheme: str) -> bool:
    try:
        return split_stored(stored)[0].upper() != scheme.upper()
    except PasswordSchemeError:
        return False


async def authenticate(
    store: Store, email: str, password: str, *, scheme: str, enabled: bool = True
) -> tuple[Owner, str] | None:
    """The owner and their (possibly new) stored hash when `password` is the mailbox's; None
    otherwise, whatever the reason (no such mailbox, inactive, self-service off, wrong
    password), and in about the same time."""
    async with store.read() as conn:
        candidate = await selfservice.login_candidate(conn, email, enabled=enabled)
    if candidate is None or len(password) > MAX_LOGIN_PASSWORD_LENGTH:
        await asyncio.to_thread(_matches, password[:MAX_LOGIN_PASSWORD_LENGTH],
                                _dummy_hash(scheme), email)
        return None
    stored: str = candidate["password"]
    if not await asyncio.to_thread(_matches, password, stored, candidate["email"]):
        return None
    if needs_rehash(stored, scheme):
        new_hash = await asyncio.to_thread(hash_password, password, scheme,
                                           user=candidate["email"])
        async with store.write() as conn:
            if await selfservice.replace_hash(conn, candidate["id"], stored, new_hash):
                stored = new_hash
    owner = Owner(candidate["id"], candidate["email"], candidate["domain_id"])
    return owner, stored


async def check_current_password(store: Store, owner: Owner, current: str) -> None:
    """Raise ValidationError on `current_password` unless it is the mailbox's password: asked
    again before what a stolen session must not do alone (a new password, removing the
    authenticator app)."""
    async with store.read() as conn:
        stored = await mailboxes.password_hash(conn, owner.scope, owner.mailbox_id)
    if not current or len(current) > MAX_LOGIN_PASSWORD_LENGTH or not await asyncio.to_thread(
        _matches, current, stored, owner.email
    ):
        raise ValidationError("current_password", "is not the mailbox's current password",
                              code="not_current_password")


async def change_password(
    store: Store, owner: Owner, current: str, new: str, *, scheme: str, min_length: int,
) -> tuple[str, int]:
    """Set the owner's new password after checking the current one; the new stored hash and
    the new session generation (every other session of the owner ends).

    Raises ValidationError on `current_password` (wrong) or `new_password` (the mailbox
    password policy), having changed nothing."""
    await check_current_password(store, owner, current)
    new_hash = await mailboxes.hash_new_password(
        new, scheme, email=owner.email, field="new_password", min_length=min_length
    )
    async with store.write() as conn:
        await mailboxes.set_password(conn, owner.actor, owner.scope, owner.mailbox_id, new_hash)
        generation = await ownerlogin.end_sessions(conn, owner.mailbox_id)
    return new_hash, generation
