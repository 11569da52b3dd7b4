"""The policy service's parts without I/O: the attribute framing, the counting windows, the
decisions at RCPT and END-OF-MESSAGE, and the validation of replies."""

from __future__ import annotations

import pytest

from dinomail.sendwindows import DAY, HOUR
from dinomail.store.policy import SendCount, normalize_policy_reply
from dinomail.validation import ValidationError
from lookupd.counters import SendCounters
from lookupd.policy.request import (
    MAX_ATTRIBUTES,
    MAX_LINE_BYTES,
    PolicyRequestError,
    PolicyRequestParser,
)
from lookupd.policy.rules import DUNNO, PolicyConfig, PolicyDecider
from lookupd.policy.tables import DomainLimits, PolicyTables, SendLimits
from lookupd.resolve import resolve_delivery_mailbox
from tests.support.policy_client import DEFER
from tests.support.policy_requests import RCPT_ATTRIBUTES, encode, request, snapshot

# --- framing -------------------------------------------------------------------------------------


def test_a_full_request_fed_byte_by_byte() -> None:
    parser = PolicyRequestParser()
    data = encode(RCPT_ATTRIBUTES)
    parsed = []
    for index in range(len(data)):
        parsed.extend(parser.feed(data[index:index + 1]))
        if index < len(data) - 1:
            assert not parsed and parser.pending
    assert parsed == [request()]
    assert not parser.pending


def test_a_whole_request_at_once_then_the_next_in_pieces() -> None:
    parser = PolicyRequestParser()
    assert parser.feed(encode(RCPT_ATTRIBUTES)) == [request()]
    assert not parser.pending
    data = encode(RCPT_ATTRIBUTES)
    assert parser.feed(data[:10]) == []
    assert parser.pending
    assert parser.feed(data[10:]) == [request()]
    assert not parser.pending


@pytest.mark.parametrize(
    "data",
    [b"\n\n", b"request=smtpd_access_policy\nno equals sign\n\n", b"=\n\n\n"],
)
def test_a_bad_request_at_once_is_refused(data: bytes) -> None:
    with pytest.raises(PolicyRequestError):
        PolicyRequestParser().feed(data)


def test_pipelined_requests_in_arbitrary_pieces() -> None:
    data = encode(RCPT_ATTRIBUTES) + encode([*RCPT_ATTRIBUTES[:-1], ("instance", "x")]) * 2
    for size in (1, 2, 3, 7, 100, len(data)):
        parser = PolicyRequestParser()
        parsed = []
        for start in range(0, len(data), size):
            parsed.extend(parser.feed(data[start:start + size]))
        assert len(parsed) == 3
        assert parsed[0] == request()
        assert parsed[2][b"instance"] == b"x"


def test_values_keep_equals_signs_and_repeated_names_keep_the_last() -> None:
    [parsed] = PolicyRequestParser().feed(b"request=smtpd_access_policy\nccert_subject=CN=a=b\n"
                                          b"sender=a@x\nsender=b@x\n\n")
    assert parsed[b"ccert_subject"] == b"CN=a=b"
    assert parsed[b"sender"] == b"b@x"


@pytest.mark.parametrize(
    "data",
    [
        b"\n",  # an empty request
        b"request=smtpd_access_policy\nno equals sign\n\n",
        b"request=smtpd_access_policy\nname=" + b"x" * (MAX_LINE_BYTES + 1) + b"\n\n",
        b"name=" + b"x" * (MAX_LINE_BYTES + 1),  # an endless line, before its end arrives
        b"".join(b"a%d=1\n" % n for n in range(MAX_ATTRIBUTES + 1)) + b"\n",
        b"".join(b"a%d=1\n" % n for n in range(MAX_ATTRIBUTES + 1)),  # before its end too
    ],
)
def test_malformed_input_is_refused(data: bytes) -> None:
    parser = PolicyRequestParser()
    with pytest.raises(PolicyRequestError):
        for start in range(0, len(data), 4096):
            parser.feed(data[start:start + 4096])


def test_the_largest_request_allowed() -> None:
    attributes = [(f"a{n}", "x" * 600) for n in range(MAX_ATTRIBUTES)]
    [parsed] = PolicyRequestParser().feed(encode(attributes))
    assert len(parsed) == MAX_ATTRIBUTES


