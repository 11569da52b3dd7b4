"""Report intake: the parsers on samples shaped like Google's, Outlook.com's and Yahoo's DMARC
reports and Google's and Microsoft's TLS reports; storing each report once; bombs and junk set
aside with the reason, in bounded memory, without stopping the intake; the LMTP listener's
answers (250 for stored, duplicate and junk; 451 when the database is down)."""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import tracemalloc
import zipfile
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from dinomail.reports.dmarc import parse_dmarc
from dinomail.reports.errors import ReportError
from dinomail.reports.intake import DUPLICATE, SET_ASIDE, STORED, receive
from dinomail.reports.lmtp import LmtpListener
from dinomail.reports.message import parse_message
from dinomail.reports.metrics import ReportMetrics
from dinomail.reports.unpack import MAX_EXPANDED, gunzip, unzip
from dinomail.schema import dmarcrecord, dmarcreport, reportreject, tlspolicy, tlsreport
from dinomail.store import EVERYTHING, Store, aliasdomains
from dinomail.store import reports as reports_store
from tests.support import reports as samples
from tests.support.adminapi import add_domain
from tests.support.reports import lmtp_send

DAY = datetime(2026, 12, 5, tzinfo=UTC)


def test_dmarc_samples_parse() -> None:
    google, = parse_message(samples.google_dmarc())
    assert (google.org_name, google.report_id, google.domain, google.policy) == (
        "google.com", "16934029753861457233", "example.org", "quarantine")
    assert google.date_begin == DAY
    assert [(r.source_ip, r.count, r.dkim, r.spf, r.disposition) for r in google.records] == [
        ("192.0.2.10", 120, "pass", "pass", "none"),
        ("203.0.113.66", 7, "fail", "fail", "quarantine")]
    assert google.records[0].auth_results["dkim"][0]["selector"] == "dm20261201"

    outlook, = parse_message(samples.outlook_dmarc())  # xsi/xsd declarations, .xml.gz
    assert outlook.org_name == "Outlook.com" and outlook.records[0].source_ip == "2001:db8:4:1::25"
    assert outlook.records[0].passed and not outlook.records[1].passed
    assert outlook.records[1].auth_results["spf"] == [
        {"domain": "bulk.example", "scope": "mfrom", "result": "pass"}]

    yahoo, = parse_message(samples.yahoo_dmarc())  # the DMARCbis namespace, zip
    assert yahoo.org_name == "Yahoo" and len(yahoo.records) == 3
    assert [r.source_ip for r in yahoo.records] == ["192.0.2.10", "2001:db8:ff::7",
                                                     "203.0.113.66"]


def test_tlsrpt_samples_parse() -> None:
    google, = parse_message(samples.google_tlsrpt())
    assert (google.org_name, google.domain) == ("Google Inc.", "example.org")
    policy, = google.policies
    assert (policy.policy_type, policy.success_count, policy.failure_count) == ("sts", 230, 4)
    assert [f["result-type"] for f in policy.failures] == ["certificate-expired",
                                                            "validation-failure"]
    microsoft, = parse_message(samples.microsoft_tlsrpt())
    assert microsoft.policies[0].success_count == 57 and microsoft.policies[0].failures == []


def test_parsers_refuse_with_a_reason() -> None:
    for data, reason in (
        (samples.BILLION_LAUGHS, "forbidden XML construct"),
        (b"<feedback><report_metadata>", "not well-formed"),
        (b"<html></html>", "not a DMARC aggregate report"),
        (samples.fixture("google.xml").replace(b"192.0.2.10", b"not-an-ip"), "source_ip"),
        (samples.fixture("google.xml").replace(b"<count>7</count>", b"<count>-7</count>"),
         "count"),
    ):
        with pytest.raises(ReportError, match=reason):
            parse_dmarc(data)
    with pytest.raises(ReportError, match="truncated gzip"):
        gunzip(samples.gzip_bomb(4 * 1024 * 1024)[:1000])
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.xml", b"<feedback/>")
        archive.writestr("b.xml", b"<feedback/>")
    with pytest.raises(ReportError, match="holds one file, this one holds 2"):
        unzip(two.getvalue())
    with pytest.raises(ReportError, match="broken zip"):
        unzip(samples.zipped("a.xml", b"x" * 100)[:60])


def test_bombs_are_refused_fast_in_bounded_memory() -> None:
    for bomb in (samples.zip_bomb(), samples.zip_bomb(honest_header=False),
                 samples.gzip_bomb()):
        tracemalloc.start()
        started = time.monotonic()
        with pytest.raises(ReportError, match="decompression bomb"):
            unzip(bomb) if bomb.startswith(b"PK") else gunzip(bomb)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # The cap's worth of zeros and a chunk or two, never the 10 GB (or 1 GB) it claims.
        assert peak < 2 * MAX_EXPANDED + 8 * 1024 * 1024, peak
        assert elapsed < 10, elapsed


