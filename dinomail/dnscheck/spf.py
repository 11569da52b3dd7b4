"""Reading an SPF record (RFC 7208): its terms, what breaks it, and how many DNS lookups it costs.

A receiver that finds a syntax error, an unknown mechanism or more than one SPF record gives
`permerror`, which most treat as no SPF at all; so those make a record invalid here. Counting
lookups past the record itself (into `include:` and `redirect=`) needs DNS and is done by the
check (`dinomail.dnscheck.checks`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

VERSION = "v=spf1"
# RFC 7208 4.6.4: evaluating more DNS-querying terms than this is a permerror.
LOOKUP_LIMIT = 10
LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})

_TERM = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9_.\-]*)(.*)")
_MACRO = re.compile(r"%(?:\{[slodiphcrtvSLODIPHCRTV][0-9]*[rR]?[.\-+,/_=]*\}|%|_|-)")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?")
_DUAL_CIDR = re.compile(r"(?:/(\d{1,2}))?(?://(\d{1,3}))?")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral", "": "pass"}


def is_spf_record(text: str) -> bool:
    """RFC 7208 4.5: exactly `v=spf1`, then a space or the end (so `v=spf10` is not one)."""
    lowered = text.lower()
    return lowered == VERSION or lowered.startswith(VERSION + " ")


@dataclass
class SpfRecord:
    text: str
    terms: list[str] = field(default_factory=list)
    # Each makes the record a permerror at receivers.
    errors: list[str] = field(default_factory=list)
    # Valid, but probably not what the admin wants.
    warnings: list[str] = field(default_factory=list)
    # DNS-querying terms in this record itself (not counting what includes add).
    lookups: int = 0
    # Domains whose own SPF records count too: include: targets and redirect=, without macros.
    followed: list[str] = field(default_factory=list)
    all_result: str | None = None
    redirect: str | None = None

    @property
    def open_ended(self) -> bool:
        """Neither all nor redirect=: unlisted servers get a neutral result. Normal in a
        record made to be included; worth a word in a domain's own record."""
        return self.all_result is None and self.redirect is None


def parse_spf(text: str) -> SpfRecord:
    record = SpfRecord(text)
    terms = [term for term in text.split(" ") if term][1:]
    record.terms = terms
    modifiers: dict[str, str] = {}
    after_all: list[str] = []
    for term in terms:
        match = _TERM.fullmatch(term)
        if match is None:
            record.errors.append(f"{term!r} is not an SPF mechanism or modifier")
            continue
        qualifier, name, rest = match.groups()
        if rest.startswith("=") and not qualifier:
            _modifier(record, modifiers, name.lower(), rest[1:])
            continue
        if record.all_result is not None:
            after_all.append(term)
        _mechanism(record, qualifier, name.lower(), rest)
    if after_all:
        record.warnings.append(
            f"{' '.join(after_all)}: terms after all are never evaluated"
        )
    redirect = modifiers.get("redirect")
    if redirect is not None:
        if record.all_result is not None:
            record.warnings.append("redirect= is ignored because the record has an all")
        else:
            record.redirect = redirect
            record.lookups += 1
            _follow(record, redirect)
    return record


def _modifier(record: SpfRecord, seen: dict[str, str], name: str, value: str) -> None:
    if name in ("redirect", "exp"):
        if name in seen:
            record.errors.append(f"{name}= appears twice")
            return
        if not valid_domain_spec(value):
            record.errors.append(f"{name}={value}: not a valid domain")
            return
    # Other modifiers are allowed and ignored by receivers (RFC 7208 6).
    seen[name] = value


def _mechanism(record: SpfRecord, qualifier: str, name: str, rest: str) -> None:
    term = f"{qualifier}{name}{rest}"
    if name == "all":
        if rest:
            record.errors.append(f"{term}: all takes no value")
            return
        if record.all_result is None:
            record.all_result = _QUALIFIERS[qualifier]
            if qualifier in ("", "+"):
                record.warnings.append(
                    f"{term} lets every server on the internet send mail as the domain"
                )
        return
    if name not in LOOKUP_MECHANISMS | {"ip4", "ip6"}:
        record.errors.append(f"{term}: {name} is not an SPF mechanism")
        return
    if name in ("ip4", "ip6"):
        _address(record, term, name, rest)
        return
    record.lookups += 1
    if name in ("include", "exists"):
        target = rest[1:] if rest.startswith(":") else ""
        if not target or not valid_domain_spec(target):
            record.errors.append(f"{term}: {name} needs a domain ({name}:example.org)")
        elif name == "include":
            _follow(record, target)
        return
    if name == "ptr":
        record.warnings.append(f"{term}: ptr is slow and deprecated (RFC 7208 5.5)")
        if rest and not (rest.startswith(":") and valid_domain_spec(rest[1:])):
            record.errors.append(f"{term}: not a valid ptr mechanism")
        return
    # a and mx: [":" domain-spec] [dual-cidr-length]
    domain, slash, cidr = rest.partition("/")
    cidr = slash + cidr
    if domain and not (domain.startswith(":") and valid_domain_spec(domain[1:])):
        record.errors.append(f"{term}: not a valid domain after {name}:")
    cidr_match = _DUAL_CIDR.fullmatch(cidr)
    if cidr_match is None or (cidr_match[1] and int(cidr_match[1]) > 32) or (
        cidr_match[2] and int(cidr_match[2]) > 128
    ):
        record.errors.append(f"{term}: not a valid prefix length")


def _address(record: SpfRecord, term: str, name: str, rest: str) -> None:
    if not rest.startswith(":"):
        record.errors.append(f"{term}: {name} needs an address ({name}:…)")
        return
    text = rest[1:]
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        record.errors.append(f"{term}: {text!r} is not a valid {name} address or network")
        return
    if network.version != (4 if name == "ip4" else 6):
        record.errors.append(f"{term}: an IPv{network.version} address after {name}:")


def _follow(record: SpfRecord, target: str) -> None:
    # A target built from macros depends on each message; it cannot be followed ahead of time.
    if "%" not in target:
        record.followed.append(target.lower().rstrip("."))


def valid_domain_spec(spec: str) -> bool:
    """RFC 7208 7.1 domain-spec: a domain name, possibly built with macros (%{d}, ...)."""
    if not spec or any(not 0x21 <= ord(char) <= 0x7E for char in spec):
        return False
    if "%" in spec:
        return "%" not in _MACRO.sub("", spec)
    labels = spec.rstrip(".").split(".")
    return len(labels) >= 2 and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
