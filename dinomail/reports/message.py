"""The report files of a mail message, parsed: DMARC XML or TLS-RPT JSON, plain or compressed.

Receivers differ in how they attach a report (Google: `application/zip`, Outlook.com:
`application/gzip` named `.xml.gz`, Yahoo: `application/zip`, TLS-RPT:
`application/tlsrpt+gzip` or `+json`, some: `application/octet-stream`), so a part counts as a
report when its type or name says so, and what it holds is told by its content.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from dinomail.reports.dmarc import DmarcReport, parse_dmarc
from dinomail.reports.errors import ReportError
from dinomail.reports.tlsrpt import TlsReport, parse_tlsrpt
from dinomail.reports.unpack import expand

# A report message has a text part and one attachment; a few more are tolerated.
MAX_PARTS = 20
REPORT_TYPES = frozenset({
    "application/gzip", "application/x-gzip", "application/zip", "application/x-zip",
    "application/x-zip-compressed", "application/xml", "text/xml", "application/json",
    "application/tlsrpt+gzip", "application/tlsrpt+json", "application/octet-stream",
})
REPORT_SUFFIXES = (".xml", ".gz", ".zip", ".json")

Report = DmarcReport | TlsReport


def _is_report_part(part: Message) -> bool:
    if part.is_multipart():
        return False
    name = (part.get_filename() or "").lower()
    return part.get_content_type() in REPORT_TYPES or name.endswith(REPORT_SUFFIXES)


def parse_file(data: bytes) -> Report:
    content = expand(data).lstrip(b"\xef\xbb\xbf \t\r\n")
    if content.startswith(b"<"):
        return parse_dmarc(content)
    if content.startswith(b"{"):
        return parse_tlsrpt(content)
    raise ReportError("the attachment is neither a DMARC (XML) nor a TLS (JSON) report")


def parse_message(raw: bytes) -> list[Report]:
    """Every report of the message; `ReportError` if there is none, or one is broken (the whole
    message is then set aside: a half-stored message would be stored again when resent)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = [part for part in message.walk() if not part.is_multipart()]
    if len(parts) > MAX_PARTS:
        raise ReportError(f"more than {MAX_PARTS} parts")
    files = [part for part in parts if _is_report_part(part)]
    if not files:
        raise ReportError("no report attached")
    reports = []
    for part in files:
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            raise ReportError("an empty attachment")
        reports.append(parse_file(payload))
    return reports
