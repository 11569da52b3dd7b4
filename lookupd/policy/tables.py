"""What the policy service needs from the database besides the snapshot: the sending limits and
which mailboxes are full. Both are reloaded whole every POLICY_REFRESH_INTERVAL seconds, so no
request waits for SQL: the limit tables hold only domains and mailboxes that have limits, and
the full mailboxes are usually a handful.

A limit or a quota usage changed in the database is thus applied within one interval. A
mailbox's quota itself comes from the snapshot (current at once); the usage is compared with it
at request time, so raising a full mailbox's quota lets mail in immediately.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from dinomail.store import Store
from dinomail.store.policy import (
    DOMAIN_TOTALS,
    MAILBOX_DEFAULTS,
    LimitRows,
    effective_mailbox_limits,
    load_full_mailboxes,
    load_limits,
)
from dinomail.waiting import wait_for_event
from lookupd.metrics import LookupdMetrics

log = logging.getLogger("dinomail.lookupd.policy")

DEFAULT_REFRESH_INTERVAL = 5.0
# Until the first load succeeds, try again this often.
RETRY_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What one mailbox, or one domain as a whole, may send; 0 = unlimited."""

    messages_per_hour: int = 0
    messages_per_day: int = 0
    recipients_per_hour: int = 0
    recipients_per_day: int = 0

    @property
    def limited(self) -> bool:
        return bool(self.messages_per_hour or self.messages_per_day
                    or self.recipients_per_hour or self.recipients_per_day)


UNLIMITED = SendLimits()


@dataclass(frozen=True, slots=True)
class DomainLimits:
    mailbox_default: SendLimits
    total: SendLimits
    reply: str  # empty: the service's default reply


@dataclass(frozen=True, slots=True)
class PolicyTables:
    """Limits by domain name and by mailbox address (each mailbox's own limits already merged
    with its domain's defaults), and the full mailboxes: id → stored usage in bytes."""

    domains: dict[str, DomainLimits] = field(default_factory=dict)
    mailboxes: dict[str, SendLimits] = field(default_factory=dict)
    full_mailboxes: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: LimitRows, full_mailboxes: dict[int, int]) -> PolicyTables:
        domains = {
            row["name"]: DomainLimits(
                mailbox_default=SendLimits(*(row[key] for key in MAILBOX_DEFAULTS)),
                total=SendLimits(*(row[key] for key in DOMAIN_TOTALS)),
                reply=row["reply"],
            )
            for row in rows.domains
        }
        domain_rows = {row["name"]: row for row in rows.domains}
        mailboxes = {
            row["email"]: SendLimits(**effective_mailbox_limits(
                row, domain_rows.get(row["email"].rpartition("@")[2])
            ))
            for row in rows.mailboxes
        }
        return cls(domains, mailboxes, full_mailboxes)

    def limits_for(self, email: str, domain: str) -> tuple[SendLimits, SendLimits, str]:
        """(the mailbox's limits, its domain's total limits, the domain's reply)."""
        domain_limits = self.domains.get(domain)
        mailbox = self.mailboxes.get(email)
        if domain_limits is None:
            return (UNLIMITED if mailbox is None else mailbox), UNLIMITED, ""
        if mailbox is None:
            mailbox = domain_limits.mailbox_default
        return mailbox, domain_limits.total, domain_limits.reply


class PolicyTablesLoader:
    """Keeps `current` loaded: None until the first load succeeds, then the latest load (the
    last good one while the database is unreachable)."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = DEFAULT_REFRESH_INTERVAL,
        metrics: LookupdMetrics | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.current: PolicyTables | None = None
        self.metrics = metrics
        self._failing = False
        self._loads: Counter | None = None
        if metrics is not None:
            self._loads = Counter(
                "dinomail_lookupd_policy_table_loads",
                "Loads of the sending limits and full mailboxes, by result (ok, error).",
                ["result"], registry=metrics.registry,
            )
            for result in ("ok", "error"):
                self._loads.labels(result)

    async def load(self) -> PolicyTables:
        started = time.perf_counter()
        try:
            async with self.store.read() as conn:
                rows = await load_limits(conn)
                full = await load_full_mailboxes(conn)
        except BaseException:
            if self._loads is not None:
                self._loads.labels("error").inc()
            raise
        tables = PolicyTables.build(rows, full)
        if self.current is None:
            log.info("sending limits loaded: %d domains, %d mailboxes, %d full mailboxes "
                     "(%.3f s)", len(tables.domains), len(tables.mailboxes), len(full),
                     time.perf_counter() - started)
        self.current = tables
        if self._loads is not None:
            self._loads.labels("ok").inc()
        return tables

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.load()
            except Exception as error:
                if self.metrics is not None:
                    self.metrics.record_database_error()
                if not self._failing:  # once per outage; the last tables keep serving
                    text = str(error).strip()
                    log.warning("cannot load the sending limits: %s",
                                text.splitlines()[0] if text else type(error).__name__)
                self._failing = True
            else:
                self._failing = False
            wait = self.interval if self.current is not None else RETRY_INTERVAL
            await wait_for_event(stop, wait)
