"""Running a domain's checks and storing them; reading what was stored.

The functions the API and the pages call:
- `read_report(store, settings, scope, domain_id)`: the stored results (the scan pages);
- `run_now(store, settings, scope, domain_id)`: check at once and return the new report;
- `request_run(store, scope, domain_id)`: ask the background checker to check soon.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dinomail import mtasts
from dinomail import validation as v
from dinomail.dnscheck.checks import CheckInputs, check_domain
from dinomail.dnscheck.metrics import DnsCheckMetrics
from dinomail.dnscheck.model import (
    CHECK_NAMES,
    CheckResult,
    CheckStatus,
    Query,
    iso_time,
    original_statuses,
)
from dinomail.dnscheck.resolver import Resolver
from dinomail.settings import Settings
from dinomail.store import Store, domains
from dinomail.store import dns as dns_store
from dinomail.store import mtasts as mtasts_store
from dinomail.store.common import Row, aware, now
from dinomail.store.errors import NotFound
from dinomail.store.scope import Scope

# Part of every inputs fingerprint: a new version of the checks re-checks every domain.
CHECKS_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Target:
    domain_id: int
    inputs: CheckInputs

    @property
    def fingerprint(self) -> str:
        """Changes whenever what the checks compare DNS with changes (a new DKIM key, another
        mail host), so the background checker re-checks the domain then."""
        parts = [CHECKS_VERSION, self.inputs.domain, self.inputs.dkim_selector,
                 "".join(self.inputs.dkim_key.split()), self.inputs.mx_host]
        if self.inputs.dkim_retiring:
            # Only then: the fingerprints of domains without any stay what they were.
            parts += [":".join(entry) for entry in self.inputs.dkim_retiring]
        if self.inputs.mta_sts_policy is not None:
            parts.append(self.inputs.mta_sts_policy.policy_id)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def expected_mx_host(row: Mapping[str, Any], settings: Settings) -> str:
    host = row.get("mx_host") or settings.MX_HOST
    return v.normalize_hostname(host, "mx_host") if host else ""


def served_mta_sts_policy(row: Mapping[str, Any], settings: Settings) -> mtasts.Policy | None:
    if row.get("sts_mode") is None:
        return None
    return mtasts_store.policy_of(
        {"mode": row["sts_mode"], "mx": row["sts_mx"], "max_age": row["sts_max_age"]},
        mtasts_store.default_mx(row.get("mx_host"), settings.MX_HOST),
    )


def target_of(row: Mapping[str, Any], settings: Settings) -> Target:
    return Target(row["id"], CheckInputs(
        domain=row["name"], dkim_selector=row["dkim_key_name"], dkim_key=row["dkim_key"],
        dkim_retiring=tuple(
            (old["selector"], old["algorithm"], old["public_key"])
            for old in row.get("dkim_retiring", ()) if old["selector"] != row["dkim_key_name"]
        ),
        mx_host=expected_mx_host(row, settings),
        mta_sts_policy=served_mta_sts_policy(row, settings),
    ))


def resolver_for(settings: Settings) -> Resolver:
    return Resolver(settings.DNS_RESOLVERS, settings.DNS_TIMEOUT)


async def check_and_save(
    store: Store, settings: Settings, target: Target, metrics: DnsCheckMetrics | None = None
) -> list[CheckResult]:
    """Run every check of one domain and store the results (the DNS work holds no
    transaction open)."""
    started_at = now()
    clock = time.perf_counter()
    results = await check_domain(resolver_for(settings), target.inputs)
    for result in results:
        result.checked_at = started_at
    async with store.write() as conn:
        await dns_store.save_check_results(
            conn, target.domain_id,
            [{"name": result.check, "status": str(result.status), "details": result.details()}
             for result in results],
            inputs=target.fingerprint,
            incomplete=any(result.status is CheckStatus.COULD_NOT_CHECK for result in results),
            started_at=started_at,
            original=original_statuses(results),
        )
    if metrics is not None:
        metrics.observe_run(results, time.perf_counter() - clock)
    return results


# --- reports --------------------------------------------------------------------------------------


@dataclass
class DomainReport:
    """A domain's stored check results, as the scan pages and the API show them."""

    domain_id: int
    name: str
    checks: list[CheckResult]
    checked_at: datetime | None
    requested_at: datetime | None
    # A check will run soon: asked for, never run, or what it compares with has changed.
    pending: bool
    # The original columns, which old clients read.
    original: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> CheckResult | None:
        return next((result for result in self.checks if result.check == name), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pending": self.pending,
            "requested_at": iso_time(self.requested_at),
            "checked_at": iso_time(self.checked_at),
            "dkim_status": self.original["dkim_status"],
            "dmarc_status": self.original["dmarc_status"],
            "spf_status": self.original["spf_status"],
            "checks": [result.as_json() for result in self.checks],
        }


