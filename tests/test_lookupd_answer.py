"""The one answer path every lookupd protocol formats (`lookupd.answer`), the delivery mailbox
rule the policy service takes from `lookupd.resolve`, and the netstring parser's path for a
whole request received at once."""

from __future__ import annotations

import logging

import pytest

from dinomail.records import AliasDomainRow, AliasRow, DomainRow, MailboxRow, MailData
from lookupd.answer import INCOMPLETE, INTERNAL, NOT_LOADED, Answers, ByteReplies, Failure
from lookupd.metrics import LookupdMetrics
from lookupd.netstring import NetstringError, NetstringParser, NetstringTooLong
from lookupd.resolve import resolve_delivery_mailbox, resolve_mailbox
from lookupd.snapshot import Snapshot

DATA = MailData(
    [DomainRow(1, "example.org", True), DomainRow(2, "example.net", True)],
    [AliasDomainRow(1, "alias.example", 1, True)],
    [
        MailboxRow(1, 1, "alice@example.org", "{PLAIN}a", 100, True),
        MailboxRow(2, 1, "bob@example.org", "{PLAIN}b", None, True),
        MailboxRow(3, 1, "off@example.org", "{PLAIN}c", None, False),
    ],
    [
        AliasRow(1, 1, "info@example.org", "alice@example.org"),
        AliasRow(2, 1, "team@example.org", "alice@example.org"),
        AliasRow(3, 1, "team@example.org", "bob@example.org"),
        AliasRow(4, 1, "tagged@example.org", "alice+tagged@example.org"),
        AliasRow(5, 2, "@example.net", "bob@example.org"),
        AliasRow(6, 1, "away@example.org", "someone@elsewhere.example"),
    ],
)
MAPS = ("m",)


def snapshot(*, complete: bool = True) -> Snapshot:
    return Snapshot.build(DATA, complete=complete)


