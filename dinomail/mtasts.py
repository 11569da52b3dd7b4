"""MTA-STS policies (RFC 8461): the text DinoMail serves, its id, and how MX patterns match.

The served document is exactly what section 3.2 defines: `key: value` lines ending in CRLF,
`version`, `mode`, one `mx` line per pattern, `max_age`, nothing else. The policy id in the
`_mta-sts` TXT record is a digest of that text: it changes whenever the text does (a new mode,
new patterns, a new default MX host), and only then, which is what senders' caches need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dinomail import validation as v

MODES = ("none", "testing", "enforce")
DEFAULT_MODE = "testing"
# One week: RFC 8461 suggests weeks or more once a policy is settled; the maximum is a year.
DEFAULT_MAX_AGE = 604800
MAX_MAX_AGE = 31557600
MAX_PATTERNS = 32
POLICY_PATH = "/.well-known/mta-sts.txt"
HOST_PREFIX = "mta-sts."
# The id is 1 to 32 letters and digits (section 3.1); 20 hex digits are plenty.
ID_LENGTH = 20


@dataclass(frozen=True, slots=True)
class Policy:
    mode: str
    mx: tuple[str, ...]
    max_age: int

    def text(self) -> str:
        lines = ["version: STSv1", f"mode: {self.mode}"]
        lines += [f"mx: {pattern}" for pattern in self.mx]
        lines.append(f"max_age: {self.max_age}")
        return "".join(line + "\r\n" for line in lines)

    @property
    def policy_id(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:ID_LENGTH]


def txt_record(policy: Policy) -> str:
    return f"v=STSv1; id={policy.policy_id}"


def normalize_mode(value: object, field: str = "mode") -> str:
    if value not in MODES:
        raise v.ValidationError(
            field, f"must be one of {', '.join(MODES)}",
            code="mtasts_mode_invalid", params={"modes": ", ".join(MODES)},
        )
    return str(value)


def normalize_max_age(value: object, field: str = "max_age") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MAX_AGE:
        raise v.ValidationError(
            field, f"must be a number of seconds from 0 to {MAX_MAX_AGE}",
            code="mtasts_max_age_invalid", params={"limit": MAX_MAX_AGE},
        )
    return value


def normalize_pattern(value: object, field: str = "mx") -> str:
    """A host name, or `*.` and a domain (a wildcard matches one leftmost label)."""
    if not isinstance(value, str) or not value.strip():
        raise v.ValidationError(field, "each pattern must be a host name, as in mail.example.org"
                                       " or *.example.org", code="mtasts_pattern_invalid")
    text = value.strip().lower().rstrip(".")
    wildcard = text.startswith("*.")
    name = v.normalize_domain(text[2:] if wildcard else text, field)
    return f"*.{name}" if wildcard else name


def normalize_patterns(value: object, field: str = "mx") -> tuple[str, ...]:
    """A list, or text with one pattern a line (or separated by commas or spaces)."""
    if isinstance(value, str):
        items: Sequence[object] = value.replace(",", " ").split()
    elif isinstance(value, list):
        items = value
    else:
        raise v.ValidationError(
            field, "must be a list of host names", code="mtasts_patterns_invalid"
        )
    patterns = tuple(dict.fromkeys(normalize_pattern(item, field) for item in items))
    if len(patterns) > MAX_PATTERNS:
        raise v.ValidationError(
            field, f"at most {MAX_PATTERNS} patterns",
            code="mtasts_too_many_patterns", params={"limit": MAX_PATTERNS},
        )
    return patterns


def matches(pattern: str, host: str) -> bool:
    """Section 4.1: `*.example.org` matches `mx1.example.org`, not `a.b.example.org` nor
    `example.org`."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == pattern[2:]
    return host == pattern


def unmatched_hosts(patterns: Iterable[str], hosts: Iterable[str]) -> list[str]:
    """The MX hosts no pattern matches: senders enforcing the policy refuse to deliver there."""
    patterns = list(patterns)
    return [host for host in hosts if not any(matches(pattern, host) for pattern in patterns)]


def domain_of_host(host: str) -> str | None:
    """`mta-sts.example.org[:port]` → `example.org`; None for any other host."""
    host = host.strip().lower()
    if not host.endswith("]"):
        host = host.rsplit(":", 1)[0]
    if not host.startswith(HOST_PREFIX):
        return None
    try:
        return v.normalize_domain(host[len(HOST_PREFIX):], "host")
    except v.ValidationError:
        return None
