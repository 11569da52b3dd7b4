"""The report pages: DMARC and TLS-RPT numbers for all the admin's domains or one, over a
period, as server-drawn SVG charts and tables of the same numbers; and each domain's MTA-STS
policy (edit, the TXT record to publish, stop serving).

A domain admin sees their domains only; naming another domain is "not found", like a domain
that does not exist.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import dns.reversename
from starlette.responses import Response

from adminapi.pages.charts import FAIL_COLOUR, PASS_COLOUR, Series, stacked_columns, stacked_rows
from adminapi.pages.domain_select import domain_choices, find_domain
from adminapi.pages.forms import Form, parse_count
from adminapi.pages.web import Page
from dinomail import mtasts
from dinomail import validation as v
from dinomail.dnscheck.resolver import Resolver
from dinomail.store import NotFound
from dinomail.store import mtasts as mtasts_store
from dinomail.store import reports as reports_store
from dinomail.store.common import now

PERIODS = (7, 30, 90, 365)
DEFAULT_PERIOD = 30
TOP = 10
# Reverse names of sources: asked with a short timeout, remembered for an hour.
REVERSE_TIMEOUT = 1.0
REVERSE_TTL = 3600.0
_reverse_cache: dict[str, tuple[float, str]] = {}


async def reverse_names(page: Page, addresses: list[str]) -> dict[str, str]:
    """The PTR name of each address ("" when none, or DNS did not answer in time)."""
    moment = time.monotonic()
    wanted = [ip for ip in dict.fromkeys(addresses)
              if ip not in _reverse_cache or _reverse_cache[ip][0] < moment]
    if wanted:
        resolver = Resolver(page.settings.DNS_RESOLVERS,
                            min(page.settings.DNS_TIMEOUT, REVERSE_TIMEOUT))

        async def one(ip: str) -> tuple[str, str]:
            query = await resolver.query(dns.reversename.from_address(ip).to_text(), "PTR")
            name = query.records[0].rstrip(".") if query.found and query.records else ""
            return ip, name

        for ip, name in await asyncio.gather(*(one(ip) for ip in wanted)):
            _reverse_cache[ip] = (moment + REVERSE_TTL, name)
    return {ip: _reverse_cache[ip][1] for ip in addresses}


def _period(page: Page) -> int:
    text = page.request.query_params.get("days", "")
    return int(text) if text.isdigit() and int(text) in PERIODS else DEFAULT_PERIOD


async def report_overview(page: Page) -> Response:
    _ = page._
    typed = page.request.query_params.get("domain", "").strip()
    domain = None
    if typed:
        domain = await find_domain(page, typed)
        if domain is None:
            raise NotFound("no such domain", code="domain_not_found")
    days = _period(page)
    where = reports_store.Filter(page.scope, domain["id"] if domain else None,
                                 now() - timedelta(days=days))
    async with page.store.read() as conn:
        by_day = await reports_store.dmarc_by_day(conn, where)
        sources = await reports_store.dmarc_sources(conn, where, limit=TOP)
        failing = await reports_store.dmarc_sources(conn, where, failing_only=True, limit=TOP)
        receivers = await reports_store.tls_by_receiver(conn, where)
        failure_types = await reports_store.tls_failure_types(conn, where)
        _total, dmarc_reports = await reports_store.list_reports(conn, "dmarc", where, limit=TOP,
                                                                 offset=0)
        set_aside: list[dict[str, Any]] = []
        if page.is_superadmin:
            _count, set_aside = await reports_store.list_set_aside(conn, limit=TOP, offset=0)
    names = await reverse_names(page, [row["source_ip"] for row in (*sources, *failing)])
    passed, failed = Series(_("Passed DMARC"), PASS_COLOUR), Series(_("Failed DMARC"),
                                                                    FAIL_COLOUR)
    dmarc_chart = stacked_columns(
        [row["day"][5:] for row in by_day], [(row["passed"], row["failed"]) for row in by_day],
        (passed, failed), title=_("Messages per day, passing and failing DMARC"),
        description=_("Stacked columns, one per day; the table below has the same numbers."),
    ) if by_day else None
    ok, bad = Series(_("Successful sessions"), PASS_COLOUR), Series(_("Failed sessions"),
                                                                    FAIL_COLOUR)
    tls_chart = stacked_rows(
        [row["receiver"] for row in receivers],
        [(row["successful"], row["failed"]) for row in receivers], (ok, bad),
        title=_("TLS sessions by reporting organisation"),
        description=_("Stacked bars, one per organisation; the table below has the same "
                      "numbers."),
    ) if receivers else None
    shown_domain = domain["name"] if domain else ""
    address = page.settings.REPORTS_ADDRESS or (
        f"dmarc-reports@{shown_domain}" if shown_domain else "dmarc-reports@<domain>")
    return page.render(
        "reports.html", domain=domain, typed=typed, days=days, periods=PERIODS,
        choices=await domain_choices(page), by_day=by_day, sources=sources, failing=failing,
        names=names, receivers=receivers, failure_types=failure_types,
        dmarc_reports=dmarc_reports, set_aside=set_aside, dmarc_chart=dmarc_chart,
        tls_chart=tls_chart, report_address=address,
    )


# --- MTA-STS --------------------------------------------------------------------------------------


async def mtasts_edit(page: Page) -> Response:
    _ = page._
    domain_id = page.path_id()
    mx_host = page.settings.MX_HOST
    async with page.store.read() as conn:
        policy = await mtasts_store.get(conn, page.scope, domain_id, mx_host)
    form = Form(values={"mode": policy["mode"], "mx": "\n".join(policy["mx"]),
                        "max_age": str(policy["max_age"])})
    if page.request.method == "POST":
        for name in ("mode", "mx", "max_age"):
            form.values[name] = page.form_data.text(name)
        max_age = parse_count(form.values["max_age"])
        if max_age is None:
            form.add_error("max_age", _("Enter a number of seconds."))
        if form.valid:
            data = {"mode": form.values["mode"], "mx": form.values["mx"], "max_age": max_age}
            saved = await page.save(form, lambda conn: mtasts_store.save(
                conn, page.admin.actor, page.scope, domain_id, data, mx_host))
            if saved is not None:
                page.flash("success", _("The MTA-STS policy of %(name)s was saved. Publish the "
                                        "TXT record shown so senders fetch it again.")
                           % {"name": v.display_domain(policy["name"])})
                return page.redirect(page.url("mtasts_edit", pk=domain_id))
    return page.render("mtasts_form.html", status=200 if form.valid else 400, form=form,
                       policy=policy, modes=mtasts.MODES)


async def mtasts_delete(page: Page) -> Response:
    domain_id = page.path_id()
    async with page.store.write() as conn:
        policy = await mtasts_store.get(conn, page.scope, domain_id, page.settings.MX_HOST)
        await mtasts_store.delete(conn, page.admin.actor, page.scope, domain_id,
                                  page.settings.MX_HOST)
    page.flash("warning", page._("%(name)s no longer serves an MTA-STS policy. Remove its "
                                 "_mta-sts TXT record.")
               % {"name": v.display_domain(policy["name"])})
    return page.redirect(page.url("mtasts_edit", pk=domain_id))