def sample(metrics: LookupdMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def answers(source: Snapshot | None) -> tuple[Answers, LookupdMetrics]:
    metrics = LookupdMetrics()
    return Answers("socketmap", lambda: source, metrics.recorder("socketmap", MAPS)), metrics


def counted(metrics: LookupdMetrics, result: str) -> float:
    return sample(metrics, "dinomail_lookupd_lookups_total", protocol="socketmap", map="m",
                  result=result)


def test_found_value_is_returned_and_counted_as_ok() -> None:
    answer, metrics = answers(snapshot())
    assert answer.answer("m", resolve_mailbox, "Alice@Example.org") == "example.org/alice/"
    assert counted(metrics, "ok") == 1
    assert sample(metrics, "dinomail_lookupd_lookup_seconds_count", protocol="socketmap") == 1


def test_miss_is_not_found_in_a_snapshot_from_the_database() -> None:
    answer, metrics = answers(snapshot())
    assert answer.answer("m", resolve_mailbox, "nobody@example.org") is None
    assert counted(metrics, "notfound") == 1


def test_miss_is_a_temporary_failure_in_a_snapshot_read_from_disk() -> None:
    answer, metrics = answers(snapshot(complete=False))
    assert answer.answer("m", resolve_mailbox, "nobody@example.org") is INCOMPLETE
    # What the file holds is still found.
    assert answer.answer("m", resolve_mailbox, "alice@example.org") == "example.org/alice/"
    assert counted(metrics, "temp") == 1
    assert counted(metrics, "ok") == 1


def test_no_snapshot_is_a_temporary_failure_whatever_the_key() -> None:
    answer, metrics = answers(None)
    assert answer.answer("m", resolve_mailbox, "alice@example.org") is NOT_LOADED
    assert answer.answer("m", resolve_mailbox, None) is NOT_LOADED
    assert counted(metrics, "temp") == 2


def test_a_key_that_cannot_be_text_is_not_found() -> None:
    answer, metrics = answers(snapshot(complete=False))
    assert answer.answer("m", resolve_mailbox, None) is None
    assert counted(metrics, "notfound") == 1


def test_an_exception_is_logged_counted_and_a_temporary_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(snapshot: Snapshot, key: str) -> str | None:
        raise RuntimeError("a bug in a rule")

    answer, metrics = answers(snapshot())
    with caplog.at_level(logging.ERROR, logger="dinomail.lookupd.answer"):
        assert answer.answer("m", broken, "alice@example.org") is INTERNAL
    assert "socketmap lookup m failed" in caplog.text
    assert "a bug in a rule" in caplog.text
    assert counted(metrics, "temp") == 1
    assert sample(metrics, "dinomail_lookupd_lookup_errors_total", protocol="socketmap",
                  reason="exception") == 1


def test_a_failing_snapshot_source_is_a_temporary_failure() -> None:
    def source() -> Snapshot | None:
        raise RuntimeError("holder broken")

    metrics = LookupdMetrics()
    answer = Answers("socketmap", source, metrics.recorder("socketmap", MAPS))
    assert answer.answer("m", resolve_mailbox, "alice@example.org") is INTERNAL


def test_a_failure_returned_by_a_lookup_is_counted_under_its_error() -> None:
    too_large = Failure("result too large", "reply_too_large")
    answer, metrics = answers(snapshot())
    assert answer.answer("m", lambda snapshot, key: too_large, "alice@example.org") is too_large
    assert counted(metrics, "temp") == 1
    assert sample(metrics, "dinomail_lookupd_lookup_errors_total", protocol="socketmap",
                  reason="reply_too_large") == 1


def test_without_metrics_the_outcome_is_the_same() -> None:
    answer = Answers("socketmap", snapshot)
    assert answer.answer("m", resolve_mailbox, "bob@example.org") == "example.org/bob/"


def test_byte_replies_format_each_outcome() -> None:
    replies = ByteReplies(b"N\n", lambda reason: b"F" + reason + b"\n")
    assert replies(b"O{}\n") == b"O{}\n"
    assert replies(None) == b"N\n"
    assert replies(NOT_LOADED) == b"Fmail data not loaded yet\n"
    assert replies(INCOMPLETE) == b"Fnot in the saved mail data, database unreachable\n"
    assert replies.failure(INTERNAL) == b"Finternal error\n"


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("alice@example.org", "alice@example.org"),
        ("alice+news@example.org", "alice@example.org"),  # the extension stripped
        ("info@example.org", "alice@example.org"),  # an alias with one destination
        ("info+x@example.org", "alice@example.org"),  # an alias, the extension kept
        ("tagged@example.org", "alice@example.org"),  # a destination with an extension
        ("alice@alias.example", "alice@example.org"),  # an alias domain
        ("anyone@example.net", "bob@example.org"),  # a catch-all
        ("team@example.org", None),  # several destinations
        ("away@example.org", None),  # delivered elsewhere
        ("off@example.org", None),  # an inactive mailbox receives nothing
        ("nobody@example.org", None),
    ],
)
def test_delivery_mailbox_follows_the_rules_of_resolve(address: str, mailbox: str | None) -> None:
    snap = snapshot()
    row = resolve_delivery_mailbox(snap, address)
    assert (row.email if row is not None else None) == mailbox


@pytest.mark.parametrize(
    "data",
    [b"5:hello,", b"0:,", b"005:hello,", b"5:hel,o,"],
)
def test_whole_netstring_at_once_reads_as_byte_by_byte(data: bytes) -> None:
    whole = NetstringParser(100).feed(data)
    parser = NetstringParser(100)
    pieces = [payload for byte in data for payload in parser.feed(bytes([byte]))]
    assert whole == pieces
    assert len(whole) == 1


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"101:" + b"x" * 101 + b",", NetstringTooLong),
        (b"5:hello;", NetstringError),
        (b"5:hello!,", NetstringError),  # one byte more than announced
        (b"x5:hello,", NetstringError),
    ],
)
def test_whole_bad_netstring_at_once_is_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        NetstringParser(100).feed(data)
