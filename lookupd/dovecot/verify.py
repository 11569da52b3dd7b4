"""Checking a login's password for Dovecot: the main password and the app passwords.

Dovecot's Lua passdb (`conf/dovecot/dinomail-auth.lua`, `auth_password_verify`) posts the login,
the password and the service (`%{service}`: imap, pop3, sieve for ManageSieve, smtp for
Postfix's SASL, submission for Dovecot's own) to `/dovecot/verify`. The answer:

- the main password opens every service, unless the mailbox's domain requires app passwords:
  then it opens none of imap, pop3, smtp, submission and sieve (the self-service pages check it
  themselves, not through here);
- an app password opens the services of its protocols (submission counts as smtp).

Both come from the snapshot, like every passdb answer: the app passwords' hashes and protocols
and the domain's rule are mail data there, followed through the change log (migration
0018_apppassword_changelog), so a login never reads the database. A revoked app password stops
working once its removal reaches the snapshot (at once on a PostgreSQL primary, which notifies;
within the poll interval otherwise), and while the database is unreachable logins keep working
from the last snapshot, app passwords included: one revoked before the outage stays refused.
The last use of each app password is kept in memory and written in batches (`AppPasswordUse`),
not at every login; while the database is away those writes wait and are retried.

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
from lookupd.batchwrite import one_line, write_rows
from lookupd.dovecot.auth import passdb_fields
from lookupd.resolve import find_login
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
    def __init__(self, use: AppPasswordUse) -> None:
        self.use = use

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
        # Read now, before the first await: what is checked is one state of the snapshot.
        required, candidates = _app_passwords(snapshot, record.email, protocol)
        main_allowed = not (required and protocol is not None)
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


def _app_passwords(
    snapshot: Snapshot, email: str, protocol: str | None
) -> tuple[bool, list[tuple[int, str]]]:
    """Whether the domain of mailbox `email` requires app passwords, and the (id, hash) of its
    app passwords that open `protocol` (none for a service that is not a mail protocol)."""
    mailbox = snapshot.mailbox(email)
    if mailbox is None:
        return False, []
    domain = snapshot.domain_by_id(mailbox.domain_id)
    required = domain is not None and domain.require_app_passwords
    if protocol is None:
        return required, []
    return required, [
        (row.id, row.password)
        for row in snapshot.app_passwords(mailbox.id)
        if protocol in row.protocols.split(",")
    ]


def _ok_fields(fields: dict[str, str]) -> dict[str, str]:
    return {"user": fields["user"]} if "user" in fields else {}
