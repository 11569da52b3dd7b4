"""DMARC aggregate and SMTP TLS reports (`dinomail_dmarcreport`, `dinomail_dmarcrecord`,
`dinomail_tlsreport`, `dinomail_tlspolicy`) and the messages set aside
(`dinomail_reportreject`): storing what the intake parsed, the numbers the API, pages and
metrics show, and the clean-up of old reports.

Every read takes a `Scope`: a domain admin's numbers come from their domains only. A report is
stored once per (org_name, report_id), whatever how many times it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.reports.dmarc import DmarcReport
from dinomail.reports.tlsrpt import TlsReport
from dinomail.schema import (
    aliasdomain,
    dmarcrecord,
    dmarcreport,
    reportreject,
    tlspolicy,
    tlsreport,
    virtualdomain,
)
from dinomail.store.common import Row, fetch_all, fetch_one, now
from dinomail.store.scope import Scope

# What is kept of a message set aside: enough to see what it was, not a way to fill the disk.
MAX_KEPT_RAW = 256 * 1024
# Rows per INSERT of records (below SQLite's variable limit with 9 columns).
INSERT_BATCH = 100
PASS, FAIL = "pass", "fail"


def _insert(conn: AsyncConnection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


async def domain_ids(conn: AsyncConnection, names: Iterable[str]) -> dict[str, int]:
    """Those of `names` that are domains of this installation, with the id of the domain their
    reports belong to: the domain's own, or for an alias domain its target's."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.select(virtualdomain.c.name, virtualdomain.c.id)
        .where(virtualdomain.c.name.in_(wanted))
        .union_all(sa.select(aliasdomain.c.name, aliasdomain.c.target_domain_id)
                   .where(aliasdomain.c.name.in_(wanted)))
    )
    return {name: domain_id for name, domain_id in rows}


async def _insert_in_batches(conn: AsyncConnection, table: sa.Table, rows: list[Row]) -> None:
    """The rows of a report, INSERT_BATCH to a statement (SQLite limits its variables)."""
    for start in range(0, len(rows), INSERT_BATCH):
        await conn.execute(table.insert(), rows[start:start + INSERT_BATCH])


async def save_dmarc(conn: AsyncConnection, domain_id: int, report: DmarcReport) -> bool:
    """Store the report and its records; False if it was stored before (nothing written)."""
    statement = _insert(conn)(dmarcreport).values(
        domain_id=domain_id, report_domain=report.domain, org_name=report.org_name,
        report_id=report.report_id, email=report.email, date_begin=report.date_begin,
        date_end=report.date_end, policy=report.policy, received_at=now(),
    ).on_conflict_do_nothing(index_elements=["org_name", "report_id"]).returning(dmarcreport.c.id)
    row_id = (await conn.execute(statement)).scalar()
    if row_id is None:
        return False
    rows = [{"report_id": row_id, "source_ip": record.source_ip, "count": record.count,
             "disposition": record.disposition, "dkim": record.dkim, "spf": record.spf,
             "header_from": record.header_from,
             "auth_results": json.dumps(record.auth_results, sort_keys=True)}
            for record in report.records]
    await _insert_in_batches(conn, dmarcrecord, rows)
    return True


async def save_tls(conn: AsyncConnection, domain_id: int, report: TlsReport) -> bool:
    statement = _insert(conn)(tlsreport).values(
        domain_id=domain_id, report_domain=report.domain, org_name=report.org_name,
        report_id=report.report_id, contact=report.contact, date_begin=report.date_begin,
        date_end=report.date_end, received_at=now(),
    ).on_conflict_do_nothing(index_elements=["org_name", "report_id"]).returning(tlsreport.c.id)
    row_id = (await conn.execute(statement)).scalar()
    if row_id is None:
        return False
    rows = [{"report_id": row_id, "policy_type": policy.policy_type,
             "policy_domain": policy.policy_domain, "success_count": policy.success_count,
             "failure_count": policy.failure_count,
             "failures": json.dumps(policy.failures, sort_keys=True)}
            for policy in report.policies]
    await _insert_in_batches(conn, tlspolicy, rows)
    return True


