"""Fuzzing the Dovecot dict listener: generated handshakes, lookups, iterations and
transactions, valid and not, in any pieces. No exception escapes, every reply line is a dict
answer, quota values reach the writer only within bounds, and a real lookupd fed garbage keeps
serving other connections within bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookupd.batchwrite import INT64_MAX
from lookupd.dovecot.dict import DictProtocol, DictService
from lookupd.dovecot.tabescape import split_fields, tabescape, tabunescape
from lookupd.snapshot import Snapshot
from tests.support.dict_server import USERDB, Recorder, mail_data
from tests.support.fuzz import Watch, dict_replies, drive, exchange, fuzz_settings, split_at
from tests.support.lookupd_process import LookupdProcess, lookupd_process, mail_database


def no_newline(data: bytes) -> bytes:
    return data.replace(b"\n", b"")


junk = st.binary(max_size=16).map(no_newline)
ids = st.one_of(st.integers(0, 70).map(lambda n: b"%d" % n), junk,
                st.sampled_from([b"9" * 25, b"-1", b"+1", b"1" * 5000]))
numbers = st.one_of(st.integers(-(2**64), 2**64).map(lambda n: b"%d" % n), junk,
                    st.sampled_from([b"9223372036854775807", b"9223372036854775808",
                                     b"18446744073709551615", b"9" * 5000]))
keys = st.one_of(
    st.sampled_from([b"shared/passdb/alice@example.com", b"shared/userdb/bob@example.com",
                     b"shared/userdb/", b"priv/quota/storage", b"priv/quota/messages",
                     b"shared/passdb/carol@example.com", b"shared/other"]),
    junk.map(lambda key: b"shared/passdb/" + key),
    junk,
)
users = st.sampled_from([b"alice@example.com", b"bob@alias.example", b"", b"nobody@x"])


def line(*fields: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(*fields).map(lambda parts: b"\t".join(parts))


commands = st.one_of(
    st.sampled_from([b"H3\t2\t0\t\tauth", b"H3\t2\t0\t\tquota", b"H2\t2\t0\talice@example.com"
                     b"\tquota", b"H4\t0\t0\t\tauth", b"H9\t0\t0\t\tauth", b"H3\t2\t0\t\tnone"]),
    line(st.just(b"L"), keys).map(lambda b: b.replace(b"\t", b"", 1)),
    line(keys.map(lambda k: b"L" + k), users),
    line(st.just(b"I").map(lambda b: b), numbers, numbers, keys).map(
        lambda b: b.replace(b"I\t", b"I", 1)),
    line(st.sampled_from([b"B", b"R", b"C", b"D", b"T", b"V"]), ids, users).map(
        lambda b: b.replace(b"\t", b"", 1)),
    line(st.sampled_from([b"S", b"A", b"P"]), ids, keys, numbers).map(
        lambda b: b.replace(b"\t", b"", 1)),
    line(st.just(b"U"), ids, keys).map(lambda b: b.replace(b"\t", b"", 1)),
    junk,
)
streams = st.tuples(
    st.sampled_from([b"H3\t2\t0\t\tauth\n", b"H3\t2\t0\t\tquota\n", b""]),
    st.lists(commands, max_size=10).map(b"\n".join),
    st.sampled_from([b"\n", b""]),
).map(b"".join)
cuts = st.lists(st.integers(min_value=0, max_value=2000), max_size=5)


@given(fields=st.lists(st.binary(max_size=30), min_size=1, max_size=5))
@fuzz_settings(600)
def test_tab_escaping_round_trips(fields: list[bytes]) -> None:
    line = b"\t".join(map(tabescape, fields))
    assert b"\n" not in line
    assert split_fields(line) == (fields if line else [])  # an empty line has no fields


@given(data=st.binary(max_size=60))
@fuzz_settings(600)
def test_tab_unescaping_takes_any_bytes(data: bytes) -> None:
    assert isinstance(tabunescape(data), bytes)
    assert len(split_fields(data)) == (data.count(b"\t") + 1 if data else 0)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot.build(mail_data())


@given(data=streams, cuts=cuts, loaded=st.booleans())
@fuzz_settings(800)
def test_dict_connection_answers_or_closes(
    loop: asyncio.AbstractEventLoop, snapshot: Snapshot, data: bytes, cuts: list[int],
    loaded: bool,
) -> None:
    quota = Recorder()
    service = DictService(lambda: snapshot if loaded else None, userdb=USERDB,
                          quota_writer=quota)
    transport = drive(loop, DictProtocol(service), split_at(data, cuts))
    dict_replies(bytes(transport.data))
    for email, usage in quota.accepted:
        assert email in ("alice@example.com", "bob@example.com") or not loaded
        for value in (usage.bytes, usage.messages):
            assert value is None or 0 <= value <= INT64_MAX
        for delta in (usage.bytes_delta, usage.messages_delta):
            assert abs(delta) <= 10 * INT64_MAX  # ten increments at most here


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp) as process:
        yield process


def test_a_real_lookupd_fed_garbage(daemon: LookupdProcess) -> None:
    def other_client() -> bool:
        reply = exchange(daemon.dict_path, b"H3\t2\t0\t\tauth\n"
                         b"Lshared/passdb/alice@example.org\talice@example.org\n")
        return reply.startswith(b"O{") and reply.endswith(b"}\n")

    @given(data=st.one_of(streams, st.binary(min_size=1, max_size=300)))
    @fuzz_settings(400)
    def garbage(data: bytes) -> None:
        dict_replies(exchange(daemon.dict_path, data))

    with Watch(daemon, other_client) as watch:
        garbage()
    watch.assert_served_and_bounded()
