"""Quota usage reported by Dovecot's `quota_clone`, written to the database in batches.

`quota_clone` sends a mailbox's whole usage (bytes and messages, absolute values) after every
change: each delivery, each expunge, each mailbox close. A busy server sends hundreds a second,
mostly for the same few mailboxes, and one SQL write each would make the database the limit.
So updates are kept in memory, newest value per mailbox, and written every `flush_interval`
seconds in one transaction (`mailboxes.record_usage`), and once more at shutdown.

The dict protocol replies to Dovecot's commit as soon as the values are accepted here, not after
the write: Dovecot 2.3's `quota_clone` commits synchronously, so a mail process would otherwise
wait up to a flush interval at every mailbox close. What that risks is small and corrects
itself: usage is a display value, not an enforced limit (Dovecot enforces quota from its own
count), and a value lost with a crash is replaced by the next one `quota_clone` sends, which
carries the full usage again. A failed write keeps the values for the next flush, unless newer
ones arrived meanwhile; a mailbox whose values cannot be stored is dropped alone, never holding
back the others (`lookupd.batchwrite`). Values are bounded where they arrive
(`lookupd.dovecot.dict`: 0..2^63-1, what a BIGINT column holds).

Increments (the protocol's `A`, which `quota_clone` does not send but other dict writers may)
are applied to the value in memory when there is one, else to the stored value at flush time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.store import EVERYTHING, NotFound, Store, mailboxes
from dinomail.waiting import wait_for_event
from lookupd.batchwrite import INT64_MAX, one_line, write_rows
from lookupd.metrics import LookupdMetrics

log = logging.getLogger("dinomail.lookupd.quota")

DEFAULT_FLUSH_INTERVAL = 1.0
FLUSH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


@dataclass(slots=True)
class Usage:
    """What is known of one mailbox's usage since the last flush.

    `bytes`/`messages`: an absolute value, or None when only increments were reported;
    `*_delta`: increments to add to the absolute value (or to the stored one, when None).
    """

    bytes: int | None = None
    messages: int | None = None
    bytes_delta: int = 0
    messages_delta: int = 0

    def merge(self, newer: Usage) -> None:
        """Apply a later report on top of this one."""
        if newer.bytes is not None:
            self.bytes, self.bytes_delta = newer.bytes, newer.bytes_delta
        else:
            self.bytes_delta += newer.bytes_delta
        if newer.messages is not None:
            self.messages, self.messages_delta = newer.messages, newer.messages_delta
        else:
            self.messages_delta += newer.messages_delta

    @property
    def needs_stored_value(self) -> bool:
        return (self.bytes is None and self.bytes_delta != 0) or (
            self.messages is None and self.messages_delta != 0
        )


class QuotaMetrics:
    def __init__(self, metrics: LookupdMetrics) -> None:
        r = metrics.registry
        self.updates = Counter(
            "dinomail_lookupd_quota_updates",
            "Quota usage reports accepted from Dovecot (one per committed transaction).",
            registry=r,
        )
        self.flushes = Counter(
            "dinomail_lookupd_quota_flushes",
            "Writes of batched quota usage to the database, by result.",
            ["result"], registry=r,
        )
        self.rows = Counter(
            "dinomail_lookupd_quota_rows_written",
            "Mailboxes whose quota usage was written to the database.",
            registry=r,
        )
        self.pending = Gauge(
            "dinomail_lookupd_quota_pending",
            "Mailboxes with quota usage waiting to be written.",
            registry=r,
        )
        self.flush_seconds = Histogram(
            "dinomail_lookupd_quota_flush_seconds",
            "Duration of one batched quota usage write.",
            buckets=FLUSH_BUCKETS, registry=r,
        )
        self.dropped = Counter(
            "dinomail_lookupd_quota_dropped",
            "Mailboxes whose reported usage could not be stored (out of bounds, or refused by "
            "the database) and was dropped.",
            registry=r,
        )
        for result in ("ok", "error"):
            self.flushes.labels(result)


class QuotaWriter:
    """Collects usage reports in memory and writes them in batches."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        metrics: LookupdMetrics | None = None,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self._pending: dict[str, Usage] = {}
        self._metrics = QuotaMetrics(metrics) if metrics is not None else None
        self._flush_lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def accept(self, email: str, usage: Usage) -> None:
        """Take one committed report for `email` (the mailbox's stored address)."""
        known = self._pending.get(email)
        if known is None:
            self._pending[email] = usage
        else:
            known.merge(usage)
        if self._metrics is not None:
            self._metrics.updates.inc()
            self._metrics.pending.set(len(self._pending))

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval until `stop` is set, then once more."""
        while not stop.is_set():
            await wait_for_event(stop, self.flush_interval)
            await self.flush()

    async def flush(self) -> bool:
        """Write what is pending; False if the database failed (the values are kept).

        A mailbox whose usage cannot be stored (a value past BIGINT, or refused by the
        database) is dropped with a log line; the others are stored (`lookupd.batchwrite`).
        """
        async with self._flush_lock:
            if not self._pending:
                return True
            batch, self._pending = self._pending, {}
            started = time.perf_counter()
            done: set[str] = set()
            stored = 0

            def written(rows: Sequence[tuple[str, Usage]], count: int) -> None:
                nonlocal stored
                stored += count
                done.update(email for email, _ in rows)

            def refused(row: tuple[str, Usage], error: Exception) -> None:
                done.add(row[0])
                self._drop(row[0], f"refused by the database: {one_line(error)}")

            try:
                await write_rows(sorted(batch.items()), self._write, self.store.ping,
                                 written=written, refused=refused)
            except Exception as error:
                self._put_back({email: usage for email, usage in batch.items()
                                if email not in done})
                self._record(ok=False, rows=stored, started=started)
                log.warning("could not store quota usage of %d mailboxes, will retry: %s",
                            len(batch) - len(done), one_line(error))
                return False
            self._record(ok=True, rows=stored, started=started)
            return True

    def _put_back(self, batch: dict[str, Usage]) -> None:
        """Keep what no newer report has replaced, for the next flush."""
        for email, usage in batch.items():
            newer = self._pending.get(email)
            if newer is not None:
                usage.merge(newer)
            self._pending[email] = usage

    async def _write(self, rows: Sequence[tuple[str, Usage]]) -> int:
        async with self.store.write() as conn:
            values: dict[str, tuple[int | None, int | None]] = {}
            for email, usage in rows:
                used_bytes, used_messages = usage.bytes, usage.messages
                if usage.needs_stored_value:
                    stored_bytes, stored_messages = await _stored_usage(conn, email)
                    if used_bytes is None and usage.bytes_delta:
                        used_bytes = stored_bytes
                    if used_messages is None and usage.messages_delta:
                        used_messages = stored_messages
                if used_bytes is not None:
                    used_bytes += usage.bytes_delta
                if used_messages is not None:
                    used_messages += usage.messages_delta
                # Below zero is stored as 0 (`record_usage`); past BIGINT cannot be stored.
                if max(used_bytes or 0, used_messages or 0) > INT64_MAX:
                    self._drop(email, f"out of bounds ({used_bytes} bytes, "
                                      f"{used_messages} messages)")
                    continue
                values[email] = (used_bytes, used_messages)
            return await mailboxes.record_usage(conn, values)

    def _drop(self, email: str, why: str) -> None:
        if self._metrics is not None:
            self._metrics.dropped.inc()
        log.warning("quota usage of %r dropped: %s", email[:80], why)

    def _record(self, *, ok: bool, rows: int, started: float) -> None:
        if self._metrics is None:
            return
        self._metrics.flushes.labels("ok" if ok else "error").inc()
        self._metrics.rows.inc(rows)
        self._metrics.pending.set(len(self._pending))
        self._metrics.flush_seconds.observe(time.perf_counter() - started)


async def _stored_usage(conn: AsyncConnection, email: str) -> tuple[int, int]:
    try:
        row = await mailboxes.get_by_email(conn, EVERYTHING, email)
    except (NotFound, ValueError):  # gone, or not an address the store accepts
        return 0, 0
    return int(row["quota_used_bytes"]), int(row["quota_used_messages"])
