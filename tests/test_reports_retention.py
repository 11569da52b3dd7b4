"""Retention of reports (REPORTS_RETENTION_DAYS) and the service the admin API's process runs:
the LMTP listener from the setting, the clean-up at start and then daily."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import prometheus_client
import sqlalchemy as sa

from dinomail.reports.intake import receive
from dinomail.reports.metrics import ReportMetrics
from dinomail.reports.service import ReportsService, clean_up
from dinomail.schema import dmarcrecord, dmarcreport, reportreject, tlspolicy, tlsreport
from dinomail.settings import Settings
from dinomail.store import Store
from dinomail.store.common import now
from tests.support import reports as samples
from tests.support.adminapi import add_domain
from tests.support.ports import free_port
from tests.support.reports import lmtp_send


async def _counts(store: Store) -> dict[str, int]:
    async with store.read() as conn:
        return {table.name: int(await conn.scalar(
            sa.select(sa.func.count()).select_from(table)) or 0)
            for table in (dmarcreport, dmarcrecord, tlsreport, tlspolicy, reportreject)}


async def test_clean_up_deletes_old_reports_only(store: Store) -> None:
    await add_domain(store, "example.org")
    for build in samples.GOOD_REPORTS.values():
        await receive(store, build())
    await receive(store, samples.truncated_gzip())
    before = await _counts(store)
    assert await clean_up(store, 0) == {}  # 0: kept for ever
    assert await _counts(store) == before

    # Outlook.com's report ended 40 days ago, the others yesterday; the set-aside message
    # came 40 days ago.
    async with store.write() as conn:
        for table in (dmarcreport, tlsreport):
            await conn.execute(table.update().values(date_end=now() - timedelta(days=1)))
        await conn.execute(dmarcreport.update().where(dmarcreport.c.org_name == "Outlook.com")
                           .values(date_end=now() - timedelta(days=40)))
        await conn.execute(reportreject.update().values(received_at=now() - timedelta(days=40)))
    deleted = await clean_up(store, 30)
    assert deleted == {"dinomail_dmarcreport": 1, "dinomail_tlsreport": 0,
                       "dinomail_reportreject": 1}
    after = await _counts(store)
    # Its two records went with it.
    assert after["dinomail_dmarcreport"] == 2 and after["dinomail_dmarcrecord"] == 5
    assert after["dinomail_tlsreport"] == 2 and after["dinomail_tlspolicy"] == 2
    assert after["dinomail_reportreject"] == 0


async def test_service_runs_the_listener_and_the_clean_up(store: Store) -> None:
    await add_domain(store, "example.org")
    await receive(store, samples.outlook_dmarc())
    async with store.write() as conn:
        await conn.execute(dmarcreport.update().values(date_end=now() - timedelta(days=400)))
    port = free_port()
    settings = Settings(REPORTS_LMTP_LISTEN=f"127.0.0.1:{port}", REPORTS_RETENTION_DAYS=365)
    service = ReportsService(store, settings, ReportMetrics(prometheus_client.CollectorRegistry()))
    await service.start()
    try:
        for _ in range(100):  # the clean-up runs at start
            if (await _counts(store))["dinomail_dmarcreport"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await _counts(store))["dinomail_dmarcreport"] == 0
        answers = await asyncio.to_thread(lmtp_send, port, samples.google_dmarc(),
                                          ["dmarc-reports@example.org"])
        assert answers["dmarc-reports@example.org"][0] == 250
        assert (await _counts(store))["dinomail_dmarcreport"] == 1
        # The stored totals at start (Outlook.com's 42, cleaned up since: counters never go
        # down) and Google's 120.
        assert service.metrics.dmarc_messages.labels("example.org", "pass")._value.get() == 162
    finally:
        await service.stop()
    # Stopped: nothing listens any more.
    try:
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        raise AssertionError("the listener still accepts connections")
    except OSError:
        pass
