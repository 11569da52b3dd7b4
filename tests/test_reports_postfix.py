"""Reports delivered through a real Postfix, configured from the shipped conf/postfix/main.cf
and conf/postfix/reports.cf (ports adapted), to DinoMail's LMTP listener: the samples of each
receiver stored once though sent twice, and bombs and junk answered 250 and set aside (so
Postfix neither retries nor bounces them), the intake working after each."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from dinomail import migrate
from dinomail.reports.lmtp import LmtpListener
from dinomail.schema import dmarcreport, reportreject, tlsreport
from dinomail.store import EVERYTHING, Store, domains, mailboxes
from tests.support import reports as samples
from tests.support.adminapi import add_admin, api_client
from tests.support.dovecot import LookupdThread, lookupd_settings_for_dovecot, make_root
from tests.support.ports import free_port
from tests.support.postfix import PostfixInstance, have_postfix

pytestmark = [
    pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix needs root"),
]

SHIPPED_REPORTS_CF = Path(__file__).parent.parent / "conf" / "postfix" / "reports.cf"
SHIPPED_LMTP = "inet:127.0.0.1:10030"
REPORT_ADDRESS = "dmarc-reports@example.org"
TIMEOUT = 30.0


@dataclass
class ReportStack:
    root: Path
    url: str
    lookupd: LookupdThread
    postfix: PostfixInstance

    def send(self, message: bytes, sender: str = "reporter@receiver.example") -> None:
        with smtplib.SMTP("127.0.0.1", self.postfix.smtp_port, timeout=TIMEOUT) as client:
            client.sendmail(sender, [REPORT_ADDRESS], message)

    def count(self, table: sa.Table) -> int:
        async def count(store: Store) -> int:
            async with store.read() as conn:
                return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)

        return self.lookupd.call(count)

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.postfix.log_text()}")
            time.sleep(0.1)

    def delivered(self) -> list[str]:
        """Postfix's log lines of deliveries to the report address."""
        return [line for line in self.postfix.log_text().splitlines()
                if f"to=<{REPORT_ADDRESS}>" in line and "status=" in line]


def shipped_transport_line(lmtp: str) -> str:
    lines = [line for line in SHIPPED_REPORTS_CF.read_text().splitlines()
             if line.startswith("transport_maps")]
    assert len(lines) == 1 and SHIPPED_LMTP in lines[0] and REPORT_ADDRESS in lines[0]
    return lines[0].replace(SHIPPED_LMTP, lmtp)


async def _migrate(url: str) -> None:
    store = Store(url)
    try:
        await migrate.upgrade(store.engine)
    finally:
        await store.close()


async def _fill(store: Store) -> None:
    async with store.write() as conn:
        await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
        await mailboxes.create(conn, "test", EVERYTHING, {"email": REPORT_ADDRESS},
                               password_hash="{PLAIN}unused")


@pytest.fixture(scope="module")
def report_stack() -> Iterator[ReportStack]:
    root = make_root("dinomail-reports-")
    stops: list[Callable[[], None]] = []
    try:
        url = f"sqlite:///{root / 'dinomail.sqlite3'}"
        asyncio.run(_migrate(url))
        settings = lookupd_settings_for_dovecot(root, url)
        lookupd = LookupdThread(settings)
        stops.append(lookupd.stop)
        lookupd.start()
        lookupd.call(_fill)
        daemon = lookupd.daemon
        assert daemon is not None
        lookupd.wait_until(lambda: daemon.holder.current is not None
                           and daemon.holder.current.row_counts()["mailboxes"] == 1,
                           "the report mailbox in the snapshot")
        lmtp_port = free_port()
        listener = LmtpListener(lookupd.store, f"127.0.0.1:{lmtp_port}")  # type: ignore[arg-type]
        lookupd.call(lambda store: listener.start())
        stops.append(lambda: lookupd.call(lambda store: listener.stop()))
        postfix = PostfixInstance(
            root / "postfix", smtp_port=free_port(), socketmap=f"inet:{settings.SOCKETMAP_LISTEN}",
            extra_main_cf=shipped_transport_line(f"inet:127.0.0.1:{lmtp_port}") + "\n",
        )
        stops.append(postfix.stop)
        postfix.start()
        yield ReportStack(root, url, lookupd, postfix)
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(root, ignore_errors=True)


def test_reports_through_postfix_stored_once(report_stack: ReportStack) -> None:
    stack = report_stack
    for _round in range(2):
        for build in samples.GOOD_REPORTS.values():
            stack.send(build())
    stack.wait_for(lambda: len([line for line in stack.delivered() if "status=sent" in line])
                   >= 2 * len(samples.GOOD_REPORTS), "every delivery")
    sent = [line for line in stack.delivered() if "status=sent" in line]
    assert all("relay=127.0.0.1[127.0.0.1]" in line for line in sent)
    replies = " ".join(sent)
    assert replies.count("Report stored") == len(samples.GOOD_REPORTS)
    assert replies.count("Report already stored") == len(samples.GOOD_REPORTS)
    assert stack.count(dmarcreport) == 3 and stack.count(tlsreport) == 2
    assert stack.count(reportreject) == 0


def test_junk_through_postfix_is_set_aside(report_stack: ReportStack) -> None:
    stack = report_stack
    before = len(stack.delivered())
    for build in samples.JUNK.values():
        stack.send(build())
    stack.send(samples.yahoo_dmarc())  # and the intake still answers
    expected = len(samples.JUNK) + 1
    stack.wait_for(lambda: len(stack.delivered()) >= before + expected, "the junk's deliveries")
    lines = stack.delivered()[before:]
    # Every one accepted for good: nothing deferred for a retry, nothing bounced.
    assert all("status=sent" in line for line in lines), lines
    assert len([line for line in lines if "Set aside" in line]) == len(samples.JUNK)
    reasons = " ".join(re.findall(r"Set aside: ([^)]*)", " ".join(lines)))
    for reason in ("decompression bomb", "forbidden XML construct", "not-ours.example",
                   "truncated gzip", "no report attached"):
        assert reason in reasons, reasons
    assert stack.count(reportreject) == len(samples.JUNK)
    assert stack.count(dmarcreport) == 3


def test_delivered_reports_in_the_api(report_stack: ReportStack) -> None:
    """What Postfix delivered, as the API shows it (the pages are drawn from the same queries:
    tests/test_reports_pages.py)."""

    async def read() -> tuple[dict, dict]:
        store = Store(report_stack.url)
        try:
            root = await add_admin(store, "root", superadmin=True)
            async with api_client(store) as client:
                listed = (await client.get("/api/dmarcreport/?domain=example.org",
                                           headers=root.headers)).json()
                stats = (await client.get("/api/reportstats/", headers=root.headers)).json()
            return listed, stats
        finally:
            await store.close()

    listed, stats = asyncio.run(read())
    assert sorted(item["org_name"] for item in listed["objects"]) == [
        "Outlook.com", "Yahoo", "google.com"]
    assert sum(day["messages"] for day in stats["dmarc_by_day"]) == 127 + 45 + 18
    assert {row["receiver"] for row in stats["tls_by_receiver"]} == {
        "Google Inc.", "Microsoft Corporation"}
