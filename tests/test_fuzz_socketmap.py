"""Fuzzing the netstring framing and the socketmap listener: generated requests, valid and
not, in any pieces. No exception escapes, every reply is a socketmap answer, and a real lookupd
fed garbage keeps serving other connections within bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookupd.netstring import (
    MAX_QUERY_BYTES,
    NetstringError,
    NetstringParser,
    encode_netstring,
)
from lookupd.snapshot import Snapshot
from lookupd.socketmap import MAX_REQUEST_BYTES, SocketmapProtocol
from tests.support.fuzz import Watch, drive, exchange, fuzz_settings, socketmap_replies, split_at
from tests.support.lookupd_process import LookupdProcess, lookupd_process, mail_database
from tests.support.socketmap_data import mail_data

MAPS = [b"domains", b"mailboxes", b"aliases", b"senders", b"nosuchmap", b""]
KEYS = [b"alice@example.com", b"info@example.com", b"x@example.com", b"example.com",
        b"everyone@big.example", b"alice+tag@example.org", b"@example.com"]

keys = st.one_of(st.sampled_from(KEYS), st.binary(max_size=40),
                 st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")))
requests = st.builds(lambda name, key: name + b" " + key, st.sampled_from(MAPS), keys)
# A piece of a stream: a well-formed request, or bytes that may break the framing anywhere.
pieces = st.one_of(
    requests.map(encode_netstring),
    requests.map(encode_netstring),
    st.binary(max_size=24),
    st.sampled_from([b"00000:,", b"5:abcde;", b"99999999999:", b":", b",", b"-1:x,",
                     b"%d:" % (MAX_REQUEST_BYTES + 1), b"10:short,"]),
)
streams = st.lists(pieces, max_size=8).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=6)


@given(payloads=st.lists(st.binary(max_size=300), max_size=6), cuts=cuts)
@fuzz_settings(800)
def test_netstrings_round_trip_in_any_pieces(payloads: list[bytes], cuts: list[int]) -> None:
    parser = NetstringParser(300)
    got: list[bytes] = []
    for piece in split_at(b"".join(map(encode_netstring, payloads)), cuts):
        got += parser.feed(piece)
    assert got == payloads
    assert parser.pending == 0


@given(data=st.one_of(streams, st.binary(max_size=200)), cuts=cuts)
@fuzz_settings(800)
def test_netstring_parser_only_raises_netstring_errors(data: bytes, cuts: list[int]) -> None:
    parser = NetstringParser()
    try:
        for piece in split_at(data, cuts):
            for payload in parser.feed(piece):
                assert len(payload) <= MAX_QUERY_BYTES
    except NetstringError:
        pass
    # What is held for an incomplete netstring stays within one request.
    assert parser.pending <= MAX_QUERY_BYTES + len(str(MAX_QUERY_BYTES)) + 1


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.build(mail_data())


@given(data=streams, cuts=cuts, loaded=st.booleans())
@fuzz_settings(1000)
def test_socketmap_connection_answers_or_closes(
    loop: asyncio.AbstractEventLoop, snapshot: Snapshot, data: bytes, cuts: list[int],
    loaded: bool,
) -> None:
    protocol = SocketmapProtocol(lambda: snapshot if loaded else None)
    transport = drive(loop, protocol, split_at(data, cuts))
    replies = socketmap_replies(bytes(transport.data))
    # One answer per request framed before any error, in order; bad framing closes.
    try:
        expected = NetstringParser(MAX_REQUEST_BYTES).feed(data)
        framed_fine = True
    except NetstringError:
        expected, framed_fine = [], False
    if framed_fine:
        assert len(replies) == len(expected)
    else:
        assert transport.closed
    if not loaded:
        assert all(reply.startswith((b"TEMP ", b"PERM ")) for reply in replies)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp) as process:
        yield process


def test_a_real_lookupd_fed_garbage(daemon: LookupdProcess) -> None:
    def other_client() -> bool:
        payload = encode_netstring(b"mailboxes alice@example.org")
        return exchange(daemon.socketmap, payload) == encode_netstring(b"OK example.org/alice/")

    @given(data=st.one_of(streams, st.binary(min_size=1, max_size=300)))
    @fuzz_settings(400)
    def garbage(data: bytes) -> None:
        socketmap_replies(exchange(daemon.socketmap, data))

    with Watch(daemon, other_client) as watch:
        garbage()
        # A request as long as Postfix may send, and an announced length past it.
        long_key = b"mailboxes " + b"a" * (MAX_QUERY_BYTES - 1)
        assert socketmap_replies(exchange(daemon.socketmap, encode_netstring(long_key))) == [
            b"NOTFOUND "
        ]
        assert exchange(daemon.socketmap, b"%d:" % (MAX_REQUEST_BYTES + 1) + b"x" * 65536) \
            == b""
    watch.assert_served_and_bounded()
