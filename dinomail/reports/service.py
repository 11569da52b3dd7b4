"""What the admin API's process runs for reports: the LMTP listener (when REPORTS_LMTP_LISTEN is
set) and the daily clean-up of reports older than REPORTS_RETENTION_DAYS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from dinomail.reports.lmtp import LmtpListener
from dinomail.reports.metrics import ReportMetrics
from dinomail.settings import Settings
from dinomail.store import Store
from dinomail.store import reports as reports_store
from dinomail.store.common import now

log = logging.getLogger("dinomail.reports")

CLEANUP_EVERY = 24 * 3600.0
# After a failed clean-up (database down), try again sooner than a day.
RETRY_AFTER = 600.0


async def clean_up(store: Store, retention_days: int) -> dict[str, int]:
    """Delete the reports and messages set aside older than the retention; {} when kept for
    ever (0 days)."""
    if retention_days <= 0:
        return {}
    async with store.write() as conn:
        return await reports_store.delete_older_than(
            conn, now() - timedelta(days=retention_days))


class ReportsService:
    def __init__(self, store: Store, settings: Settings, metrics: ReportMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.listener: LmtpListener | None = None
        self._cleanup: asyncio.Task[None] | None = None

    async def load_metrics(self) -> None:
        try:
            async with self.store.read() as conn:
                dmarc = await reports_store.dmarc_totals(conn)
                tls = await reports_store.tls_totals(conn)
        except Exception as error:  # the database: the counters start at zero then
            log.warning("report metrics start from zero: %s", error)
            return
        self.metrics.load(dmarc, tls)

    async def start(self) -> None:
        await self.load_metrics()
        if self.settings.REPORTS_LMTP_LISTEN:
            self.listener = LmtpListener(self.store, self.settings.REPORTS_LMTP_LISTEN,
                                         self.metrics)
            await self.listener.start()
            log.info("report intake (LMTP) listening on %s", self.settings.REPORTS_LMTP_LISTEN)
        self._cleanup = asyncio.create_task(self._clean_up_daily())

    async def _clean_up_daily(self) -> None:
        while True:
            delay = CLEANUP_EVERY
            try:
                deleted = await clean_up(self.store, self.settings.REPORTS_RETENTION_DAYS)
                if any(deleted.values()):
                    log.info("old reports deleted: %s", deleted)
            except Exception as error:
                log.warning("clean-up of old reports failed: %s", error)
                delay = RETRY_AFTER
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
            self._cleanup = None
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
