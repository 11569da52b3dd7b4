"""Sending counts per mailbox and per domain: counted in memory on the policy service's hot
path, written to the database in batches, shared by every lookup daemon through it.

Windows: sliding, counted in buckets (`dinomail.sendwindows`, the math the admin API shows
too).

Sharing. Each cell (subject, bucket) holds `stored`, the total in the database when last read
(every daemon's sends included), and `pending`, what this daemon counted and has not written
yet. `CounterSync` adds the pending increments to the rows every flush interval in one
transaction (`INSERT ... ON CONFLICT DO UPDATE SET messages = messages + excluded.messages ...
RETURNING`), which gives back the new totals, and reads the rows other daemons changed every
sync interval. A daemon sees all its own sends at once, and the other daemons' sends at most a
flush plus a sync interval late: that is the overshoot a sender spreading its mail over several
daemons can get past a limit.

Reset. An admin's reset (`dinomail.store.policy.reset_counts`) zeroes a subject's rows, with a
fresh `updated_at` and a writer that no daemon is. Every read of a row (a sync, or the totals a
flush gets back) replaces the cell's stored total: reads are made one at a time by the one
`CounterSync` task, each newer than the one before, so the last read is the truth, lower totals
included. Each daemon thus drops the reset subject's counts within a sync interval (or at its
next flush of that subject, whose returned totals start again from zero). What it counted but
had not written yet (at most one flush interval of sends) survives the reset.

A bad row. Requests are read with bounds (`lookupd.policy.attributes`), and a row whose values
cannot be stored is dropped before it is batched; a row the database still refuses is written
apart from the others and dropped with a log line (`lookupd.batchwrite`): no sender's counts
wait behind another's.

Restart. The counts live in the table; a starting daemon loads the rows of the last day before
it answers. What was pending when a daemon died (at most one flush interval of sends) is lost;
at a clean stop it is written.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.schema import sendcount
from dinomail.sendwindows import (
    BUCKET_SECONDS,
    HOUR,
    WINDOW_OF_BUCKET,
    bucket_start,
    bucket_weight,
    oldest_bucket,
)
from dinomail.store import Store
from dinomail.store.policy import SendCount, add_counts, load_counts, prune_counts
from dinomail.waiting import wait_for_event
from lookupd.batchwrite import INT64_MAX, one_line, write_rows
from lookupd.metrics import LookupdMetrics

log = logging.getLogger("dinomail.lookupd.counters")

DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_SYNC_INTERVAL = 5.0
# A sync reads the rows written since the previous read began, less this margin: a transaction
# of another daemon may carry an earlier timestamp (PostgreSQL's now() is the transaction's
# start; SQLite's CURRENT_TIMESTAMP has whole seconds) and commit after that read.
SYNC_OVERLAP = timedelta(seconds=3)
# How often old rows are deleted, and how long after leaving every window they are kept.
PRUNE_INTERVAL = 600.0
PRUNE_MARGIN = 2 * HOUR

# The longest subject name the table stores.
_NAME_TYPE = sendcount.c.name.type
MAX_NAME_LENGTH = (_NAME_TYPE.length if isinstance(_NAME_TYPE, String) else None) or 254

Subject = tuple[str, str]  # (kind, name): ("mailbox", "alice@example.org"), ("domain", ...)
CellKey = tuple[int, int]  # (bucket_seconds, bucket_start)


class Cell:
    """One subject's counts in one bucket."""

    __slots__ = ("pending_messages", "pending_recipients", "stored_messages",
                 "stored_recipients")

    def __init__(self) -> None:
        self.stored_messages = 0
        self.stored_recipients = 0
        self.pending_messages = 0
        self.pending_recipients = 0


