"""Checking a login's password for Dovecot: the main password and the app passwords.

Dovecot's Lua passdb (`conf/dovecot/dinomail-auth.lua`, `auth_password_verify`) posts the login,
the password and the service (`%{service}`: imap, pop3, sieve for ManageSieve, smtp for
Postfix's SASL, submission for Dovecot's own) to `/dovecot/verify`. The answer:

- the main password opens every service, unless the mailbox's domain requires app passwords:
  then it opens none of imap, pop3, smtp, submission and sieve (the self-service pages check it
  themselves, not through here);
- an app password opens the services of its protocols (submission counts as smtp).

The main password comes from the snapshot, like every passdb answer; the app passwords and the
domain's rule are read from the database at each login (a revoked app password must stop
working at once; Dovecot's auth cache, off by default, would spare the reads). While the
database is unreachable, the main password still works in the domains known not to require app
passwords, and everything else is a temporary failure. The last use of each app password is
kept in memory and written in batches (`AppPasswordUse`), not at every login.

Hash checks are slow on purpose: they run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dinomail.passwords import PasswordSchemeError, verify_password
from dinomail.store import Store
from dinomail.store import apppasswords as store_apppasswords
from dinomail.store.common import now
from dinomail.waiting import wait_for_event
from lookupd.batchwrite import is_outage, one_line, write_rows
from lookupd.dovecot.auth import passdb_fields
from lookupd.resolve import LoginRecord, find_login
from lookupd.snapshot import Snapshot

log = logging.getLogger("dinomail.lookupd.verify")

# Dovecot's service names → the app password protocol that opens them.
SERVICE_PROTOCOLS = {
    "imap": "imap",
    "pop3": "pop3",
    "sieve": "sieve",
    "managesieve": "sieve",
    "smtp": "smtp",
    "submission": "smtp",
}
DEFAULT_FLUSH_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """`result`: ok, mismatch, unknown (no such login) or temp; `fields` for Dovecot (the
    canonical `user`) when ok."""

    result: str
    fields: dict[str, str] = field(default_factory=dict)


def _matches(password: str, stored: str, email: str) -> bool:
    try:
        return verify_password(password, stored, user=email)
    except (PasswordSchemeError, ValueError):
        return False  # a hash no password can match


def _first_match(password: str, candidates: Sequence[tuple[int, str]], email: str) -> int | None:
    for app_password_id, stored in candidates:
        if _matches(password, stored, email):
            return app_password_id
    return None


class AppPasswordUse:
    """When each app password was last used, kept in memory and written in batches."""

    def __init__(self, store: Store, *, flush_interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self._pending: dict[int, datetime] = {}

    def used(self, app_password_id: int) -> None:
        self._pending[app_password_id] = now()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval until `stop` is set, then once more."""
        while not stop.is_set():
            await wait_for_event(stop, self.flush_interval)
            await self.flush()

    async def flush(self) -> bool:
        """Write what is pending; False if the database failed (the times are kept)."""
        if not self._pending:
            return True
        batch, self._pending = self._pending, {}
        done: set[int] = set()

        def written(rows: Sequence[tuple[int, datetime]], _: None) -> None:
            done.update(row[0] for row in rows)

        def refused(row: tuple[int, datetime], error: Exception) -> None:
            done.add(row[0])
            log.warning("last use of app password %d dropped: %s", row[0], one_line(error))

        try:
            await write_rows(sorted(batch.items()), self._write, self.store.ping,
                             written=written, refused=refused)
        except Exception as error:
            for app_password_id, when in batch.items():
                if app_password_id not in done:
                    self._pending.setdefault(app_password_id, when)
            log.warning("could not store the last use of app passwords, will retry: %s",
                        one_line(error))
            return False
        return True

    async def _write(self, rows: Sequence[tuple[int, datetime]]) -> None:
        async with self.store.write() as conn:
            await store_apppasswords.record_use(conn, dict(rows))


class PasswordVerifier:
    def __init__(self, store: Store, use: AppPasswordUse) -> None:
        self.store = store
        self.use = use
        # The domain rule last read for each mailbox: what still lets its main password work
        # while the database is unreachable (only when known not to require app passwords).
        self._required: dict[str, bool] = {}

    async def verify(
        self, snapshot: Snapshot, login: str, password: str, service: str
    ) -> Verdict:
        record = find_login(snapshot, login)
        if record is None:
            return Verdict("unknown" if snapshot.complete else "temp")
        fields = passdb_fields(record, login)
        if not record.password or "fail" in fields:
            # Disabled, or without a password: the same answer as a wrong password.
            return Verdict("mismatch")
        protocol = SERVICE_PROTOCOLS.get(service.lower())
        try:
            async with self.store.read() as conn:
                required, rows = await store_apppasswords.for_login(conn, record.email)
        except Exception as error:
            if not is_outage(error):
                log.exception("reading the app passwords of %r failed", record.email[:80])
            return await self._main_only(record, password, protocol, fields)
        self._required[record.email] = required
        main_allowed = not (required and protocol is not None)
        candidates = [
            (app_password_id, stored)
            for app_password_id, protocols, stored in rows
            if protocol is not None and protocol in protocols.split(",")
        ]
        if main_allowed and await asyncio.to_thread(
            _matches, password, record.password, record.email
        ):
            return Verdict("ok", _ok_fields(fields))
        if candidates:
            matched = await asyncio.to_thread(_first_match, password, candidates, record.email)
            if matched is not None:
                self.use.used(matched)
                return Verdict("ok", _ok_fields(fields))
        return Verdict("mismatch")

    async def _main_only(
        self, record: LoginRecord, password: str, protocol: str | None, fields: dict[str, str]
    ) -> Verdict:
        required = self._required.get(record.email)
        if required is None or (required and protocol is not None):
            return Verdict("temp")
        if await asyncio.to_thread(_matches, password, record.password, record.email):
            return Verdict("ok", _ok_fields(fields))
        # An app password might have matched: not knowing, say so rather than "wrong".
        return Verdict("temp")


def _ok_fields(fields: dict[str, str]) -> dict[str, str]:
    return {"user": fields["user"]} if "user" in fields else {}
