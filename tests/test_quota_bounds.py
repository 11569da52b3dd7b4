"""Quota usage bounded where it arrives (0..2^63-1) and written so that one mailbox's values
never block the others: `S1 priv/quota/storage 9223372036854775808` once stopped the usage of
every mailbox from being stored."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from dinomail.store import Store
from lookupd.batchwrite import INT64_MAX
from lookupd.metrics import LookupdMetrics
from lookupd.quota import QuotaWriter, Usage
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import fill_mail_data
from tests.support.quota_data import make_mailboxes, usage_of


async def dict_exchange(path: str, data: bytes, replies: int) -> list[bytes]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(data)
        async with asyncio.timeout(5):
            return [(await reader.readline()).rstrip(b"\n") for _ in range(replies)]
    finally:
        writer.close()


async def test_a_usage_past_bigint_is_refused_and_blocks_no_other_mailbox(
    store: Store, tmp_path: Path
) -> None:
    """The attack, through a real lookupd's dict socket: alice's impossible value is refused
    at commit (`F`), and bob's usage is stored at the next flush."""
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path, QUOTA_FLUSH_INTERVAL="0.05") as (
        daemon, settings
    ):
        path = settings.DICT_LISTEN.removeprefix("unix:")
        replies = await dict_exchange(path, (
            b"H3\t2\t0\t\tquota\n"
            b"B1\talice@example.org\n"
            b"S1\tpriv/quota/storage\t9223372036854775808\n"
            b"S1\tpriv/quota/messages\t1\n"
            b"C1\n"
            b"B2\tbob@example.org\n"
            b"S2\tpriv/quota/storage\t5000\n"
            b"S2\tpriv/quota/messages\t3\n"
            b"C2\n"
        ), 2)
        assert replies[0].startswith(b"F1\t") and b"from 0 to 9223372036854775807" in replies[0]
        assert replies[1] == b"O2"
        deadline = time.monotonic() + 10
        while await usage_of(store, "bob@example.org") != (5000, 3):
            assert time.monotonic() < deadline, "bob's usage was not stored"
            await asyncio.sleep(0.05)
        assert await usage_of(store, "alice@example.org") == (0, 0)
        assert daemon.quota_writer.pending == 0
        # The largest value a BIGINT holds is taken.
        replies = await dict_exchange(path, (
            b"H3\t2\t0\t\tquota\nB3\talice@example.org\n"
            b"S3\tpriv/quota/storage\t9223372036854775807\nC3\n"
        ), 1)
        assert replies == [b"O3"]
        while await usage_of(store, "alice@example.org") != (INT64_MAX, 0):
            assert time.monotonic() < deadline + 10, "alice's usage was not stored"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("line", [
    b"A1\tpriv/quota/storage\t9223372036854775808",
    b"A1\tpriv/quota/storage\t-9223372036854775808",
    b"A1\tpriv/quota/storage\t" + b"9" * 5000,
    b"S" + b"1" * 5000 + b"\tpriv/quota/storage\t1",
])
async def test_numbers_out_of_bounds_close_the_connection(
    store: Store, tmp_path: Path, line: bytes
) -> None:
    """As Dovecot's own dict server does with a bad number (and no exception escapes)."""
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path) as (daemon, settings):
        path = settings.DICT_LISTEN.removeprefix("unix:")
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"H3\t2\t0\t\tquota\nB1\talice@example.org\n" + line + b"\nC1\n")
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        assert daemon.metrics.registry.get_sample_value(
            "dinomail_lookupd_client_errors_total",
            {"protocol": "dovecot_dict", "reason": "malformed"},
        ) == 1


async def test_unknown_users_are_not_kept(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path, QUOTA_FLUSH_INTERVAL="3600") as (
        daemon, settings
    ):
        path = settings.DICT_LISTEN.removeprefix("unix:")
        transactions = b"".join(
            b"B%d\tnobody%d@example.org\nS%d\tpriv/quota/storage\t1\nC%d\n" % (n, n, n, n)
            for n in range(1, 201)
        )
        replies = await dict_exchange(path, b"H3\t2\t0\t\tquota\n" + transactions, 200)
        assert replies == [b"O%d" % n for n in range(1, 201)]
        assert daemon.quota_writer.pending == 0


async def test_the_writer_drops_only_the_mailbox_it_cannot_store(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    good, big, growing = await make_mailboxes(store, 3)
    metrics = LookupdMetrics()
    writer = QuotaWriter(store, metrics=metrics)
    writer.accept(good, Usage(bytes=10, messages=1))
    writer.accept(big, Usage(bytes=INT64_MAX + 1, messages=1))  # past the edge's check
    writer.accept(growing, Usage(bytes=INT64_MAX, messages=1))
    writer.accept(growing, Usage(bytes_delta=1))  # increments add up past BIGINT
    with caplog.at_level(logging.WARNING, logger="dinomail.lookupd.quota"):
        assert await writer.flush()
    assert await usage_of(store, good) == (10, 1)
    assert await usage_of(store, big) == (0, 0)
    assert await usage_of(store, growing) == (0, 0)
    assert writer.pending == 0  # nothing left to fail at every flush
    assert f"quota usage of {big!r} dropped: out of bounds" in caplog.text
    assert metrics.registry.get_sample_value("dinomail_lookupd_quota_dropped_total") == 2
    writer.accept(big, Usage(bytes=20, messages=2))  # a valid value later is stored
    assert await writer.flush()
    assert await usage_of(store, big) == (20, 2)
