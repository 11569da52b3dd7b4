"""DNS health of each domain: DKIM, SPF, DMARC, MX, MTA-STS, TLS-RPT, and the host names mail
clients look up (autoconfig, autodiscover).

- `checks`: one coroutine per check, asking DNS through `resolver` (dnspython) and reading the
  records with `spf` and `policies` (and `dinomail.dkim`);
- `runner`: running a domain's checks, storing them, reading them back (what the API and the
  scan pages call);
- `refresher`: the background checker of the admin API's process;
- `model`: statuses, results, and how they map onto the original integer columns.
"""

from dinomail.dnscheck.model import CHECK_NAMES, CheckResult, CheckStatus, Query
from dinomail.dnscheck.refresher import DnsRefresher
from dinomail.dnscheck.runner import DomainReport, read_report, request_run, run_now

__all__ = [
    "CHECK_NAMES",
    "CheckResult",
    "CheckStatus",
    "DnsRefresher",
    "DomainReport",
    "Query",
    "read_report",
    "request_run",
    "run_now",
]