async def set_aside(
    conn: AsyncConnection, sender: str, recipient: str, reason: str, raw: bytes
) -> int:
    """Keep a message that was not stored as a report, with why (and its start)."""
    result = await conn.execute(reportreject.insert().values(
        received_at=now(), sender=sender[:320], recipient=recipient[:320],
        reason=reason[:500], size=len(raw), raw=raw[:MAX_KEPT_RAW],
    ).returning(reportreject.c.id))
    return int(result.scalar_one())


# --- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """Which reports: those of visible domains, of one domain, and starting in a period."""

    scope: Scope
    domain_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        clauses = [self.scope.filter(table.c.domain_id)]
        if self.domain_id is not None:
            clauses.append(table.c.domain_id == self.domain_id)
        if self.since is not None:
            clauses.append(table.c.date_begin >= self.since)
        if self.until is not None:
            clauses.append(table.c.date_begin < self.until)
        return clauses


def _passed() -> sa.ColumnElement[bool]:
    return sa.or_(dmarcrecord.c.dkim == PASS, dmarcrecord.c.spf == PASS)


def _report_query(table: sa.Table, where: Filter) -> sa.Select:
    return (
        sa.select(table, virtualdomain.c.name.label("domain"))
        .join(virtualdomain, virtualdomain.c.id == table.c.domain_id)
        .where(*where.where(table))
    )


async def list_reports(
    conn: AsyncConnection, kind: str, where: Filter, *, limit: int, offset: int
) -> tuple[int, list[Row]]:
    """A page of DMARC (`kind` dmarc) or TLS (`tls`) reports, newest first, and the total."""
    table = dmarcreport if kind == "dmarc" else tlsreport
    query = _report_query(table, where)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = await fetch_all(conn, query.order_by(table.c.date_begin.desc(), table.c.id.desc())
                           .limit(limit).offset(offset))
    if kind == "dmarc":
        await _attach_dmarc_totals(conn, rows)
    else:
        await _attach_tls_policies(conn, rows)
    return int(total or 0), rows


async def get_report(conn: AsyncConnection, kind: str, scope: Scope, report_id: int) -> Row:
    """One report of a visible domain, with its records or policies; NotFound otherwise."""
    table = dmarcreport if kind == "dmarc" else tlsreport
    row = await fetch_one(conn, _report_query(table, Filter(scope)).where(table.c.id == report_id),
                          "report")
    if kind == "dmarc":
        await _attach_dmarc_totals(conn, [row])
        records = await fetch_all(conn, sa.select(dmarcrecord).where(
            dmarcrecord.c.report_id == report_id).order_by(dmarcrecord.c.count.desc(),
                                                           dmarcrecord.c.id))
        for record in records:
            record["auth_results"] = json.loads(record["auth_results"])
            record.pop("report_id")
        row["records"] = records
    else:
        await _attach_tls_policies(conn, [row])
    return row


async def _attach_dmarc_totals(conn: AsyncConnection, rows: list[Row]) -> None:
    ids = [row["id"] for row in rows]
    totals: dict[int, tuple[int, int]] = {}
    if ids:
        query = (
            sa.select(dmarcrecord.c.report_id, sa.func.sum(dmarcrecord.c.count),
                      sa.func.sum(sa.case((_passed(), dmarcrecord.c.count), else_=0)))
            .where(dmarcrecord.c.report_id.in_(ids)).group_by(dmarcrecord.c.report_id)
        )
        totals = {row[0]: (int(row[1] or 0), int(row[2] or 0))
                  for row in await conn.execute(query)}
    for row in rows:
        messages, passed = totals.get(row["id"], (0, 0))
        row["messages"], row["passed"], row["failed"] = messages, passed, messages - passed


async def _attach_tls_policies(conn: AsyncConnection, rows: list[Row]) -> None:
    ids = [row["id"] for row in rows]
    policies: dict[int, list[Row]] = {row_id: [] for row_id in ids}
    if ids:
        for policy in await fetch_all(conn, sa.select(tlspolicy).where(
                tlspolicy.c.report_id.in_(ids)).order_by(tlspolicy.c.id)):
            policy["failures"] = json.loads(policy["failures"])
            policies[policy.pop("report_id")].append(policy)
    for row in rows:
        row["policies"] = policies[row["id"]]
        row["successful_sessions"] = sum(item["success_count"] for item in row["policies"])
        row["failed_sessions"] = sum(item["failure_count"] for item in row["policies"])


