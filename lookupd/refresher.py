"""Keeping the snapshot current: a full load at start, then only the changed rows.

The change log (appended by database triggers) says which rows changed; the refresher reads the
current state of just those rows and applies them to the snapshot, so a change costs the same at
ten mailboxes and at a million. PostgreSQL tells us when to look (LISTEN/NOTIFY); SQLite is
polled, and a write through the store in this process wakes us at once. A periodic check runs
on PostgreSQL too, in case a notification was lost with its connection.

When the database is away, the last snapshot keeps answering (its age is exported) and the
refresher retries with a growing delay. Before the first load there is no snapshot, and every
protocol answers a temporary failure.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass

from dinomail.store import Store
from dinomail.store import changes as changelog
from dinomail.store.notify import ChangeListener
from lookupd.metrics import LookupdMetrics
from lookupd.snapshot import Snapshot

log = logging.getLogger("dinomail.lookupd.refresher")

# More pending changes than this: building a fresh snapshot is cheaper than applying them.
FULL_RELOAD_THRESHOLD = 50_000
# How often a PostgreSQL follower checks the log even without a notification.
LISTEN_SAFETY_POLL = 5.0
# A reconnection attempt is one cheap connect: retrying every few seconds costs nothing and
# brings fresh data back soon after the database returns.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 3.0)
PRUNE_INTERVAL = 3600.0
CHANGELOG_RETENTION = 86_400.0


@dataclass
class SnapshotHolder:
    """Where every protocol finds the current snapshot (None until the first load), and the
    change log position it reflects."""

    current: Snapshot | None = None
    seq: int = 0


class Refresher:
    def __init__(
        self,
        store: Store,
        holder: SnapshotHolder,
        metrics: LookupdMetrics,
        *,
        recipient_delimiter: str = "+",
        poll_interval: float = 0.25,
        full_resync_interval: float = 3600.0,
    ) -> None:
        self.store = store
        self.holder = holder
        self.metrics = metrics
        self.recipient_delimiter = recipient_delimiter
        self.full_resync_interval = full_resync_interval
        self._listen = store.dialect == "postgresql"
        self.poll_interval = LISTEN_SAFETY_POLL if self._listen else poll_interval
        self._wake = asyncio.Event()
        self._listener = ChangeListener(self.wake, self.wake)
        self._full_due = True
        self._last_full = 0.0
        self._last_prune = time.monotonic()

    def wake(self) -> None:
        """Look at the change log now (a write was committed, or a notification came)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            # Cleared before reading the log: a notification that arrives during the refresh
            # must trigger another one, not be lost until the next safety poll.
            self._wake.clear()
            try:
                await self._refresh()
                failures = 0
            except Exception as error:  # the daemon must outlive any failure here
                self._on_error(error)
                await self._listener.close()
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                await _wait(stop, delay)
                continue
            await _wait(stop, self.poll_interval, self._wake)
        await self._listener.close()

    async def _refresh(self) -> None:
        if self._listen and not self._listener.alive:
            # Listen before reading, so that no change slips between the read and the LISTEN.
            await self._listener.start(self.store.url)
        now = time.monotonic()
        if self._full_due or now - self._last_full >= self.full_resync_interval:
            await self.full_load()
        else:
            await self.catch_up()
        if now - self._last_prune >= PRUNE_INTERVAL:
            async with self.store.write() as conn:
                await changelog.prune_older_than(conn, CHANGELOG_RETENTION)
            self._last_prune = now

    async def full_load(self) -> None:
        started = time.monotonic()
        async with self.store.read() as conn:
            seq, data = await changelog.load_mail_data(conn)
        # Built aside and swapped in one assignment: readers see the old one until then.
        snapshot = Snapshot.build(data, recipient_delimiter=self.recipient_delimiter)
        del data
        self.holder.current = snapshot
        # Millions of long-lived rows would make every full garbage collection walk them all
        # (a third of a second at a million mailboxes, with every lookup waiting): move them
        # out of the collector's sight. They hold no cycles, so a dropped snapshot is freed.
        gc.collect()
        gc.freeze()
        self.holder.seq = seq
        self._full_due = False
        self._last_full = time.monotonic()
        duration = self._last_full - started
        self.metrics.record_refresh("full", ok=True, seconds=duration)
        self.metrics.set_snapshot_rows(snapshot.row_counts())
        log.info("snapshot loaded in %.2f s: %s", duration, snapshot.row_counts())

    async def catch_up(self) -> None:
        snapshot = self.holder.current
        assert snapshot is not None
        started = time.monotonic()
        async with self.store.read() as conn:
            latest = await changelog.latest_seq(conn)
            if latest <= self.holder.seq:
                self.metrics.mark_snapshot_current()
                return
            pruned = await changelog.horizon(conn) > self.holder.seq
            entries = [] if pruned else await changelog.changes_since(
                conn, self.holder.seq, FULL_RELOAD_THRESHOLD
            )
            too_many = len(entries) >= FULL_RELOAD_THRESHOLD
            truncated = any(entry.op == "T" for entry in entries)
            if pruned or too_many or truncated:
                self._full_due = True
            elif entries:
                batch = await changelog.fetch_changes(conn, entries)
        if self._full_due:
            await self.full_load()
            return
        if entries:
            try:
                snapshot.apply(batch)
            except Exception:
                # A half-applied batch must not stay: rebuild from the database.
                self._full_due = True
                raise
            self.holder.seq = entries[-1].seq
        self.metrics.record_refresh("incremental", ok=True, seconds=time.monotonic() - started)
        self.metrics.set_snapshot_rows(snapshot.row_counts())

    def _on_error(self, error: Exception) -> None:
        kind = "full" if self._full_due else "incremental"
        self.metrics.record_refresh(kind, ok=False, seconds=0.0)
        if _is_database_error(error):
            self.metrics.record_database_error()
            log.warning("database unavailable, serving the last snapshot: %s", _one_line(error))
        else:
            self._full_due = True
            log.exception("refresh failed; the snapshot will be rebuilt")


async def _wait(stop: asyncio.Event, timeout: float, wake: asyncio.Event | None = None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _is_database_error(error: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, DBAPIError | InterfaceError | OperationalError | OSError | TimeoutError):
        return True
    return type(error).__module__.startswith("asyncpg")


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
