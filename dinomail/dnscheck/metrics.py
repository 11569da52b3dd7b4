"""DNS check metrics for Prometheus, in the admin API's registry (its `/metrics`).

Labelled by check and status only, never by domain: a series per domain would grow with the
installation. Which domain is failing is what the API and the scan pages say.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dinomail.dnscheck.model import CHECK_NAMES, CheckResult, CheckStatus

# A domain's checks take milliseconds with a warm resolver, up to DNS_TIMEOUT when one hangs.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DnsCheckMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.checks = Counter(
            "dinomail_dns_checks", "DNS checks made, by check and result.",
            ["check", "status"], registry=registry,
        )
        self.domains = Gauge(
            "dinomail_dns_check_domains",
            "Domains whose last check of this kind had this status.",
            ["check", "status"], registry=registry,
        )
        self.run_seconds = Histogram(
            "dinomail_dns_check_run_duration_seconds", "Time to run every check of one domain.",
            buckets=RUN_BUCKETS, registry=registry,
        )
        self.last_pass = Gauge(
            "dinomail_dns_check_last_pass_timestamp_seconds",
            "When the background checker last looked for domains to check (Unix time).",
            registry=registry,
        )
        self.failed_passes = Counter(
            "dinomail_dns_check_failed_passes",
            "Background passes that failed (the database did not answer).", registry=registry,
        )

    def observe_run(self, results: Iterable[CheckResult], seconds: float) -> None:
        for result in results:
            self.checks.labels(result.check, str(result.status)).inc()
        self.run_seconds.observe(seconds)

    def set_domain_counts(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """From `store.dns.status_counts`: every (check, status) pair gets a value, zero when
        no domain has it, so a status that clears drops to 0 instead of keeping its last value."""
        found = {(check, status): count for check, status, count in counts}
        for check in CHECK_NAMES:
            for status in CheckStatus:
                self.domains.labels(check, str(status)).set(found.get((check, str(status)), 0))