def _result_of(row: Row) -> CheckResult:
    details = row["details"]
    return CheckResult(
        check=row["name"],
        status=CheckStatus(row["status"]),
        summary=details.get("summary", ""),
        queries=[Query(**query) for query in details.get("queries", [])],
        expected=details.get("expected"),
        found=details.get("found"),
        problems=list(details.get("problems", [])),
        data=dict(details.get("data", {})),
        checked_at=aware(row["checked_at"]),
    )


async def read_report(
    store: Store, settings: Settings, scope: Scope, domain_id: int
) -> DomainReport:
    """What the last checks of a visible domain found (NotFound otherwise)."""
    async with store.read() as conn:
        await domains.get(conn, scope, domain_id)
        rows = await dns_store.check_targets(conn, domain_ids=[domain_id])
        run, stored = await dns_store.check_results(conn, domain_id)
    if not rows:
        raise NotFound("domain not found", code="domain_not_found")
    row = rows[0]
    order = {name: index for index, name in enumerate(CHECK_NAMES)}
    checks = sorted((_result_of(item) for item in stored if item["name"] in order),
                    key=lambda result: order[result.check])
    requested_at = aware(run["requested_at"]) if run and run["requested_at"] else None
    pending = (run is None or requested_at is not None
               or run["inputs"] != target_of(row, settings).fingerprint)
    return DomainReport(
        domain_id=domain_id, name=row["name"], checks=checks,
        checked_at=aware(run["checked_at"]) if run and run["checked_at"] else None,
        requested_at=requested_at, pending=pending,
        original={key: row[key] for key in (
            "dkim_status", "dmarc_status", "spf_status", "dkim_last_update",
            "dmarc_last_update", "spf_last_update",
        )},
    )


async def run_now(
    store: Store, settings: Settings, scope: Scope, domain_id: int,
    metrics: DnsCheckMetrics | None = None,
) -> DomainReport:
    """Check a visible domain at once (a few seconds at most: DNS_TIMEOUT per question) and
    return the new report."""
    async with store.read() as conn:
        await domains.get(conn, scope, domain_id)
        rows = await dns_store.check_targets(conn, domain_ids=[domain_id])
    if not rows:
        raise NotFound("domain not found", code="domain_not_found")
    await check_and_save(store, settings, target_of(rows[0], settings), metrics)
    return await read_report(store, settings, scope, domain_id)


async def request_run(store: Store, scope: Scope, domain_id: int) -> datetime:
    """Ask the background checker to check a visible domain soon; returns when it was asked."""
    async with store.write() as conn:
        return await dns_store.request_check(conn, scope, domain_id)


def is_due(row: Mapping[str, Any], target: Target, moment: datetime, settings: Settings,
           retry_after: float) -> bool:
    """Whether the background checker should check this domain now."""
    if row["requested_at"] is not None:
        return True
    interval = settings.DNS_CHECK_INTERVAL
    if interval <= 0:
        return False  # automatic checks are off: only requested ones run
    if row["checked_at"] is None or row["inputs"] != target.fingerprint:
        return True
    age = (moment - aware(row["checked_at"])).total_seconds()
    return age >= interval or (bool(row["incomplete"]) and age >= min(retry_after, interval))
