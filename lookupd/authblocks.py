"""Sharing the auth policy's blocks through the database, off the request path.

Every AUTH_POLICY_SYNC_INTERVAL seconds, in one transaction: take the unblocks admins made
(and make the policy forget those keys' failures, so the client or login is allowed at its next
try), write the blocks that began or changed since the last write, delete the rows of blocks
that ended, and now and then the rows that dead daemons left. The policy itself does no I/O;
while the database is unreachable it goes on deciding from memory, and the next sync catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dinomail.errortext import first_line
from dinomail.store import Store
from dinomail.store.authblocks import (
    Block,
    prune_blocks,
    remove_writer,
    take_releases,
    write_blocks,
)
from dinomail.waiting import wait_for_event
from lookupd.authpolicy import AuthPolicy
from lookupd.metrics import LookupdMetrics

log = logging.getLogger("dinomail.lookupd.authblocks")

DEFAULT_SYNC_INTERVAL = 5.0
# Unblocks by other daemons' rows are read from the previous read less this margin, for the
# transactions that were under way then (as `lookupd.counters.SYNC_OVERLAP`).
RELEASE_OVERLAP = timedelta(seconds=3)
PRUNE_INTERVAL = 600.0

Key = tuple[str, str]  # (kind, key)


class BlockSync:
    def __init__(
        self,
        store: Store,
        policy: AuthPolicy,
        *,
        interval: float = DEFAULT_SYNC_INTERVAL,
        metrics: LookupdMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.interval = interval
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.writer = secrets.token_hex(8)
        # What the table holds of ours: (kind, key) → (failures, end), so unchanged blocks
        # are not written again.
        self._written: dict[Key, tuple[int, datetime]] = {}
        self._last_read: datetime | None = None
        self._last_prune = 0.0
        self._failing = False

    def _current(self) -> dict[Key, Block]:
        # The policy's times are on its own (monotonic) clock: shifted to wall-clock time.
        offset = self.wall_clock() - self.policy.clock()

        def moment(at: float) -> datetime:
            return datetime.fromtimestamp(round(at + offset), UTC)

        return {
            (kind, key): Block(kind, key, failures, moment(last), moment(end))
            for kind, key, failures, last, end in self.policy.blocks()
        }

    async def sync(self) -> None:
        since = None if self._last_read is None else self._last_read - RELEASE_OVERLAP
        # Quiet: the store's listeners (the refresher) must not wake for this.
        async with self.store.write(quiet=True) as conn:
            released, read_at = await take_releases(conn, self.writer, since=since)
            for kind, key in released:
                self.policy.release(kind, key)
                self._written.pop((kind, key), None)
            current = self._current()
            changed = [
                block for name, block in current.items()
                if self._written.get(name) != (block.failures, block.blocked_until)
            ]
            gone = [name for name in self._written if name not in current]
            await write_blocks(conn, self.writer, changed, gone)
            now = self.wall_clock()
            if now - self._last_prune >= PRUNE_INTERVAL:
                await prune_blocks(conn, datetime.fromtimestamp(now, UTC))
                self._last_prune = now
        self._last_read = read_at
        self._written = {name: (block.failures, block.blocked_until)
                         for name, block in current.items()}
        if released:
            log.info("unblocked by an admin: %s", ", ".join(sorted(f"{k} {v}"
                                                                   for k, v in released)))

    async def close(self) -> None:
        """At a clean stop: this daemon's blocks end with it."""
        async with self.store.write(quiet=True) as conn:
            await remove_writer(conn, self.writer)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sync()
            except Exception as error:
                if self.metrics is not None:
                    self.metrics.record_database_error()
                if not self._failing:  # once per outage; the policy keeps deciding
                    log.warning("auth policy blocks: cannot reach the database (%s)",
                                first_line(error))
                self._failing = True
            else:
                self._failing = False
            await wait_for_event(stop, self.interval)
        with contextlib.suppress(Exception):
            await self.close()
