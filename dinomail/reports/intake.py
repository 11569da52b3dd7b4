"""One report message → its reports stored, or the message set aside with the reason.

Whatever the message holds, the intake answers: stored, a duplicate (already stored), or set
aside (malformed, a bomb, a foreign domain, a bug of ours). Only a database failure is an
error (`StoreError` or SQLAlchemy's), which the LMTP listener turns into a temporary failure so
Postfix tries again later; junk is never retried forever.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from dinomail.reports.dmarc import DmarcReport
from dinomail.reports.errors import ReportError
from dinomail.reports.message import Report, parse_message
from dinomail.reports.metrics import ReportMetrics
from dinomail.store import Store
from dinomail.store import reports as reports_store

log = logging.getLogger("dinomail.reports")

STORED, DUPLICATE, SET_ASIDE = "stored", "duplicate", "set_aside"


@dataclass(slots=True)
class Outcome:
    status: str
    reason: str = ""
    reports: list[Report] = field(default_factory=list)


def _kind(report: Report) -> str:
    return "dmarc" if isinstance(report, DmarcReport) else "tlsrpt"


def _parse(raw: bytes) -> list[Report]:
    try:
        return parse_message(raw)
    except ReportError:
        raise
    except RecursionError:
        raise ReportError("nested too deeply") from None
    except Exception as error:  # a bug of ours must not stop the intake either
        log.exception("report parser failed")
        raise ReportError(f"unexpected error while parsing ({type(error).__name__})") from None


async def receive(
    store: Store, raw: bytes, *, sender: str = "", recipients: tuple[str, ...] = (),
    metrics: ReportMetrics | None = None,
) -> Outcome:
    recipient = ", ".join(recipients)
    try:
        # Decompressing and parsing take up to a few hundred milliseconds: off the event loop.
        reports = await asyncio.to_thread(_parse, raw)
        async with store.read() as conn:
            known = await reports_store.domain_ids(conn, [report.domain for report in reports])
        foreign = sorted({report.domain for report in reports} - set(known))
        if foreign:
            raise ReportError(f"a report about {', '.join(foreign)}, not a domain of this "
                              "installation")
    except ReportError as error:
        async with store.write() as conn:
            await reports_store.set_aside(conn, sender, recipient, str(error), raw)
        log.info("report from %s set aside: %s", sender or "<>", error)
        if metrics:
            metrics.received.labels("unknown", SET_ASIDE).inc()
        return Outcome(SET_ASIDE, str(error))
    stored = []
    async with store.write() as conn:
        for report in reports:
            domain_id = known[report.domain]
            saved = (await reports_store.save_dmarc(conn, domain_id, report)
                     if isinstance(report, DmarcReport)
                     else await reports_store.save_tls(conn, domain_id, report))
            if saved:
                stored.append(report)
    if metrics:
        for report in reports:
            if report in stored:
                metrics.stored(report)
            else:
                metrics.received.labels(_kind(report), DUPLICATE).inc()
    if not stored:
        return Outcome(DUPLICATE, "already stored", reports)
    log.info("stored %d report(s) from %s", len(stored), sender or "<>")
    return Outcome(STORED, "", stored)