# --- windows -------------------------------------------------------------------------------------

# A midnight (UTC): every bucket, of either length, starts at T0 + a multiple of its length.
T0 = 1_800_000_000 - 1_800_000_000 % DAY


def test_sliding_hour_weighs_the_oldest_bucket() -> None:
    counters = SendCounters()
    counters.add("mailbox", "a@x", 6, 60, T0 + 5)  # in bucket [T0, T0 + 600)
    assert counters.sent("mailbox", "a@x", HOUR, T0 + 10) == (6, 60)
    assert counters.sent("mailbox", "a@x", HOUR, T0 + 3599) == (6, 60)
    # At T0 + 3900 the hour window starts at T0 + 300: half of the bucket is still inside.
    assert counters.sent("mailbox", "a@x", HOUR, T0 + 3900) == (3, 30)
    assert counters.sent("mailbox", "a@x", HOUR, T0 + 4200) == (0, 0)
    # The day window still holds it whole, then weighs its hour bucket.
    assert counters.sent("mailbox", "a@x", DAY, T0 + 4200) == (6, 60)
    assert counters.sent("mailbox", "a@x", DAY, T0 + DAY + 1800) == (3, 30)
    assert counters.sent("mailbox", "a@x", DAY, T0 + DAY + 3600) == (0, 0)
    # Other subjects are apart.
    assert counters.sent("domain", "x", HOUR, T0 + 10) == (0, 0)


def test_no_doubling_at_the_turn_of_the_hour() -> None:
    # A fixed window would allow a full limit at 10:59 and another at 11:00.
    counters = SendCounters()
    counters.add("mailbox", "a@x", 100, 100, T0 + 3599)
    assert counters.sent("mailbox", "a@x", HOUR, T0 + 3601)[0] == 100


def test_flush_round_trip_keeps_what_was_counted_meanwhile() -> None:
    counters = SendCounters()
    counters.add("mailbox", "a@x", 1, 2, T0)
    batch = counters.take_batch()
    assert sorted(batch) == [SendCount("mailbox", "a@x", 600, T0, 1, 2),
                             SendCount("mailbox", "a@x", 3600, T0, 1, 2)]
    counters.add("mailbox", "a@x", 1, 1, T0)  # while the batch is being written
    # The database now holds our batch and 10 messages from other daemons.
    counters.confirm(batch, [SendCount("mailbox", "a@x", 600, T0, 11, 12),
                             SendCount("mailbox", "a@x", 3600, T0, 11, 12)])
    assert counters.sent("mailbox", "a@x", HOUR, T0) == (12, 13)
    assert [row.messages for row in counters.take_batch()] == [1, 1]


def test_a_failed_flush_is_retried_and_the_last_read_replaces_the_stored_totals() -> None:
    counters = SendCounters()
    counters.add("domain", "x", 1, 1, T0)
    batch = counters.take_batch()
    assert counters.take_batch() == []
    counters.restore(batch)
    assert sorted(counters.take_batch()) == sorted(batch)
    counters.merge([SendCount("domain", "x", 600, T0, 5, 5)])
    assert counters.sent("domain", "x", HOUR, T0) == (6, 6)
    # An admin's reset zeroed the row: the stored total goes down; the unwritten send stays.
    counters.merge([SendCount("domain", "x", 600, T0, 0, 0)])
    assert counters.sent("domain", "x", HOUR, T0) == (1, 1)


def test_expired_buckets_are_forgotten_unless_unwritten() -> None:
    counters = SendCounters()
    counters.add("mailbox", "a@x", 1, 1, T0)
    counters.expire(T0 + 2 * DAY)
    assert len(counters) == 1  # still pending: it must reach the database first
    counters.confirm(counters.take_batch(), [])
    counters.expire(T0 + 2 * DAY)
    assert len(counters) == 0


# --- decisions -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = float(T0 + 100)

    def __call__(self) -> float:
        return self.now


def decider(tables: PolicyTables, **config: object) -> tuple[PolicyDecider, Clock]:
    clock = Clock()
    decide = PolicyDecider(
        snapshot, lambda: tables, SendCounters(), config=PolicyConfig(**config),  # type: ignore[arg-type]
        clock=clock,
    )
    return decide, clock


