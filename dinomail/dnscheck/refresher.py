"""The background DNS checker, run by the admin API's process.

It checks a domain when someone asked (`request_run`), when it was never checked, when what its
checks compare with changed (a new DKIM key, another MX host: noticed by a fingerprint, so an
edit made in `psql` counts too), when its results are older than DNS_CHECK_INTERVAL, and sooner
than that when a check could not be made. It wakes after every write of the store in this
process, and at least every `SCAN_EVERY` seconds. At most DNS_CHECK_CONCURRENCY domains are
checked at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dinomail.dnscheck.metrics import DnsCheckMetrics
from dinomail.dnscheck.runner import (
    DomainReport,
    Target,
    check_and_save,
    is_due,
    run_now,
    target_of,
)
from dinomail.settings import Settings
from dinomail.store import Store
from dinomail.store import dns as dns_store
from dinomail.store.common import now
from dinomail.store.scope import Scope
from dinomail.waiting import wait_for_event

log = logging.getLogger("dinomail.dnscheck")

# Seconds between looks at the database when nothing wakes the checker.
SCAN_EVERY = 60.0
# After a write wakes it, wait this long: a burst of writes (an import) makes one pass.
QUIET = 1.0
# A check that could not be made (DNS timeout) is tried again after this many seconds.
RETRY_AFTER = 600.0
# Domains checked per pass; more due domains make the next pass start at once.
BATCH = 100


class DnsRefresher:
    def __init__(
        self, store: Store, settings: Settings, metrics: DnsCheckMetrics | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._store.on_write(self.wake)
            self._listening = True
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dns-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._woken.set()

    async def check_now(self, scope: Scope, domain_id: int) -> DomainReport:
        """Check a domain the caller sees at once and return the new report (the scan pages'
        "update" buttons); NotFound for any other domain."""
        return await run_now(self._store, self._settings, scope, domain_id, self._metrics)

    async def run_once(self) -> int:
        """One pass: check what is due (up to BATCH domains); returns how many were checked."""
        due = await self._due()
        semaphore = asyncio.Semaphore(self._settings.DNS_CHECK_CONCURRENCY)

        async def check(target: Target) -> None:
            async with semaphore:
                await check_and_save(self._store, self._settings, target, self._metrics)

        await asyncio.gather(*(check(target) for target in due))
        if self._metrics is not None:
            async with self._store.read() as conn:
                self._metrics.set_domain_counts(await dns_store.status_counts(conn))
            self._metrics.last_pass.set(time.time())
        return len(due)

    async def _due(self) -> list[Target]:
        moment = now()
        requested: list[Target] = []
        others: list[tuple[float, Target]] = []
        after_id = 0
        async with self._store.read() as conn:
            while True:
                rows = await dns_store.check_targets(conn, after_id=after_id)
                if not rows:
                    break
                after_id = rows[-1]["id"]
                for row in rows:
                    target = target_of(row, self._settings)
                    if not is_due(row, target, moment, self._settings, RETRY_AFTER):
                        continue
                    if row["requested_at"] is not None:
                        requested.append(target)
                    else:
                        # Never checked first, then the oldest results.
                        checked = row["checked_at"]
                        others.append((checked.timestamp() if checked else 0.0, target))
        others.sort(key=lambda item: item[0])
        return (requested + [target for _, target in others])[:BATCH]

    async def _run(self) -> None:
        while True:
            checked = 0
            try:
                checked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The database is down or a check failed unexpectedly; try again later.
                log.warning("DNS checks: pass failed: %s", error, exc_info=log.isEnabledFor(
                    logging.DEBUG))
                if self._metrics is not None:
                    self._metrics.failed_passes.inc()
            if checked >= BATCH:
                continue
            await wait_for_event(self._woken, SCAN_EVERY)
            if self._woken.is_set():
                self._woken.clear()
                await asyncio.sleep(QUIET)
                self._woken.clear()
