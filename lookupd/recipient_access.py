"""The socketmap `recipient_access`: Postfix's `check_recipient_access` for mail from outside,
which refuses a full mailbox at RCPT TO with one short lookup.

Inbound mail (port 25) has no sender to limit or count: the only thing the policy service
decided for it was the quota check. A policy request costs Postfix's smtpd a block of twenty-odd
attributes to format and send, and lookupd about twice a socketmap lookup to read; an access
table lookup is one netstring each way. So the shipped main.cf asks this map, and only the
submission service (authenticated senders, whose limits and counts need the whole request)
asks the policy service.

The value is an access(5) action for the full address Postfix sends first:
- the quota reply (POLICY_QUOTA_REPLY, `552 5.2.2 Mailbox full`) when the recipient resolves to
  one mailbox whose usage has reached its quota: the rule is `lookupd.policy.rules.over_quota`,
  the same one the policy service applies;
- `DUNNO` for anything else, found rather than not found: DUNNO ends the table's search, so
  Postfix does not go on to ask for the domain, its parents and `user@`, and goes on to the
  next restriction. Never `OK`, which would skip the restrictions after it.
While the full mailboxes are not loaded (the database unreachable since lookupd started, which
then serves its snapshot from disk), the answer is `DUNNO` too: the check cannot be made, and a
temporary failure would hold back all inbound mail for as long as the database is away, while
the maps could let it in. Dovecot still applies the quota at delivery. Before the snapshot
itself is loaded, the answer is the usual temporary failure (`lookupd.answer`).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from lookupd.metrics import LookupdMetrics
from lookupd.policy.rules import DEFAULT_QUOTA_REPLY, over_quota
from lookupd.policy.tables import PolicyTables
from lookupd.snapshot import Snapshot

MAP_NAME = "recipient_access"
DUNNO = "DUNNO"

TablesSource = Callable[[], PolicyTables | None]


class RecipientAccess:
    """`(snapshot, key) → access action`, a socketmap lookup (see the module's docstring)."""

    __slots__ = ("_check_quota", "_quota_reply", "_refusals", "_tables_source")

    def __init__(
        self,
        tables_source: TablesSource,
        *,
        check_quota: bool = True,
        quota_reply: str = DEFAULT_QUOTA_REPLY,
        metrics: LookupdMetrics | None = None,
    ) -> None:
        self._tables_source = tables_source
        self._check_quota = check_quota
        self._quota_reply = quota_reply
        # Every answer is counted as a socketmap lookup (`ok`); the refusals, rare, here.
        self._refusals: Counter | None = None
        if metrics is not None:
            self._refusals = Counter(
                "dinomail_lookupd_recipient_access_refusals",
                "Recipients refused by the recipient_access socketmap: a full mailbox.",
                registry=metrics.registry,
            )

    def __call__(self, snapshot: Snapshot, key: str) -> str:
        if not self._check_quota:
            return DUNNO
        tables = self._tables_source()
        if tables is None or not over_quota(snapshot, tables, key):
            return DUNNO  # tables not loaded: see the module's docstring
        if self._refusals is not None:
            self._refusals.inc()
        return self._quota_reply
