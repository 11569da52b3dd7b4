"""Keeping the snapshot current: a full load at start, then only the changed rows.

The change log (appended by database triggers) says which rows changed; the refresher reads the
current state of just those rows and applies them to the snapshot, so a change costs the same at
ten mailboxes and at a million. A PostgreSQL primary tells us when to look (LISTEN/NOTIFY);
SQLite and a PostgreSQL standby (which cannot LISTEN) are polled, with one indexed query that
returns nothing when nothing changed; a write through the store in this process wakes us at
once. A periodic check runs on a primary too, in case a notification was lost with its
connection.

The log may be read from a standby (LOOKUPD_DATABASE_URL), or through a URL naming several
servers: the refresher asks which server it reads from at each new connection and every few
seconds. A standby promoted under it keeps its log (replicated, sequence numbers and all), so
following simply goes on, now through LISTEN. A connection that reaches another server (a
failover to it), or a log that went back (a restored database), may not continue the log
followed so far: the snapshot is then reloaded in full, and meanwhile keeps answering. A gap in
the sequence numbers is no such sign: a rolled-back transaction leaves one, and a promoted
standby skips up to 32 (PostgreSQL logs sequences ahead); the triggers hand numbers out in
commit order, so a number read means every smaller one committed is read too.

When the database is away, the last snapshot keeps answering (its age is exported) and the
refresher retries with a growing delay. Before the first load there is no snapshot, and every
protocol answers a temporary failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.database import describe
from dinomail.records import MailData
from dinomail.store import Store, replication
from dinomail.store import changes as changelog
from dinomail.store.notify import ChangeListener
from lookupd.metrics import LookupdMetrics
from lookupd.snapshot import Snapshot
from lookupd.snapshot_file import SavedSnapshot, read_snapshot_file, write_snapshot_file

log = logging.getLogger("dinomail.lookupd.refresher")

# Told by a PostgreSQL primary (NOTIFY), or reading the log every few hundred milliseconds.
FollowMode = Literal["listen", "poll"]

# More pending changes than this: building a fresh snapshot is cheaper than applying them.
FULL_RELOAD_THRESHOLD = 50_000
# How often a PostgreSQL follower checks the log even without a notification.
LISTEN_SAFETY_POLL = 5.0
# How often the refresher asks which server it reads from (a standby promoted, the log reset).
SERVER_CHECK_INTERVAL = 5.0
# A reconnection attempt is one cheap connect: retrying every few seconds costs nothing and
# brings fresh data back soon after the database returns.
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 3.0)
PRUNE_INTERVAL = 3600.0
CHANGELOG_RETENTION = 86_400.0


@dataclass
class SnapshotHolder:
    """Where every protocol finds the current snapshot (None until the first load), the
    change log position it reflects, and whether it came from the file on disk (`stale`: the
    database has not been reached since this daemon started)."""

    current: Snapshot | None = None
    seq: int = 0
    stale: bool = False


@dataclass(frozen=True)
class SnapshotFile:
    """Where the last loaded data is kept on disk, for which database, and how often it is
    written again after changes (it is always written after a full load)."""

    path: Path
    database: str  # `lookupd.snapshot_file.database_name` of DATABASE_URL
    interval: float = 300.0


class Refresher:
    def __init__(
        self,
        store: Store,
        holder: SnapshotHolder,
        metrics: LookupdMetrics,
        *,
        recipient_delimiter: str = "+",
        poll_interval: float = 0.25,
        standby_poll_interval: float = 0.25,
        full_resync_interval: float = 3600.0,
        snapshot_file: SnapshotFile | None = None,
        follow_url: str | None = None,
    ) -> None:
        """`store` takes the refresher's writes (pruning the log); the mail data and the log
        are read from `follow_url` when given (a standby, several servers), else `store`."""
        self.store = store
        self._owns_follow = follow_url is not None and follow_url != store.url
        self.follow = Store(follow_url) if self._owns_follow and follow_url else store
        self.holder = holder
        self.metrics = metrics
        self.recipient_delimiter = recipient_delimiter
        self.full_resync_interval = full_resync_interval
        self._postgres = self.follow.dialect == "postgresql"
        self._sqlite_poll_interval = poll_interval
        self.standby_poll_interval = standby_poll_interval
        # Until the first answer, a PostgreSQL server is taken for a primary.
        self.mode: FollowMode = "listen" if self._postgres else "poll"
        self._mode_known = False
        self.metrics.set_follow_mode(self.mode)
        self.server: replication.ServerState | None = None
        self._server_checked = 0.0
        # Set when the refresher connects again: the new connection may reach another server.
        self._server_unknown = True
        self._conn: AsyncConnection | None = None
        self._wake = asyncio.Event()
        self._listener = ChangeListener(self.wake, self.wake)
        self._full_due = True
        self._last_full = 0.0
        self._last_prune = time.monotonic()
        self.snapshot_file = snapshot_file
        self.database_id: str | None = None
        self._id_learned = False
        self._disk_tried = False
        self._saved_seq = -1  # the change log position of the file on disk
        self._last_save = 0.0
        self._saving: asyncio.Task[None] | None = None
        self._failures_logged = 0.0

    def wake(self) -> None:
        """Look at the change log now (a write was committed, or a notification came)."""
        self._wake.set()

    @property
    def poll_interval(self) -> float:
        """Seconds between reads of the change log when nothing wakes the refresher."""
        if not self._postgres:
            return self._sqlite_poll_interval
        return LISTEN_SAFETY_POLL if self.mode == "listen" else self.standby_poll_interval

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """The connection every read of the refresher goes through.

        On PostgreSQL, one connection of its own, kept open and in autocommit: a poll that
        finds nothing is one round trip (no pool ping, no BEGIN and ROLLBACK around it), and
        every read is from the one server whose state `_check_server` knows. Each statement
        reads committed data, as it would inside a READ COMMITTED transaction."""
        if not self._postgres:
            async with self.follow.read() as conn:
                yield conn
            return
        if self._conn is None:
            conn = await self.follow.engine.connect()
            try:
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            except BaseException:
                await conn.close()
                raise
            self._server_unknown = True
        yield self._conn

    async def _disconnect(self) -> None:
        """Drop the refresher's connection (after an error: it may be dead, or reach a server
        that is no longer the right one)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

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
                self._on_error(error, failures)
                await self._listener.close()
                await self._disconnect()
                if self.holder.current is None and not self._disk_tried:
                    await self._load_from_disk()
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                await _wait(stop, delay)
                continue
            self._save_if_due()
            await _wait(stop, self.poll_interval, self._wake)
        await self._listener.close()
        await self._disconnect()
        if self._saving is not None:
            await self._saving
        if self._owns_follow:
            await self.follow.close()

    async def _refresh(self) -> None:
        now = time.monotonic()
        if self._server_unknown or now - self._server_checked >= SERVER_CHECK_INTERVAL:
            await self._check_server()
        if self.mode == "listen" and not self._listener.alive:
            # Listen before reading, so that no change slips between the read and the LISTEN.
            await self._listener.start(self.follow.url)
        if not self._id_learned and self.snapshot_file is not None:
            await self._learn_database_id()
        if self._full_due or now - self._last_full >= self.full_resync_interval:
            await self.full_load()
        else:
            await self.catch_up()
        if now - self._last_prune >= PRUNE_INTERVAL:
            self._last_prune = now
            await self._prune()

    async def _prune(self) -> None:
        """Forget old changes, on the primary (a standby receives the deletion). A failure here
        is no reason to stop following: the next prune, an hour later, does it."""
        if self.store is self.follow and self.server is not None and self.server.in_recovery:
            return
        try:
            async with self.store.write() as conn:
                await changelog.prune_older_than(conn, CHANGELOG_RETENTION)
        except Exception as error:
            if not _is_database_error(error):
                raise
            log.warning("cannot prune the change log: %s", _one_line(error))

    async def _check_server(self) -> None:
        """Which server the log is read from, and whether the log still continues the one
        followed so far: choose listen or poll, and reload in full when it does not."""
        async with self._reading() as conn:
            state = await replication.server_state(conn)
            latest = await changelog.latest_seq(conn)
            pruned_through = await changelog.horizon(conn)
        self._server_unknown = False
        self._server_checked = time.monotonic()
        previous, self.server = self.server, state
        if state is not None:
            await self._set_mode("poll" if state.in_recovery else "listen", state)
        if self.holder.current is None or self._full_due:
            return
        if previous is not None and state is not None and previous.identity != state.identity:
            # Another server's log may lack the last changes read (not replicated before a
            # failover) and hand their sequence numbers to other changes.
            log.warning("now reading from the server at %s (was %s): reloading the snapshot in "
                        "full", state.address, previous.address)
            self._full_due = True
        elif latest < self.holder.seq:
            log.warning("the change log went back from %d to %d (a database restored or "
                        "replaced): reloading the snapshot in full", self.holder.seq, latest)
            self._full_due = True
        elif pruned_through > self.holder.seq:
            log.warning("changes after %d were pruned from the log before being read: "
                        "reloading the snapshot in full", self.holder.seq)
            self._full_due = True

    async def _set_mode(self, mode: FollowMode, state: replication.ServerState) -> None:
        if mode == self.mode and self._mode_known:
            return
        self._mode_known = True
        self.mode = mode
        self.metrics.set_follow_mode(mode)
        where = describe(self.follow.url)
        if mode == "poll":
            await self._listener.close()
            log.info("%s (server %s) is a standby, which cannot LISTEN: following the change "
                     "log by polling it every %g s", where, state.address,
                     self.standby_poll_interval)
        else:
            log.info("%s (server %s) is a primary: following the change log through "
                     "LISTEN/NOTIFY", where, state.address)

    async def full_load(self) -> None:
        started = time.monotonic()
        async with self._reading() as conn:
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
        if self.holder.stale:
            self.holder.stale = False
            self.metrics.set_snapshot_from_disk(False)
            log.info("the database is back: serving its data, no longer the snapshot on disk")
        self._full_due = False
        self._last_full = time.monotonic()
        duration = self._last_full - started
        self.metrics.record_refresh("full", ok=True, seconds=duration)
        self.metrics.set_snapshot_rows(snapshot.row_counts())
        log.info("snapshot loaded in %.2f s: %s", duration, snapshot.row_counts())
        self._last_save = 0.0  # written to disk at once

    async def catch_up(self) -> None:
        snapshot = self.holder.current
        assert snapshot is not None
        started = time.monotonic()
        async with self._reading() as conn:
            # The one query of a poll when nothing changed (an index range scan, no rows).
            entries = await changelog.changes_since(conn, self.holder.seq, FULL_RELOAD_THRESHOLD)
            if not entries:
                self.metrics.mark_snapshot_current()
                return
            pruned = await changelog.horizon(conn) > self.holder.seq
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

    # --- the snapshot on disk ---------------------------------------------------------------------

    async def _learn_database_id(self) -> None:
        """The database's id, which the snapshot file carries (and must match when read).

        Read first: a database that does not answer fails here like the load would. Made by the
        first daemon that finds none; a daemon that may not write (a read-only replica) loads
        and saves all the same, with the file naming the database by its address only.
        """
        async with self._reading() as conn:
            self.database_id = await changelog.database_id(conn)
        self._id_learned = True  # asked once, whatever comes of the creation below
        if self.database_id is not None:
            return
        try:
            async with self.store.write() as conn:
                self.database_id = await changelog.ensure_database_id(conn)
        except Exception as error:
            log.warning("cannot give the database an id for the snapshot file: %s",
                        _one_line(error))

    async def _load_from_disk(self) -> None:
        """No data yet and no database: serve the last snapshot saved on disk, if it is ours.

        Read and built in a thread (seconds at a million mailboxes): meanwhile the listeners
        keep answering temporary failures and the watchdog keeps being fed."""
        self._disk_tried = True
        target = self.snapshot_file
        if target is None:
            return

        def read() -> tuple[SavedSnapshot, Snapshot] | None:
            saved = read_snapshot_file(
                target.path, database=target.database, database_id=self.database_id
            )
            if saved is None:
                return None
            return saved, Snapshot.build(
                saved.data, recipient_delimiter=self.recipient_delimiter, complete=False
            )

        loaded = await asyncio.to_thread(read)
        if loaded is None:
            log.warning("no usable snapshot on disk: temporary failures until the database "
                        "answers")
            return
        if self.holder.current is not None:
            return  # the database answered meanwhile
        saved, snapshot = loaded
        self.holder.current = snapshot
        self.holder.seq = saved.seq
        self.holder.stale = True
        self._saved_seq = saved.seq
        self._full_due = True  # the database's own data replaces it as soon as it answers
        self.metrics.mark_snapshot_current(age=saved.age)
        self.metrics.set_snapshot_from_disk(True)
        self.metrics.set_snapshot_rows(snapshot.row_counts())
        log.warning(
            "database unreachable: serving the snapshot saved in %s %.0f s ago (%s) until "
            "it answers", target.path, saved.age, snapshot.row_counts(),
        )
        gc.freeze()  # as after a full load: no collection walks these rows again

    def _save_if_due(self) -> None:
        """Write the snapshot to disk after a full load, and after changes every `interval`."""
        target = self.snapshot_file
        snapshot = self.holder.current
        if (
            target is None or snapshot is None or self.holder.stale
            or self.holder.seq == self._saved_seq
            or (self._saving is not None and not self._saving.done())
        ):
            return
        now = time.monotonic()
        if self._last_save and now - self._last_save < target.interval:
            return
        self._last_save = now
        seq = self.holder.seq
        # Copied here, on the loop: the rows are immutable, the lists are the thread's own.
        data = snapshot.rows()
        self._saving = asyncio.create_task(self._save(target, data, seq))

    async def _save(self, target: SnapshotFile, data: MailData, seq: int) -> None:
        started = time.monotonic()
        try:
            await asyncio.to_thread(
                write_snapshot_file, target.path, data, database=target.database,
                database_id=self.database_id, seq=seq,
            )
        except Exception as error:
            log.error("cannot write the snapshot to %s: %s", target.path, error)
            return
        self._saved_seq = seq
        log.debug("snapshot written to %s in %.2f s", target.path, time.monotonic() - started)

    def _on_error(self, error: Exception, failures: int) -> None:
        kind = "full" if self._full_due else "incremental"
        self.metrics.record_refresh(kind, ok=False, seconds=0.0)
        if _is_database_error(error):
            self.metrics.record_database_error()
            now = time.monotonic()
            # The first failure, then one line a minute: retries come every few seconds.
            if failures == 0 or now - self._failures_logged >= 60.0:
                self._failures_logged = now
                serving = (
                    "nothing loaded yet, answering temporary failures"
                    if self.holder.current is None
                    else "serving the snapshot read from disk" if self.holder.stale
                    else "serving the last snapshot loaded"
                )
                log.warning("database unavailable, %s: %s", serving, _one_line(error))
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

    from dinomail.store.errors import as_unavailable

    # The store raises its own Unavailable for an outage; the rest reach the driver directly.
    if as_unavailable(error) is not None:
        return True
    if isinstance(error, DBAPIError | InterfaceError | OperationalError | OSError | TimeoutError):
        return True
    return type(error).__module__.startswith("asyncpg")


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
