"""SMTP TLS reports (RFC 8460 section 4) → `TlsReport`.

The report is JSON; the policy domain of each `policies` entry says which domain it is about.
One report is about one policy domain (section 4.1 asks for a report per domain): a report
mixing domains is refused, so a tenant never sees another domain's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dinomail import validation as v
from dinomail.reports.errors import ReportError

MAX_POLICIES = 1000
MAX_FAILURE_DETAILS = 1000
# Fields of a failure-details entry that are kept (section 4.3).
FAILURE_FIELDS = (
    "result-type", "sending-mta-ip", "receiving-mx-hostname", "receiving-mx-helo",
    "receiving-ip", "failed-session-count", "additional-information", "failure-reason-code",
)


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    policy_type: str
    policy_domain: str
    success_count: int
    failure_count: int
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TlsReport:
    org_name: str
    report_id: str
    contact: str
    date_begin: datetime
    date_end: datetime
    domain: str
    policies: list[TlsPolicy] = field(default_factory=list)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{where} is not a JSON object")
    return value


def _string(data: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        if required:
            raise ReportError(f"the report has no {key}")
        return ""
    return value.strip()


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise ReportError(f"{key} is not a number of sessions")
    return value


def _datetime(data: dict[str, Any], key: str) -> datetime:
    text = _string(data, key)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"{key} is not an RFC 3339 date-time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise ReportError(f"{key} has no time zone: {text[:40]!r}")
    return moment


def _failure(entry: Any) -> dict[str, Any]:
    entry = _object(entry, "a failure-details entry")
    kept = {key: entry[key] for key in FAILURE_FIELDS
            if isinstance(entry.get(key), str | int) and not isinstance(entry.get(key), bool)}
    kept["result-type"] = str(kept.get("result-type", "unknown"))[:64]
    kept["failed-session-count"] = _count(entry, "failed-session-count")
    return {key: value[:255] if isinstance(value, str) else value for key, value in kept.items()}


def _policy(entry: Any) -> TlsPolicy:
    entry = _object(entry, "a policies entry")
    policy = _object(entry.get("policy"), "policy")
    summary = _object(entry.get("summary"), "summary")
    domain_text = _string(policy, "policy-domain")
    try:
        domain = v.normalize_domain(domain_text, "policy-domain")
    except v.ValidationError:
        raise ReportError(f"policy-domain is not a domain: {domain_text[:80]!r}") from None
    details = entry.get("failure-details", [])
    if not isinstance(details, list) or len(details) > MAX_FAILURE_DETAILS:
        raise ReportError("failure-details is not a list (or too long)")
    return TlsPolicy(
        policy_type=_string(policy, "policy-type")[:32], policy_domain=domain,
        success_count=_count(summary, "total-successful-session-count"),
        failure_count=_count(summary, "total-failure-session-count"),
        failures=[_failure(item) for item in details],
    )


def parse_tlsrpt(data: bytes) -> TlsReport:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise ReportError(f"not valid JSON ({str(error)[:120]})") from None
    document = _object(document, "the report")
    dates = _object(document.get("date-range"), "date-range")
    entries = document.get("policies")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_POLICIES:
        raise ReportError("the report has no policies list")
    policies = [_policy(entry) for entry in entries]
    domains = {policy.policy_domain for policy in policies}
    if len(domains) != 1:
        raise ReportError(f"the report mixes policy domains ({', '.join(sorted(domains))})")
    return TlsReport(
        org_name=_string(document, "organization-name")[:255],
        report_id=_string(document, "report-id")[:255],
        contact=_string(document, "contact-info", required=False)[:320],
        date_begin=_datetime(dates, "start-datetime"), date_end=_datetime(dates, "end-datetime"),
        domain=domains.pop(), policies=policies,
    )
