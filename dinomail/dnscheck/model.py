"""What a DNS check says: a status, and the details a person needs to act on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class CheckStatus(StrEnum):
    OK = "ok"
    # Usable, but something should be fixed (SPF over 10 lookups, DMARC p=none, ...).
    WARNING = "warning"
    # The record this server needs is not published.
    MISSING = "missing"
    # An optional record (MTA-STS, TLS-RPT) is not published: nothing is wrong.
    ABSENT = "absent"
    # A record is published but broken: receivers ignore it or fail on it.
    INVALID = "invalid"
    # A valid record that says something else than this server expects (another key, MX).
    MISMATCH = "mismatch"
    # Nothing to compare with: the domain has no DKIM selector and key.
    NOT_CONFIGURED = "not_configured"
    # DNS did not answer (timeout, SERVFAIL): says nothing about the record itself.
    COULD_NOT_CHECK = "could_not_check"


CHECK_NAMES = ("dkim", "spf", "dmarc", "mx", "mta_sts", "tls_rpt", "autoconfig", "autodiscover")

# Query outcomes. The last three mean DNS could not tell; the others are answers.
ANSWER = "answer"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
TIMEOUT = "timeout"
SERVFAIL = "servfail"
ERROR = "error"
NOT_ANSWERED = frozenset({TIMEOUT, SERVFAIL, ERROR})


@dataclass(slots=True)
class Query:
    """One DNS question and what came back."""

    name: str
    type: str
    outcome: str
    # Each record as text; a TXT record's strings are joined, as every verifier joins them.
    records: list[str] = field(default_factory=list)
    error: str | None = None
    # Where a CNAME chain led, when it did.
    canonical_name: str | None = None
    # The parsed records (dnspython rdata), for the check that asked; not stored.
    rdata: list[Any] = field(default_factory=list, repr=False)

    @property
    def answered(self) -> bool:
        return self.outcome not in NOT_ANSWERED

    @property
    def found(self) -> bool:
        return self.outcome == ANSWER

    def as_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"name": self.name, "type": self.type, "outcome": self.outcome,
                                 "records": list(self.records), "error": self.error}
        if self.canonical_name:
            shown["canonical_name"] = self.canonical_name
        return shown


@dataclass(slots=True)
class CheckResult:
    check: str
    status: CheckStatus
    summary: str
    queries: list[Query] = field(default_factory=list)
    expected: str | None = None
    found: str | None = None
    problems: list[str] = field(default_factory=list)
    # What the check read from the records (DMARC policy tags, SPF lookup count, key size).
    data: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The result as the API and the scan pages show it."""
        return {"name": self.check, "status": str(self.status),
                "checked_at": iso_time(self.checked_at), **self.details()}

    def details(self) -> dict[str, Any]:
        """The JSON stored with the status and shown on the scan pages."""
        return {
            "summary": self.summary,
            "queries": [query.as_json() for query in self.queries],
            "expected": self.expected,
            "found": self.found,
            "problems": list(self.problems),
            "data": dict(self.data),
        }


def iso_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def could_not_check(check: str, query: Query) -> CheckResult:
    reason = {TIMEOUT: "did not answer in time", SERVFAIL: "answered with a server failure"}
    return CheckResult(
        check, CheckStatus.COULD_NOT_CHECK,
        f"could not check: DNS {reason.get(query.outcome, 'failed')} for {query.name} "
        f"{query.type} ({query.error or query.outcome}); the record itself may be fine",
        [query],
    )


# --- the original columns -------------------------------------------------------------------------
# core_virtualdomain keeps the original integer statuses, for old clients and SQL readers. A check
# that could not be made leaves them as they were (None below): a DNS timeout is not news about
# the record.

DKIM_COLUMN = {
    CheckStatus.NOT_CONFIGURED: 0,  # NOTSET
    CheckStatus.MISSING: 1,  # NOTFOUND
    CheckStatus.INVALID: 2,  # NODNSKEY
    CheckStatus.MISMATCH: 3,  # NOMATCH
    CheckStatus.OK: 4,
    CheckStatus.WARNING: 4,
}
DMARC_COLUMN = {
    CheckStatus.MISSING: 0,  # NOTSET
    CheckStatus.INVALID: 1,  # WRONGENTRY
    CheckStatus.MISMATCH: 1,
    CheckStatus.OK: 2,
    CheckStatus.WARNING: 2,
}
# The original has no "invalid" for SPF: a broken record protects nothing, as no record.
SPF_COLUMN = {
    CheckStatus.MISSING: 0,  # NOTSET
    CheckStatus.INVALID: 0,
    CheckStatus.OK: 1,
    CheckStatus.WARNING: 1,
}
ORIGINAL_COLUMNS = {"dkim": DKIM_COLUMN, "dmarc": DMARC_COLUMN, "spf": SPF_COLUMN}


def original_statuses(results: list[CheckResult]) -> dict[str, int]:
    """`{"dkim_status": 4, ...}` for the checks that gave a definite answer."""
    statuses = {}
    for result in results:
        mapping = ORIGINAL_COLUMNS.get(result.check)
        if mapping is not None and result.status in mapping:
            statuses[f"{result.check}_status"] = mapping[result.status]
    return statuses
