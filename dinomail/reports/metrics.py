"""Report metrics for Prometheus, in the admin API's registry:

- `dinomail_dmarc_messages_total{domain,result}`: messages receivers reported, result `pass`
  (aligned DKIM or SPF) or `fail`;
- `dinomail_tlsrpt_sessions_total{domain,result}`: TLS sessions senders reported, result
  `success` or `failure`;
- `dinomail_reports_received_total{kind,outcome}`: report messages taken in (stored, duplicate,
  set_aside).

The per-domain counters start from the stored reports' sums when the process starts (`load`),
then grow with each report stored, so a restart does not reset a dashboard's rates to zero
(a clean-up of old reports does not lower them either).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from dinomail.reports.dmarc import DmarcReport
from dinomail.reports.tlsrpt import TlsReport


class ReportMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dmarc_messages = Counter(
            "dinomail_dmarc_messages", "Messages reported in DMARC aggregate reports, by domain "
            "and DMARC result.", ["domain", "result"], registry=registry,
        )
        self.tlsrpt_sessions = Counter(
            "dinomail_tlsrpt_sessions", "TLS sessions reported in SMTP TLS reports, by domain "
            "and result.", ["domain", "result"], registry=registry,
        )
        self.received = Counter(
            "dinomail_reports_received", "Report messages taken in, by kind and outcome.",
            ["kind", "outcome"], registry=registry,
        )
        self._loaded = False

    def load(self, dmarc: Iterable[tuple[str, str, int]],
             tls: Iterable[tuple[str, str, int]]) -> None:
        """Start from the stored totals (once per process)."""
        if self._loaded:
            return
        self._loaded = True
        for domain, result, count in dmarc:
            self.dmarc_messages.labels(domain, result).inc(count)
        for domain, result, count in tls:
            self.tlsrpt_sessions.labels(domain, result).inc(count)

    def stored(self, report: DmarcReport | TlsReport) -> None:
        if isinstance(report, DmarcReport):
            for record in report.records:
                result = "pass" if record.passed else "fail"
                self.dmarc_messages.labels(report.domain, result).inc(record.count)
            self.received.labels("dmarc", "stored").inc()
        else:
            self.tlsrpt_sessions.labels(report.domain, "success").inc(
                sum(policy.success_count for policy in report.policies))
            self.tlsrpt_sessions.labels(report.domain, "failure").inc(
                sum(policy.failure_count for policy in report.policies))
            self.received.labels("tlsrpt", "stored").inc()