def _day(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", column)


async def dmarc_by_day(conn: AsyncConnection, where: Filter) -> list[Row]:
    """Messages per day (the day the report's period begins, UTC): passing DMARC, failing it,
    and passing aligned DKIM and aligned SPF."""
    day = _day(dmarcreport.c.date_begin, conn.dialect.name).label("day")
    count = dmarcrecord.c.count
    query = (
        sa.select(
            day, sa.func.sum(count).label("messages"),
            sa.func.sum(sa.case((_passed(), count), else_=0)).label("passed"),
            sa.func.sum(sa.case((dmarcrecord.c.dkim == PASS, count), else_=0)).label("dkim"),
            sa.func.sum(sa.case((dmarcrecord.c.spf == PASS, count), else_=0)).label("spf"),
        )
        .select_from(dmarcrecord.join(dmarcreport, dmarcreport.c.id == dmarcrecord.c.report_id))
        .where(*where.where(dmarcreport)).group_by(day).order_by(day)
    )
    rows = []
    for row in await conn.execute(query):
        messages, passed = int(row.messages or 0), int(row.passed or 0)
        rows.append({"day": row.day, "messages": messages, "passed": passed,
                     "failed": messages - passed, "dkim_aligned": int(row.dkim or 0),
                     "spf_aligned": int(row.spf or 0)})
    return rows


async def dmarc_sources(
    conn: AsyncConnection, where: Filter, *, failing_only: bool = False, limit: int = 20
) -> list[Row]:
    """Sending sources ranked by volume: messages, how many passed DMARC, and which
    organisations reported them. `failing_only`: the sources with failing messages, ranked by
    failures."""
    count = dmarcrecord.c.count
    failed = sa.func.sum(sa.case((_passed(), 0), else_=count))
    query = (
        sa.select(
            dmarcrecord.c.source_ip, sa.func.sum(count).label("messages"),
            sa.func.sum(sa.case((_passed(), count), else_=0)).label("passed"),
            failed.label("failed"),
        )
        .select_from(dmarcrecord.join(dmarcreport, dmarcreport.c.id == dmarcrecord.c.report_id))
        .where(*where.where(dmarcreport)).group_by(dmarcrecord.c.source_ip)
    )
    if failing_only:
        query = query.having(failed > 0).order_by(failed.desc(), dmarcrecord.c.source_ip)
    else:
        query = query.order_by(sa.func.sum(count).desc(), dmarcrecord.c.source_ip)
    rows = [dict(row) for row in (await conn.execute(query.limit(limit))).mappings()]
    if rows:
        orgs = (
            sa.select(dmarcrecord.c.source_ip, dmarcreport.c.org_name).distinct()
            .select_from(dmarcrecord.join(dmarcreport,
                                          dmarcreport.c.id == dmarcrecord.c.report_id))
            .where(*where.where(dmarcreport),
                   dmarcrecord.c.source_ip.in_([row["source_ip"] for row in rows]))
        )
        by_source: dict[str, set[str]] = {}
        for source, org in await conn.execute(orgs):
            by_source.setdefault(source, set()).add(org)
    for row in rows:
        row["messages"], row["passed"], row["failed"] = (
            int(row["messages"] or 0), int(row["passed"] or 0), int(row["failed"] or 0))
        row["pass_rate"] = row["passed"] / row["messages"] if row["messages"] else 0.0
        row["reporters"] = sorted(by_source.get(row["source_ip"], ()))
    return rows


async def tls_by_receiver(conn: AsyncConnection, where: Filter) -> list[Row]:
    """TLS sessions per reporting organisation (the sending side, which saw them succeed or
    fail) and the failures per result type."""
    query = (
        sa.select(tlsreport.c.org_name, sa.func.sum(tlspolicy.c.success_count).label("ok"),
                  sa.func.sum(tlspolicy.c.failure_count).label("failed"))
        .select_from(tlspolicy.join(tlsreport, tlsreport.c.id == tlspolicy.c.report_id))
        .where(*where.where(tlsreport)).group_by(tlsreport.c.org_name)
        .order_by(sa.func.sum(tlspolicy.c.success_count + tlspolicy.c.failure_count).desc(),
                  tlsreport.c.org_name)
    )
    rows = [{"receiver": row.org_name, "successful": int(row.ok or 0),
             "failed": int(row.failed or 0)} for row in await conn.execute(query)]
    return rows


async def tls_failure_types(conn: AsyncConnection, where: Filter) -> list[Row]:
    """Failed sessions per (reporting organisation, result type), most first."""
    query = (
        sa.select(tlsreport.c.org_name, tlspolicy.c.failures)
        .select_from(tlspolicy.join(tlsreport, tlsreport.c.id == tlspolicy.c.report_id))
        .where(*where.where(tlsreport), tlspolicy.c.failure_count > 0)
    )
    totals: dict[tuple[str, str], int] = {}
    for org, failures in await conn.execute(query):
        for failure in json.loads(failures):
            key = (org, str(failure.get("result-type", "unknown")))
            totals[key] = totals.get(key, 0) + int(failure.get("failed-session-count", 0))
    return [{"receiver": org, "result_type": kind, "sessions": count}
            for (org, kind), count in sorted(totals.items(), key=lambda item: (-item[1],
                                                                               item[0]))]


async def dmarc_totals(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """Messages per (domain, pass|fail) over every stored report: the metrics' start."""
    result = sa.case((_passed(), PASS), else_=FAIL)
    query = (
        sa.select(virtualdomain.c.name, result, sa.func.sum(dmarcrecord.c.count))
        .select_from(dmarcrecord.join(dmarcreport, dmarcreport.c.id == dmarcrecord.c.report_id)
                     .join(virtualdomain, virtualdomain.c.id == dmarcreport.c.domain_id))
        .group_by(virtualdomain.c.name, result)
    )
    return [(name, kind, int(count or 0)) for name, kind, count in await conn.execute(query)]


async def tls_totals(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """Sessions per (domain, success|failure) over every stored report."""
    query = (
        sa.select(virtualdomain.c.name, sa.func.sum(tlspolicy.c.success_count),
                  sa.func.sum(tlspolicy.c.failure_count))
        .select_from(tlspolicy.join(tlsreport, tlsreport.c.id == tlspolicy.c.report_id)
                     .join(virtualdomain, virtualdomain.c.id == tlsreport.c.domain_id))
        .group_by(virtualdomain.c.name)
    )
    totals = []
    for name, ok, failed in await conn.execute(query):
        totals += [(name, "success", int(ok or 0)), (name, "failure", int(failed or 0))]
    return totals


async def list_set_aside(
    conn: AsyncConnection, *, limit: int, offset: int
) -> tuple[int, list[Row]]:
    """Messages set aside, newest first, without their raw content (superadmins only: a
    message set aside may be about any domain, or none)."""
    columns = [column for column in reportreject.c if column.name != "raw"]
    total = await conn.scalar(sa.select(sa.func.count()).select_from(reportreject))
    rows = await fetch_all(conn, sa.select(*columns).order_by(
        reportreject.c.received_at.desc(), reportreject.c.id.desc()).limit(limit).offset(offset))
    return int(total or 0), rows


# --- retention ------------------------------------------------------------------------------------


async def delete_older_than(conn: AsyncConnection, moment: datetime) -> dict[str, int]:
    """Delete reports whose period ended before `moment`, and messages set aside before it.
    Records and policies go with their report (explicitly: SQLite may run without foreign
    keys enforced)."""
    deleted = {}
    for table, child in ((dmarcreport, dmarcrecord), (tlsreport, tlspolicy)):
        old = sa.select(table.c.id).where(table.c.date_end < moment)
        await conn.execute(child.delete().where(child.c.report_id.in_(old)))
        result = await conn.execute(table.delete().where(table.c.date_end < moment))
        deleted[table.name] = result.rowcount or 0
    result = await conn.execute(reportreject.delete().where(reportreject.c.received_at < moment))
    deleted[reportreject.name] = result.rowcount or 0
    return deleted