class SendCounters:
    """The counts in memory; no I/O. Times are Unix times (seconds)."""

    def __init__(self) -> None:
        self._cells: dict[Subject, dict[CellKey, Cell]] = {}
        self._dirty: set[tuple[Subject, CellKey]] = set()

    def __len__(self) -> int:
        """How many subjects are counted."""
        return len(self._cells)

    def add(self, kind: str, name: str, messages: int, recipients: int, now: float) -> None:
        subject = (kind, name)
        cells = self._cells.get(subject)
        if cells is None:
            cells = self._cells[subject] = {}
        second = int(now)
        for size in BUCKET_SECONDS.values():
            key = (size, bucket_start(second, size))
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            cell.pending_messages += messages
            cell.pending_recipients += recipients
            self._dirty.add((subject, key))

    def sent(self, kind: str, name: str, window: int, now: float) -> tuple[float, float]:
        """(messages, recipients) sent in the `window` seconds before `now`, every daemon's."""
        cells = self._cells.get((kind, name))
        if not cells:
            return 0.0, 0.0
        messages = recipients = 0.0
        for (bucket_seconds, start), cell in cells.items():
            weight = bucket_weight(bucket_seconds, start, window, now)
            if not weight:
                continue
            messages += weight * (cell.stored_messages + cell.pending_messages)
            recipients += weight * (cell.stored_recipients + cell.pending_recipients)
        return messages, recipients

    # --- exchanges with the database (see CounterSync) -------------------------------------------

    def take_batch(self) -> list[SendCount]:
        """The pending increments to write. They stay pending until `confirm`ed."""
        batch = []
        for subject, key in self._dirty:
            cell = self._cells[subject][key]
            if cell.pending_messages or cell.pending_recipients:
                batch.append(SendCount(*subject, *key, cell.pending_messages,
                                       cell.pending_recipients))
        self._dirty.clear()
        return batch

    def confirm(self, batch: Iterable[SendCount], totals: Iterable[SendCount]) -> None:
        """`batch` was written and the rows now hold `totals`."""
        for row in batch:
            cell = self._cells[(row.kind, row.name)][(row.bucket_seconds, row.bucket_start)]
            # Sends counted while the batch was on its way stay pending.
            cell.pending_messages -= row.messages
            cell.pending_recipients -= row.recipients
        self.merge(totals)

    def drop(self, row: SendCount) -> None:
        """`row` cannot be stored: forget its increments (they would fail at every flush)."""
        cell = self._cells[(row.kind, row.name)][(row.bucket_seconds, row.bucket_start)]
        cell.pending_messages -= row.messages
        cell.pending_recipients -= row.recipients

    def restore(self, batch: Iterable[SendCount]) -> None:
        """`batch` could not be written: try again at the next flush."""
        for row in batch:
            self._dirty.add(((row.kind, row.name), (row.bucket_seconds, row.bucket_start)))

    def merge(self, rows: Iterable[SendCount]) -> None:
        """Totals read from the database replace the stored ones (see "Reset" above: the
        reads come one at a time, each newer than the one before)."""
        for row in rows:
            if row.bucket_seconds not in WINDOW_OF_BUCKET:
                continue
            cells = self._cells.get((row.kind, row.name))
            if cells is None:
                cells = self._cells[(row.kind, row.name)] = {}
            key = (row.bucket_seconds, row.bucket_start)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Cell()
            cell.stored_messages = row.messages
            cell.stored_recipients = row.recipients

    def expire(self, now: float) -> None:
        """Forget the buckets that left their window and hold nothing unwritten."""
        for subject in list(self._cells):
            cells = self._cells[subject]
            for key in list(cells):
                size, start = key
                cell = cells[key]
                if (start + size <= now - WINDOW_OF_BUCKET[size]
                        and not cell.pending_messages and not cell.pending_recipients):
                    del cells[key]
                    self._dirty.discard((subject, key))
            if not cells:
                del self._cells[subject]


