"""What the policy service answers to one request: the recipient quota check and the sending
limits. One request in, one action out (`action=...\n\n`), or None: "disconnect without a
reply" (Postfix then tries again, and applies its default action after the last try).

The shipped configuration asks it from the submission service (authenticated senders); port 25
asks the `recipient_access` socketmap instead (`lookupd.recipient_access`), which applies the
same quota rule (`over_quota`) at a fraction of a policy request's cost.

RCPT (smtpd_recipient_restrictions):
- a recipient that resolves to one local mailbox (extensions, aliases and alias domains
  followed through `lookupd.resolve`) whose stored usage has reached its quota → the quota
  reply (`552 5.2.2 Mailbox full` by default): Dovecot would refuse it at delivery, and a
  bounce later is worse than a refusal now. Reached, not "would pass with this message": below
  its quota, Dovecot still accepts a message that takes a mailbox over (quota_grace), and the
  SIZE a client announces is only an estimate. An alias with several destinations is not
  refused for one of them: the others still want the mail.
- an authenticated sender (sasl_username names a mailbox) for whom one more message, or one
  more recipient on top of those already accepted in this transaction, would pass a limit of
  the mailbox or of its domain → the limit reply (`DEFER_IF_PERMIT 4.7.1 ...` by default).
END-OF-MESSAGE (smtpd_end_of_data_restrictions): the message is counted once, with its
`recipient_count`, for the mailbox and for its domain; a repeated request for the same
`instance` (Postfix retrying after a lost connection) is not counted again. If the message
would pass a limit now (other sessions sent meanwhile), it gets the limit reply and is not
counted. Counting at the end, not at RCPT, counts what was really accepted: recipients refused
by later restrictions and transactions abandoned before DATA are not counted.

Everything else, and anything under the limits, is `DUNNO`: never `OK`, which would skip the
restrictions after the policy service (reject_unauth_destination among them).
Unauthenticated mail (inbound) is neither limited nor counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from dinomail.sendwindows import DAY, HOUR
from lookupd.answer import NOT_LOADED, Answers, Failure
from lookupd.counters import SendCounters
from lookupd.metrics import LookupdMetrics
from lookupd.policy.attributes import AttributeMetrics, AttributeReader
from lookupd.policy.request import PolicyRequest
from lookupd.policy.tables import PolicyTables, SendLimits
from lookupd.resolve import find_login, resolve_delivery_mailbox
from lookupd.snapshot import Snapshot

log = logging.getLogger("dinomail.lookupd.policy")

MAILBOX = "mailbox"
DOMAIN = "domain"

DEFAULT_QUOTA_REPLY = "552 5.2.2 Mailbox full"
DEFAULT_RATE_LIMIT_REPLY = "DEFER_IF_PERMIT 4.7.1 Sending rate limit exceeded, try again later"

DUNNO = b"action=DUNNO\n\n"

# Open transactions (recipients accepted so far) and counted ones (against double counting),
# by `instance`. An SMTP transaction lasts minutes at most; these bounds keep a flood of
# abandoned transactions from growing memory.
TRANSACTION_TTL = 3600.0
MAX_TRANSACTIONS = 100_000

STATES = {b"RCPT": "rcpt", b"END-OF-MESSAGE": "end_of_message"}
OTHER_STATE = "other"
ACTIONS = ("dunno", "over_quota", "rate_limited")
LIMIT_NAMES = tuple(
    f"{kind}_{what}_per_{period}"
    for kind in (MAILBOX, DOMAIN)
    for what in ("messages", "recipients")
    for period in ("hour", "day")
)
_WINDOWS = ((HOUR, "hour"), (DAY, "day"))

SnapshotSource = Callable[[], Snapshot | None]
TablesSource = Callable[[], PolicyTables | None]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    check_quota: bool = True
    quota_reply: str = DEFAULT_QUOTA_REPLY
    rate_limit_reply: str = DEFAULT_RATE_LIMIT_REPLY


def encode_action(action: str) -> bytes:
    return b"action=" + action.encode("ascii") + b"\n\n"


def over_quota(snapshot: Snapshot, tables: PolicyTables, recipient: str) -> bool:
    """Whether mail to `recipient` goes to one local mailbox whose stored usage has reached
    its quota (the address rules are `lookupd.resolve`'s). The policy service at RCPT TO and
    the `recipient_access` socketmap (`lookupd.recipient_access`) both ask this."""
    if not tables.full_mailboxes:
        return False
    mailbox = resolve_delivery_mailbox(snapshot, recipient)
    if mailbox is None or not mailbox.quota:
        return False
    return tables.full_mailboxes.get(mailbox.id, -1) >= mailbox.quota


class PolicyMetrics:
    """Replies by state and action, and which limits were hit."""

    def __init__(self, metrics: LookupdMetrics) -> None:
        actions = Counter(
            "dinomail_lookupd_policy_actions",
            "Policy replies, by protocol state (rcpt, end_of_message, other) and action "
            "(dunno, over_quota, rate_limited).",
            ["state", "action"], registry=metrics.registry,
        )
        self.actions = {
            (state, action): actions.labels(state, action)
            for state in (*STATES.values(), OTHER_STATE)
            for action in ACTIONS
        }
        limits = Counter(
            "dinomail_lookupd_policy_limit_hits",
            "Requests refused by a sending limit, by limit.",
            ["limit"], registry=metrics.registry,
        )
        self.limits = {name: limits.labels(name) for name in LIMIT_NAMES}
        self.attributes = AttributeMetrics(metrics)


class PolicyDecider:
    """Turns one request into one action (see the module's docstring)."""

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        tables_source: TablesSource,
        counters: SendCounters,
        *,
        ready: Callable[[], bool] = lambda: True,
        config: PolicyConfig | None = None,
        metrics: PolicyMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot_source = snapshot_source
        # For calls made directly; the server answers through its own `Answers`, with metrics.
        self._answers = Answers("policy", snapshot_source)
        self._tables_source = tables_source
        self._ready = ready
        self.counters = counters
        self.config = config or PolicyConfig()
        self._metrics = metrics
        self._attributes = AttributeReader(metrics.attributes if metrics is not None else None)
        self._clock = clock
        self._quota_action = encode_action(self.config.quota_reply)
        self._limit_actions: dict[str, bytes] = {}
        # instance → [recipients accepted so far, start time]
        self._open: dict[bytes, list[float]] = {}
        # instance → time counted
        self._counted: dict[bytes, float] = {}

    def __call__(self, request: PolicyRequest) -> bytes | None:
        """The action, or None: nothing to answer from yet (or a failure), Postfix tries again
        later."""
        outcome = self._answers.answer("policy", self.decide, request)
        return outcome if type(outcome) is bytes else None

    @property
    def snapshot_source(self) -> SnapshotSource:
        return self._snapshot_source

    def decide(self, snapshot: Snapshot, request: PolicyRequest) -> bytes | Failure:
        """The action, or a temporary failure while the limits or the counts are not loaded."""
        tables = self._tables_source()
        if tables is None or not self._ready():
            return NOT_LOADED
        state = request.get(b"protocol_state", b"")
        now = self._clock()
        if state == b"RCPT":
            action, label = self._rcpt(request, snapshot, tables, now)
        elif state == b"END-OF-MESSAGE":
            action, label = self._end_of_message(request, snapshot, tables, now)
        else:
            action, label = DUNNO, "dunno"
        if self._metrics is not None:
            self._metrics.actions[(STATES.get(state, OTHER_STATE), label)].inc()
        return action

    def _rcpt(
        self, request: PolicyRequest, snapshot: Snapshot, tables: PolicyTables, now: float
    ) -> tuple[bytes, str]:
        if self.config.check_quota and tables.full_mailboxes:
            recipient = self._attributes.address(request, "recipient")
            if recipient and over_quota(snapshot, tables, recipient):
                return self._quota_action, "over_quota"
        sender = self._sender(request, snapshot)
        if sender is None:
            return DUNNO, "dunno"
        instance = self._attributes.instance(request)
        transaction = self._open.get(instance) if instance else None
        accepted = int(transaction[0]) if transaction is not None else 0
        refusal = self._over_limit(*sender, tables, 1, accepted + 1, now)
        if refusal is not None:
            return refusal, "rate_limited"
        if instance:
            if transaction is None:
                self._remember(self._open, instance, [1, now])
            else:
                transaction[0] += 1
        return DUNNO, "dunno"

    def _end_of_message(
        self, request: PolicyRequest, snapshot: Snapshot, tables: PolicyTables, now: float
    ) -> tuple[bytes, str]:
        sender = self._sender(request, snapshot)
        if sender is None:
            return DUNNO, "dunno"
        instance = self._attributes.instance(request)
        transaction = self._open.pop(instance, None) if instance else None
        if instance and instance in self._counted:
            return DUNNO, "dunno"  # this message is counted already
        recipients = self._attributes.recipient_count(request)
        if recipients <= 0:
            recipients = int(transaction[0]) if transaction is not None else 1
        refusal = self._over_limit(*sender, tables, 1, recipients, now)
        if refusal is not None:
            return refusal, "rate_limited"
        email, domain = sender
        self.counters.add(MAILBOX, email, 1, recipients, now)
        self.counters.add(DOMAIN, domain, 1, recipients, now)
        if instance:
            self._remember(self._counted, instance, now)
        return DUNNO, "dunno"

    def _sender(self, request: PolicyRequest, snapshot: Snapshot) -> tuple[str, str] | None:
        """(mailbox address, domain) of the authenticated sender; None if not authenticated
        or not one of our mailboxes (a master user, say: no limits are known for it)."""
        login = self._attributes.address(request, "sasl_username")
        record = find_login(snapshot, login) if login else None
        if record is None:
            return None
        return record.email, record.email.rpartition("@")[2]

    def _over_limit(
        self, email: str, domain: str, tables: PolicyTables, messages: int, recipients: int,
        now: float,
    ) -> bytes | None:
        """The limit reply if adding `messages` and `recipients` would pass a limit."""
        mailbox_limits, domain_limits, reply = tables.limits_for(email, domain)
        for kind, name, limits in ((MAILBOX, email, mailbox_limits),
                                   (DOMAIN, domain, domain_limits)):
            if not limits.limited:
                continue
            hit = self._limit_hit(kind, name, limits, messages, recipients, now)
            if hit is not None:
                if self._metrics is not None:
                    self._metrics.limits[hit].inc()
                log.debug("%s %s is over its limit %s", kind, name, hit)
                return self._limit_action(reply or self.config.rate_limit_reply)
        return None

    def _limit_hit(
        self, kind: str, name: str, limits: SendLimits, messages: int, recipients: int,
        now: float,
    ) -> str | None:
        for window, period in _WINDOWS:
            if window == HOUR:
                max_messages, max_recipients = limits.messages_per_hour, limits.recipients_per_hour
            else:
                max_messages, max_recipients = limits.messages_per_day, limits.recipients_per_day
            if not (max_messages or max_recipients):
                continue
            sent_messages, sent_recipients = self.counters.sent(kind, name, window, now)
            if max_messages and sent_messages + messages > max_messages:
                return f"{kind}_messages_per_{period}"
            if max_recipients and sent_recipients + recipients > max_recipients:
                return f"{kind}_recipients_per_{period}"
        return None

    def _limit_action(self, reply: str) -> bytes:
        action = self._limit_actions.get(reply)
        if action is None:
            action = self._limit_actions[reply] = encode_action(reply)
        return action

    def _remember(self, table: dict[bytes, Any], instance: bytes, value: object) -> None:
        if len(table) >= MAX_TRANSACTIONS:
            del table[next(iter(table))]  # the oldest
        table[instance] = value

    def expire(self) -> None:
        """Forget transactions older than TRANSACTION_TTL (called now and then)."""
        horizon = self._clock() - TRANSACTION_TTL
        # Insertion order is time order: only the expired front of each table is visited.
        counted, open_ = self._counted, self._open
        while counted:
            instance = next(iter(counted))
            if counted[instance] >= horizon:
                break
            del counted[instance]
        while open_:
            instance = next(iter(open_))
            if open_[instance][1] >= horizon:
                break
            del open_[instance]