LIMITED = PolicyTables(
    domains={
        "example.org": DomainLimits(
            mailbox_default=SendLimits(messages_per_hour=2, recipients_per_day=5),
            total=SendLimits(messages_per_day=3),
            reply="",
        ),
        "other.org": DomainLimits(SendLimits(messages_per_hour=1), SendLimits(), "450 4.7.1 Slow"),
    },
    mailboxes={"bob@example.org": SendLimits(messages_per_hour=0, recipients_per_day=5)},
)


def send(decide: PolicyDecider, sender: str, recipients: int, instance: str) -> list[bytes]:
    """What a message gets: a reply per RCPT, then at END-OF-MESSAGE if all were accepted."""
    replies = [
        decide(request(sasl_username=sender, instance=instance, recipient=f"r{n}@far.example"))
        for n in range(recipients)
    ]
    accepted = sum(reply == DUNNO for reply in replies)
    if accepted:
        replies.append(decide(request(
            protocol_state="END-OF-MESSAGE", sasl_username=sender, instance=instance,
            recipient="", recipient_count=str(accepted),
        )))
    return replies  # type: ignore[return-value]


def test_under_the_limits_everything_is_dunno_never_ok() -> None:
    decide, _ = decider(LIMITED)
    assert send(decide, "alice@example.org", 2, "m1") == [DUNNO] * 3
    assert decide(request(protocol_state="CONNECT")) == DUNNO
    assert decide(request(sasl_username="", recipient="alice@example.org")) == DUNNO


def test_messages_per_hour_of_a_mailbox() -> None:
    decide, clock = decider(LIMITED)
    assert send(decide, "alice@example.org", 1, "m1") == [DUNNO, DUNNO]
    assert send(decide, "alice@example.org", 1, "m2") == [DUNNO, DUNNO]
    assert send(decide, "alice@example.org", 1, "m3") == [DEFER]
    clock.now += 3600  # the oldest 10-minute bucket is still partly inside the hour
    assert send(decide, "alice@example.org", 1, "m4") == [DEFER]
    clock.now += 600
    assert send(decide, "alice@example.org", 1, "m5") == [DUNNO, DUNNO]


def test_recipients_per_day_counts_the_transaction_so_far() -> None:
    decide, _ = decider(LIMITED)
    # 5 recipients a day: a message to 7 gets 5 accepted, 2 deferred, and counts 5.
    assert send(decide, "bob@example.org", 7, "m1") == [DUNNO] * 5 + [DEFER] * 2 + [DUNNO]
    assert send(decide, "bob@example.org", 1, "m2") == [DEFER]


def test_domain_totals_and_a_mailbox_override_to_unlimited() -> None:
    decide, _ = decider(LIMITED)
    # bob's own row lifts the hourly message limit; the domain's 3 a day still apply to all.
    assert send(decide, "bob@example.org", 1, "m1") == [DUNNO, DUNNO]
    assert send(decide, "bob@example.org", 1, "m2") == [DUNNO, DUNNO]
    assert send(decide, "Bob@Example.NET", 1, "m3") == [DUNNO, DUNNO]  # alias domain login
    assert send(decide, "alice@example.org", 1, "m4") == [DEFER]
    assert decide.counters.sent("domain", "example.org", DAY, T0 + 100) == (3, 3)
    assert decide.counters.sent("mailbox", "bob@example.org", DAY, T0 + 100) == (3, 3)


def test_a_domain_reply_and_unknown_logins() -> None:
    decide, _ = decider(LIMITED)
    assert send(decide, "carol@other.org", 1, "m1") == [DUNNO, DUNNO]
    assert send(decide, "carol@other.org", 1, "m2") == [b"action=450 4.7.1 Slow\n\n"]
    # Not a mailbox (a master user, a deleted mailbox): no limits known, nothing counted.
    assert send(decide, "ghost@example.org", 5, "m3") == [DUNNO] * 6
    assert len(decide.counters) == 2  # carol and other.org


def test_a_message_is_counted_once_per_instance() -> None:
    decide, _ = decider(LIMITED)
    end = request(protocol_state="END-OF-MESSAGE", instance="m1", recipient_count="2")
    assert decide(end) == DUNNO
    assert decide(end) == DUNNO  # Postfix retrying after a lost connection
    assert decide.counters.sent("mailbox", "alice@example.org", HOUR, T0 + 100) == (1, 2)