class CounterSync:
    """Moves counts between `SendCounters` and the database: the first load, the flushes, the
    syncs with other daemons, and the pruning of old rows."""

    def __init__(
        self,
        store: Store,
        counters: SendCounters,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        metrics: LookupdMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.counters = counters
        self.flush_interval = flush_interval
        self.sync_interval = sync_interval
        self.clock = clock
        self.loaded = False
        self.metrics = metrics
        # Marks the rows this daemon wrote last: a sync skips them (their totals came back
        # with the flush), so a lone daemon reads nothing back.
        self.writer = secrets.token_hex(8)
        self._failing = False
        self._last_read: datetime | None = None
        self._last_sync = 0.0
        self._last_prune = 0.0
        self._flushes: Counter | None = None
        if metrics is not None:
            self._flushes = Counter(
                "dinomail_lookupd_policy_counter_writes",
                "Writes of sending counts to the database, by result (ok, error; dropped: "
                "a row that cannot be stored, left out).",
                ["result"], registry=metrics.registry,
            )
            for result in ("ok", "error", "dropped"):
                self._flushes.labels(result)
            subjects = Gauge(
                "dinomail_lookupd_policy_counted_subjects",
                "Mailboxes and domains whose sending counts are held in memory.",
                registry=metrics.registry,
            )
            subjects.set_function(lambda: len(self.counters))

    def _begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        # Quiet: counts are not mail data, and the store's listeners (the refresher) must not
        # wake every second for them.
        return self.store.write(quiet=True)

    async def load(self) -> None:
        """Read the counts of the last day (what a restarted daemon must know before it
        answers)."""
        async with self.store.read() as conn:
            rows, read_at = await load_counts(conn, since_bucket=oldest_bucket(self.clock()))
        self.counters.merge(rows)
        self._last_read = read_at
        self._last_sync = self.clock()
        self.loaded = True
        log.info("sending counts loaded: %d rows", len(rows))

    async def flush(self) -> None:
        batch = []
        for row in self.counters.take_batch():
            if storable(row):
                batch.append(row)
            else:
                self._drop(row, "out of bounds")
        if not batch:
            return
        done: set[SendCount] = set()

        def written(rows: Sequence[SendCount], totals: list[SendCount]) -> None:
            self.counters.confirm(rows, totals)
            done.update(rows)

        def refused(row: SendCount, error: Exception) -> None:
            self._drop(row, f"refused by the database: {one_line(error)}")
            done.add(row)

        try:
            await write_rows(batch, self._add, self.store.ping, written=written,
                             refused=refused)
        except BaseException:
            self.counters.restore(row for row in batch if row not in done)
            self._count_write("error")
            raise
        self._count_write("ok")

    async def _add(self, rows: Sequence[SendCount]) -> list[SendCount]:
        async with self._begin() as conn:
            return await add_counts(conn, rows, writer=self.writer)

    def _drop(self, row: SendCount, why: str) -> None:
        self.counters.drop(row)
        self._count_write("dropped")
        log.warning("sending counts of %s %r (%d messages, %d recipients) dropped: %s",
                    row.kind, row.name[:80], row.messages, row.recipients, why)

    async def sync(self) -> None:
        """Read the rows other daemons changed since the last sync."""
        since = None if self._last_read is None else self._last_read - SYNC_OVERLAP
        now = self.clock()
        async with self.store.read() as conn:
            rows, read_at = await load_counts(
                conn, since_bucket=oldest_bucket(now), changed_since=since,
                other_than=self.writer,
            )
        self.counters.merge(rows)
        self._last_read = read_at
        self._last_sync = now
        self.counters.expire(now)

    async def prune(self) -> None:
        now = self.clock()
        async with self._begin() as conn:
            removed = await prune_counts(conn, oldest_bucket(now) - PRUNE_MARGIN)
        self._last_prune = now
        if removed:
            log.debug("pruned %d old sending count rows", removed)

    async def run(self, stop: asyncio.Event) -> None:
        """Load, then flush every flush interval and sync every sync interval, until `stop`;
        errors are logged and the step tried again at the next tick."""
        while not stop.is_set():
            try:
                await self._tick()
            except Exception as error:
                if self.metrics is not None:
                    self.metrics.record_database_error()
                # Once per outage, not at every tick: the counts wait in memory meanwhile.
                if not self._failing:
                    log.warning("sending counts: cannot reach the database (%s); counting "
                                "goes on in memory", one_line(error))
                self._failing = True
            else:
                if self._failing:
                    log.info("sending counts: the database answers again")
                self._failing = False
            await wait_for_event(stop, self.flush_interval)

    async def _tick(self) -> None:
        if not self.loaded:
            await self.load()
            return
        await self.flush()
        now = self.clock()
        if now - self._last_sync >= self.sync_interval:
            await self.sync()
        if now - self._last_prune >= PRUNE_INTERVAL:
            await self.prune()

    def _count_write(self, result: str) -> None:
        if self._flushes is not None:
            self._flushes.labels(result).inc()


def storable(row: SendCount) -> bool:
    """The row's values fit the table's columns."""
    return (0 <= row.messages <= INT64_MAX and 0 <= row.recipients <= INT64_MAX
            and 0 < len(row.name) <= MAX_NAME_LENGTH)
