"""The policy attributes the decisions use, each read with explicit bounds.

A value out of its bounds is treated as absent (as if Postfix had sent `name=`), logged and
counted (`dinomail_lookupd_policy_bad_attributes`): a client's nonsense must never reach the
counters or the database, where one impossible number (`recipient_count=99999999999999999999999`)
would make every batched write of sending counts fail.

Bounds, and why:
- `recipient_count`: 0..MAX_RECIPIENT_COUNT. Postfix's `smtpd_recipient_limit` is 1000 by
  default; an admin raising it a thousandfold is still below the bound.
- `instance`: at most MAX_INSTANCE_BYTES, printable ASCII. Postfix writes four hexadecimal
  numbers separated by dots (`1a2b.6745c2f1.8d3e0.0`, under 40 bytes); the decider keeps up to
  `MAX_TRANSACTIONS` of them in memory, so their length bounds that memory.
- `sasl_username`, `recipient`: at most MAX_ADDRESS_BYTES, UTF-8 without NUL. An address has at
  most 254 characters of 4 UTF-8 bytes; longer is not one of ours.
"""

from __future__ import annotations

import logging
import re

from prometheus_client import Counter

from lookupd.metrics import LookupdMetrics
from lookupd.policy.request import PolicyRequest
from lookupd.resolve import decode_key

log = logging.getLogger("dinomail.lookupd.policy")

MAX_RECIPIENT_COUNT = 1_000_000
MAX_INSTANCE_BYTES = 64
MAX_ADDRESS_BYTES = 1024

ATTRIBUTES = ("recipient_count", "instance", "sasl_username", "recipient")

_PRINTABLE_ASCII = re.compile(rb"[\x21-\x7e]*")


class AttributeMetrics:
    """Values refused, by attribute."""

    def __init__(self, metrics: LookupdMetrics) -> None:
        counter = Counter(
            "dinomail_lookupd_policy_bad_attributes",
            "Policy request attributes whose value was out of bounds and treated as absent, "
            "by attribute.",
            ["attribute"], registry=metrics.registry,
        )
        self.bad = {name: counter.labels(name) for name in ATTRIBUTES}


class AttributeReader:
    """Reads the bounded attributes of one request; `bad` is called for each refused value."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: AttributeMetrics | None = None) -> None:
        self._metrics = metrics

    def recipient_count(self, request: PolicyRequest) -> int:
        """0 when absent or out of bounds (the caller then counts what it saw at RCPT)."""
        raw = request.get(b"recipient_count", b"")
        if not raw:
            return 0
        # isdigit() and a length first: int() would also take "+5", " 5" and "5_000", and
        # raise on 4,300 digits (CPython's limit on str→int conversions).
        if raw.isdigit() and len(raw) <= 20:
            value = int(raw)
            if value <= MAX_RECIPIENT_COUNT:
                return value
        self._bad("recipient_count", raw)
        return 0

    def instance(self, request: PolicyRequest) -> bytes:
        """b"" when absent or out of bounds (the request is then not tied to a transaction)."""
        raw = request.get(b"instance", b"")
        if len(raw) <= MAX_INSTANCE_BYTES and _PRINTABLE_ASCII.fullmatch(raw):
            return raw
        self._bad("instance", raw)
        return b""

    def address(self, request: PolicyRequest, name: str) -> str:
        """`sasl_username` or `recipient` as text; "" when absent or out of bounds."""
        raw = request.get(name.encode(), b"")
        if not raw:
            return ""
        text = decode_key(raw) if len(raw) <= MAX_ADDRESS_BYTES else None
        if text is None:
            self._bad(name, raw)
            return ""
        return text

    def _bad(self, name: str, raw: bytes) -> None:
        if self._metrics is not None:
            self._metrics.bad[name].inc()
        log.info("policy: %s out of bounds, treated as absent: %r", name, raw[:80])