def test_end_of_message_refuses_what_no_longer_fits() -> None:
    decide, _ = decider(LIMITED)
    rcpt = [decide(request(instance=f"m{n}")) for n in range(3)]
    assert rcpt == [DUNNO] * 3  # three sessions at once, each under the limit at RCPT
    ends = [decide(request(protocol_state="END-OF-MESSAGE", instance=f"m{n}",
                           recipient_count="1")) for n in range(3)]
    assert ends == [DUNNO, DUNNO, DEFER]
    assert decide.counters.sent("mailbox", "alice@example.org", HOUR, T0 + 100) == (2, 2)


def test_abandoned_transactions_are_forgotten() -> None:
    decide, clock = decider(LIMITED)
    for n in range(4):
        decide(request(instance=f"abandoned{n}"))
    assert len(decide._open) == 4
    clock.now += 7200
    decide.expire()
    assert not decide._open


@pytest.mark.parametrize(
    ("recipient", "refused"),
    [
        ("alice@example.org", True),
        ("Alice+folder@Example.ORG", True),  # extension and case
        ("alice@example.net", True),  # alias domain
        ("info@example.org", True),  # an alias to alice alone
        ("team@example.org", False),  # alice and bob: bob still wants it
        ("bob@example.org", False),
        ("carol@other.org", False),  # no quota
        ("someone@far.example", False),  # not ours
        ("nobody@example.org", False),  # unknown: Postfix refuses it itself
    ],
)
def test_full_mailbox_refused_at_rcpt(recipient: str, refused: bool) -> None:
    tables = PolicyTables(full_mailboxes={1: 1000, 3: 5000})
    decide, _ = decider(tables)
    reply = decide(request(recipient=recipient, sasl_username=""))
    assert reply == (b"action=552 5.2.2 Mailbox full\n\n" if refused else DUNNO)


def test_quota_reply_and_switch() -> None:
    tables = PolicyTables(full_mailboxes={1: 1000})
    decide, _ = decider(tables, quota_reply="452 4.2.2 Mailbox full, try later")
    assert decide(request(recipient="alice@example.org")) == (
        b"action=452 4.2.2 Mailbox full, try later\n\n"
    )
    decide, _ = decider(tables, check_quota=False)
    assert decide(request(recipient="alice@example.org")) == DUNNO
    # A quota raised since the usage was loaded lets mail in at once.
    decide, _ = decider(PolicyTables(full_mailboxes={1: 999}))
    assert decide(request(recipient="alice@example.org")) == DUNNO


def test_recipient_mailbox_follows_one_destination_only() -> None:
    snap = snapshot()
    assert resolve_delivery_mailbox(snap, "info@example.org").email == "alice@example.org"  # type: ignore[union-attr]
    assert resolve_delivery_mailbox(snap, "team@example.org") is None


def test_nothing_loaded_means_disconnect() -> None:
    counters = SendCounters()
    assert PolicyDecider(lambda: None, PolicyTables, counters)(request()) is None
    assert PolicyDecider(snapshot, lambda: None, counters)(request()) is None
    assert PolicyDecider(snapshot, PolicyTables, counters, ready=lambda: False)(request()) is None


# --- replies admins and settings choose ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("", ""),
        ("defer_if_permit 4.7.1 Slow down", "DEFER_IF_PERMIT 4.7.1 Slow down"),
        ("REJECT", "REJECT"),
        ("452 4.2.2 Mailbox full", "452 4.2.2 Mailbox full"),
        ("552 5.2.2 Mailbox full", "552 5.2.2 Mailbox full"),
        ("450 Try later", "450 Try later"),
    ],
)
def test_policy_replies_accepted(value: str, normalized: str) -> None:
    assert normalize_policy_reply(value, "reply") == normalized


@pytest.mark.parametrize(
    "value",
    ["OK", "DUNNO", "250 fine", "452 5.2.2 mixed", "REJECT 4.7.1 mixed", "PREPEND X: y",
     "450 Zu viele Nachrichten, später", "DEFER\ttab"],
)
def test_policy_replies_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        normalize_policy_reply(value, "reply")
