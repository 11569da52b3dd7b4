"""DMARC aggregate reports (RFC 7489 appendix C) → `DmarcReport`.

The XML is read with defusedxml: a document type declaration is refused outright (no entity
expansion, so no billion laughs, no external entities). Namespaces are ignored: receivers send
the report with none, with the DMARCbis namespace (`urn:ietf:params:xml:ns:dmarc-2.0`), or with
`xsi`/`xsd` declarations (Outlook.com), and the element names are the same in all of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from dinomail import validation as v
from dinomail.reports.errors import ReportError

# Records of one report: a large receiver's day for a busy domain is a few thousand.
MAX_RECORDS = 100_000
RESULTS = ("pass", "fail")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    source_ip: str
    count: int
    disposition: str
    dkim: str  # DMARC-aligned DKIM result: pass or fail
    spf: str  # DMARC-aligned SPF result: pass or fail
    header_from: str
    # The raw results the receiver saw: {"dkim": [{domain, selector, result}], "spf": [...]}
    auth_results: dict[str, list[dict[str, str]]]

    @property
    def passed(self) -> bool:
        """DMARC passes when DKIM or SPF passes aligned."""
        return self.dkim == "pass" or self.spf == "pass"


@dataclass(frozen=True, slots=True)
class DmarcReport:
    org_name: str
    report_id: str
    email: str
    date_begin: datetime
    date_end: datetime
    domain: str
    policy: str
    records: list[DmarcRecord] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element | None, name: str) -> Element | None:
    if element is None:
        return None
    return next((item for item in element if _local(item.tag) == name), None)


def _children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [item for item in element if _local(item.tag) == name]


def _text(element: Element | None, *path: str, required: bool = False) -> str:
    for name in path:
        element = _child(element, name)
    text = (element.text or "").strip() if element is not None else ""
    if required and not text:
        raise ReportError(f"the report has no {'/'.join(path)}")
    return text


def _timestamp(element: Element | None, name: str) -> datetime:
    text = _text(element, name, required=True)
    try:
        # Some reporters write the Unix time with a fraction ("1796428800.0").
        return datetime.fromtimestamp(int(float(text)), UTC)
    except (ValueError, OverflowError, OSError):
        raise ReportError(f"date_range/{name} is not a Unix time: {text[:40]!r}") from None


def _result(text: str) -> str:
    return "pass" if text.lower() == "pass" else "fail"


def _record(element: Element) -> DmarcRecord:
    row = _child(element, "row")
    source = _text(row, "source_ip", required=True)
    try:
        source = str(ipaddress.ip_address(source))
    except ValueError:
        raise ReportError(f"source_ip is not an IP address: {source[:60]!r}") from None
    count_text = _text(row, "count", required=True)
    if not count_text.isdigit() or int(count_text) > 2**31 - 1:
        raise ReportError(f"count is not a number of messages: {count_text[:40]!r}")
    evaluated = _child(row, "policy_evaluated")
    auth = _child(element, "auth_results")
    results = {
        kind: [{_local(item.tag): (item.text or "").strip()[:255] for item in entry}
               for entry in _children(auth, kind)][:20]
        for kind in ("dkim", "spf")
    }
    return DmarcRecord(
        source_ip=source, count=int(count_text),
        disposition=(_text(evaluated, "disposition") or "none").lower()[:16],
        dkim=_result(_text(evaluated, "dkim")), spf=_result(_text(evaluated, "spf")),
        header_from=_text(element, "identifiers", "header_from").lower()[:253],
        auth_results=results,
    )


def parse_dmarc(data: bytes) -> DmarcReport:
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as error:
        raise ReportError(f"forbidden XML construct ({type(error).__name__}: entities or a "
                          "document type are never expanded)") from None
    except (ParseError, ValueError) as error:
        raise ReportError(f"not well-formed XML ({error})") from None
    if _local(root.tag) != "feedback":
        raise ReportError(f"not a DMARC aggregate report (root element {_local(root.tag)!r})")
    metadata = _child(root, "report_metadata")
    dates = _child(metadata, "date_range")
    published = _child(root, "policy_published")
    domain_text = _text(published, "domain", required=True)
    try:
        domain = v.normalize_domain(domain_text, "domain")
    except v.ValidationError:
        raise ReportError(f"policy_published/domain is not a domain: {domain_text[:80]!r}"
                          ) from None
    elements = _children(root, "record")
    if len(elements) > MAX_RECORDS:
        raise ReportError(f"more than {MAX_RECORDS} records")
    return DmarcReport(
        org_name=_text(metadata, "org_name", required=True)[:255],
        report_id=_text(metadata, "report_id", required=True)[:255],
        email=_text(metadata, "email")[:320],
        date_begin=_timestamp(dates, "begin"), date_end=_timestamp(dates, "end"),
        domain=domain, policy=_text(published, "p").lower()[:16],
        records=[_record(element) for element in elements],
    )