async def _count(store: Store, table: sa.Table) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def test_reports_stored_once(store: Store) -> None:
    await add_domain(store, "example.org")
    metrics = ReportMetrics(__import__("prometheus_client").CollectorRegistry())
    for build in samples.GOOD_REPORTS.values():
        first = await receive(store, build(), sender="x@y.example", metrics=metrics)
        assert first.status == STORED, first.reason
        again = await receive(store, build(), sender="x@y.example", metrics=metrics)
        assert again.status == DUPLICATE
    assert await _count(store, dmarcreport) == 3
    assert await _count(store, dmarcrecord) == 7
    assert await _count(store, tlsreport) == 2
    assert await _count(store, tlspolicy) == 2
    assert await _count(store, reportreject) == 0
    assert metrics.dmarc_messages.labels("example.org", "pass")._value.get() == 120 + 42 + 15
    assert metrics.dmarc_messages.labels("example.org", "fail")._value.get() == 7 + 3 + 2 + 1
    assert metrics.tlsrpt_sessions.labels("example.org", "failure")._value.get() == 4

    everything = reports_store.Filter(EVERYTHING)
    async with store.read() as conn:
        days = await reports_store.dmarc_by_day(conn, everything)
        sources = await reports_store.dmarc_sources(conn, everything)
        failing = await reports_store.dmarc_sources(conn, everything, failing_only=True)
        receivers = await reports_store.tls_by_receiver(conn, everything)
        failures = await reports_store.tls_failure_types(conn, everything)
        totals = sorted(await reports_store.dmarc_totals(conn))
    assert [(d["day"], d["messages"], d["passed"], d["failed"]) for d in days] == [
        ("2026-12-04", 45, 42, 3), ("2026-12-05", 145, 135, 10)]
    assert sources[0]["source_ip"] == "192.0.2.10" and sources[0]["messages"] == 135
    assert sources[0]["reporters"] == ["Yahoo", "google.com"] and sources[0]["pass_rate"] == 1.0
    assert [s["source_ip"] for s in failing] == ["203.0.113.66", "198.51.100.23",
                                                 "2001:db8:ff::7"]
    assert failing[0]["failed"] == 8
    assert receivers == [{"receiver": "Google Inc.", "successful": 230, "failed": 4},
                         {"receiver": "Microsoft Corporation", "successful": 57, "failed": 0}]
    assert failures[0] == {"receiver": "Google Inc.", "result_type": "certificate-expired",
                           "sessions": 3}
    assert totals == [("example.org", "fail", 13), ("example.org", "pass", 177)]


async def test_junk_is_set_aside_and_intake_goes_on(store: Store) -> None:
    await add_domain(store, "example.org")
    expected = {
        "zip bomb": "decompression bomb", "gzip bomb": "decompression bomb",
        "billion laughs": "forbidden XML construct",
        "foreign domain": "not-ours.example, not a domain of this installation",
        "truncated gzip": "truncated gzip", "no attachment": "no report attached",
    }
    for name, build in samples.JUNK.items():
        raw = build()
        outcome = await receive(store, raw, sender="a@attacker.example",
                                recipients=("dmarc-reports@example.org",))
        assert outcome.status == SET_ASIDE, name
        assert expected[name] in outcome.reason, (name, outcome.reason)
        # The intake still works after each.
        good = await receive(store, samples.google_dmarc())
        assert good.status in (STORED, DUPLICATE)
    async with store.read() as conn:
        total, rows = await reports_store.list_set_aside(conn, limit=20, offset=0)
        kept = (await conn.execute(sa.select(reportreject.c.raw, reportreject.c.size)
                                   .order_by(reportreject.c.id))).all()
    assert total == len(samples.JUNK) and all(row["reason"] for row in rows)
    assert rows[0]["recipient"] == "dmarc-reports@example.org"
    # The raw message is kept up to the cap only.
    assert all(len(raw) <= reports_store.MAX_KEPT_RAW and len(raw) == min(size, len(raw))
               for raw, size in kept)
    assert any(size > reports_store.MAX_KEPT_RAW for _, size in kept)
    assert await _count(store, dmarcreport) == 1


async def test_lmtp_answers(store: Store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    await add_domain(store, "example.org")
    listener = LmtpListener(store, "127.0.0.1:0")
    await listener.start()
    try:
        port = listener.port
        assert port
        recipients = ["dmarc-reports@example.org", "tls-reports@example.org"]
        for build, text in ((samples.google_dmarc, b"Report stored"),
                            (samples.google_dmarc, b"Report already stored"),
                            (samples.truncated_gzip, b"Set aside: truncated gzip data")):
            answers = await asyncio.to_thread(lmtp_send, port, build(), recipients)
            assert list(answers) == recipients
            for code, reply in answers.values():
                assert code == 250 and text in reply, reply
    finally:
        await listener.stop()

    # The database gone: 451, so Postfix keeps the report and tries again.
    broken = Store(f"sqlite:///{tmp_path}/missing/nowhere.sqlite3")
    listener = LmtpListener(broken, "127.0.0.1:0")
    await listener.start()
    try:
        answers = await asyncio.to_thread(lmtp_send, listener.port, samples.google_dmarc(),
                                          ["dmarc-reports@example.org"])
        code, reply = answers["dmarc-reports@example.org"]
        assert code == 451 and b"try again" in reply
    finally:
        await listener.stop()
        await broken.close()


async def test_a_report_about_an_alias_domain_belongs_to_its_target(store: Store) -> None:
    target = await add_domain(store, "example.org")
    async with store.write() as conn:
        await aliasdomains.create(conn, "test", EVERYTHING,
                                  {"name": "example.net", "target_domain_id": target["id"]})
    xml = samples.fixture("google.xml").replace(b"<domain>example.org</domain>",
                                                b"<domain>example.net</domain>")
    message = samples.junk_message(gzip.compress(xml), "gzip", "google.com!example.net.xml.gz")
    outcome = await receive(store, message)
    assert outcome.status == STORED
    async with store.read() as conn:
        row = (await conn.execute(sa.select(dmarcreport.c.domain_id,
                                            dmarcreport.c.report_domain))).one()
    assert tuple(row) == (target["id"], "example.net")
