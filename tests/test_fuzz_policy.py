"""Fuzzing the Postfix policy listener: generated requests (every attribute, any value) and
broken framing, in any pieces. No exception escapes, every reply is one of the service's
actions, the counts stay storable, and a real lookupd fed garbage keeps serving other
connections within bounded memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookupd.counters import SendCounters, storable
from lookupd.policy.request import MAX_REQUEST_BYTES, PolicyRequestError, PolicyRequestParser
from lookupd.policy.rules import DEFAULT_QUOTA_REPLY, DEFAULT_RATE_LIMIT_REPLY, PolicyDecider
from lookupd.policy.server import PolicyProtocol, PolicyResponder
from tests.support.fuzz import Watch, drive, exchange, fuzz_settings, policy_replies, split_at
from tests.support.lookupd_process import LookupdProcess, lookupd_process, mail_database
from tests.support.policy_requests import RCPT_ATTRIBUTES, TABLES, postfix_request, snapshot

ACTIONS = {b"DUNNO", DEFAULT_QUOTA_REPLY.encode(), DEFAULT_RATE_LIMIT_REPLY.encode()}
NAMES = [name.encode() for name, _ in RCPT_ATTRIBUTES]


def no_newline(data: bytes) -> bytes:
    return data.replace(b"\n", b"")


values = st.one_of(
    st.sampled_from([b"", b"0", b"1", b"RCPT", b"END-OF-MESSAGE", b"DATA", b"smtpd_access_policy",
                     b"alice@example.org", b"bob@example.org", b"info@example.org",
                     b"alice@example.net", b"team@example.org", b"99999999999999999999999",
                     b"-5", b"9" * 5000, b"1a2b.6745c2f1.8d3e0.0", b"\xff\xfe", b"a\x00b"]),
    st.integers(-(2**70), 2**70).map(lambda n: b"%d" % n),
    st.binary(max_size=40).map(no_newline),
)
attributes = st.dictionaries(
    st.one_of(st.sampled_from(NAMES), st.binary(min_size=1, max_size=12).map(
        lambda name: no_newline(name).replace(b"=", b"") or b"x")),
    values, max_size=12,
)


def request_of(fields: dict[bytes, bytes], base: bool) -> dict[bytes, bytes]:
    request = {name.encode(): value.encode() for name, value in RCPT_ATTRIBUTES} if base else {}
    request.update(fields)
    return request


def encode(request: dict[bytes, bytes]) -> bytes:
    return b"".join(name + b"=" + value + b"\n" for name, value in request.items()) + b"\n"


requests = st.builds(request_of, attributes, st.booleans())
streams = st.lists(
    st.one_of(requests.map(encode), requests.map(encode), st.binary(max_size=30),
              st.sampled_from([b"\n", b"\n\n", b"noequals\n\n", b"a=" + b"x" * 20_000 + b"\n"])),
    max_size=5,
).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=30_000), max_size=5)


@given(data=streams, cuts=cuts)
@fuzz_settings(600)
def test_request_parser_only_raises_request_errors(data: bytes, cuts: list[int]) -> None:
    parser = PolicyRequestParser()
    try:
        for piece in split_at(data, cuts):
            for request in parser.feed(piece):
                assert all(isinstance(k, bytes) and isinstance(v, bytes)
                           for k, v in request.items())
            # What it keeps piece by piece is what counting the partial request would give.
            assert parser._newlines == parser._buffer.count(b"\n")
            assert parser._line_start == parser._buffer.rfind(b"\n") + 1
    except PolicyRequestError:
        return
    assert len(parser._buffer) <= MAX_REQUEST_BYTES


def outcome(pieces: list[bytes]) -> tuple[list[dict[bytes, bytes]], str]:
    parser = PolicyRequestParser()
    requests: list[dict[bytes, bytes]] = []
    try:
        for piece in pieces:
            requests += parser.feed(piece)
    except PolicyRequestError as error:
        return requests, str(error)
    return requests, ""


@given(data=streams, cuts=cuts)
@fuzz_settings(600)
def test_any_pieces_frame_as_the_whole(data: bytes, cuts: list[int]) -> None:
    """The counts kept piece by piece (lines, the last line's start) see at least what a look
    at the whole stream sees. (Pieces may see more: a long line is refused while it is the last
    one received, where the whole stream shows it followed by others.)"""
    requests, error = outcome(split_at(data, cuts))
    whole_requests, whole_error = outcome([data])
    if whole_error:
        assert error
    elif not error:
        assert requests == whole_requests


@pytest.fixture(scope="module")
def decider() -> PolicyDecider:
    built = snapshot()
    return PolicyDecider(lambda: built, lambda: TABLES, SendCounters())


@given(request=requests)
@fuzz_settings(1000)
def test_every_request_gets_one_of_the_actions(decider: PolicyDecider,
                                               request: dict[bytes, bytes]) -> None:
    reply = decider(request)
    assert reply is not None
    policy_replies(reply, ACTIONS)
    # Whatever was counted can be stored: nothing out of bounds reaches the batch.
    batch = decider.counters.take_batch()
    assert all(storable(row) for row in batch), batch
    decider.counters.confirm(batch, [])


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@given(data=streams, cuts=cuts)
@fuzz_settings(600)
def test_policy_connection_answers_or_closes(
    loop: asyncio.AbstractEventLoop, decider: PolicyDecider, data: bytes, cuts: list[int]
) -> None:
    transport = drive(loop, PolicyProtocol(PolicyResponder(decider)), split_at(data, cuts))
    policy_replies(bytes(transport.data), ACTIONS)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp, POLICY_FLUSH_INTERVAL="0.1") as process:
        yield process


def test_a_real_lookupd_fed_garbage(daemon: LookupdProcess) -> None:
    valid = postfix_request(sasl_username="", recipient="bob@example.org")
    deadline = time.monotonic() + 10
    while exchange(daemon.policy, valid) != b"action=DUNNO\n\n":  # the limits are loading
        assert time.monotonic() < deadline, "the policy service did not become ready"
        time.sleep(0.1)

    def other_client() -> bool:
        return exchange(daemon.policy, valid) == b"action=DUNNO\n\n"

    @given(data=st.one_of(streams, st.binary(min_size=1, max_size=300)))
    @fuzz_settings(400)
    def garbage(data: bytes) -> None:
        policy_replies(exchange(daemon.policy, data), ACTIONS)

    with Watch(daemon, other_client) as watch:
        garbage()
        time.sleep(0.3)  # a few flushes of what was counted
    watch.assert_served_and_bounded()
    assert "sending counts: cannot reach the database" not in daemon.log_text()
