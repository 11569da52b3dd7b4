"""Policy attributes read with bounds, and sending counts that one bad row cannot block: an
impossible `recipient_count` once stopped every sender's counts from being stored."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from dinomail.store import Store
from dinomail.store import policy as policy_store
from dinomail.store.errors import Unavailable
from dinomail.store.policy import SendCount
from lookupd.batchwrite import INT64_MAX
from lookupd.counters import CounterSync, SendCounters
from lookupd.metrics import LookupdMetrics
from lookupd.policy.attributes import MAX_INSTANCE_BYTES, MAX_RECIPIENT_COUNT
from lookupd.policy.rules import DUNNO, PolicyDecider, PolicyMetrics
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import fill_mail_data
from tests.support.policy_client import FAST, PolicyClient
from tests.support.policy_requests import TABLES, postfix_request, request, snapshot
from tests.support.ports import free_port

HUGE = "99999999999999999999999"


async def stored(store: Store, kind: str, name: str) -> list[tuple[int, int, int]]:
    async with store.read() as conn:
        rows = await policy_store.counts_of(conn, kind, name)
    return [(row.bucket_seconds, row.messages, row.recipients) for row in rows]


async def test_an_impossible_recipient_count_blocks_no_counts(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attack: one END-OF-MESSAGE with recipient_count=99999999999999999999999. The value is
    treated as absent (the recipients seen at RCPT count), and everyone's counts are stored."""
    caplog.set_level(logging.INFO, logger="dinomail.lookupd.policy")
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path, **FAST) as (daemon, settings):
        await wait_until(lambda: daemon.policy.ready, what="the policy data")
        client = await PolicyClient.connect(settings.POLICY_LISTEN)
        assert await client.ask(postfix_request(
            sasl_username="alice@example.org", instance="a1", recipient="x@far.example"
        )) == [DUNNO]
        assert await client.ask(postfix_request(
            protocol_state="END-OF-MESSAGE", sasl_username="alice@example.org", instance="a1",
            recipient="", recipient_count=HUGE,
        )) == [DUNNO]
        assert await client.message("bob@example.org", "b1", recipients=2) == [DUNNO] * 3
        await client.close()

        async def both_stored() -> bool:
            return (await stored(store, "mailbox", "bob@example.org") == [(600, 1, 2),
                                                                          (3600, 1, 2)]
                    and await stored(store, "mailbox", "alice@example.org") != [])

        deadline = time.monotonic() + 10
        while not await both_stored():
            assert time.monotonic() < deadline, "the counts were not stored"
            await asyncio.sleep(0.05)
        assert await stored(store, "mailbox", "alice@example.org") == [(600, 1, 1),
                                                                       (3600, 1, 1)]
        assert await stored(store, "domain", "example.org") == [(600, 2, 3), (3600, 2, 3)]
        registry = daemon.metrics.registry
        assert registry.get_sample_value(
            "dinomail_lookupd_policy_bad_attributes_total", {"attribute": "recipient_count"}
        ) == 1
        assert registry.get_sample_value(
            "dinomail_lookupd_policy_counter_writes_total", {"result": "error"}
        ) == 0
        assert not daemon.policy.counter_sync._failing
    assert "recipient_count out of bounds" in caplog.text


@pytest.mark.parametrize(("name", "value"), [
    ("recipient_count", HUGE),
    ("recipient_count", str(MAX_RECIPIENT_COUNT + 1)),
    ("recipient_count", "-5"),
    ("recipient_count", "+5"),
    ("recipient_count", "5_0"),
    ("recipient_count", "9" * 5000),
    ("instance", "i" * (MAX_INSTANCE_BYTES + 1)),
    ("instance", "a b"),
    ("sasl_username", "bob@example.org" + "x" * 2000),
    ("sasl_username", "bob\udcff@example.org"),
])
def test_out_of_bounds_attributes_are_absent_logged_and_counted(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = LookupdMetrics()
    counters = SendCounters()
    decider = PolicyDecider(snapshot, lambda: TABLES, counters, metrics=PolicyMetrics(metrics))
    raw = {name.encode(): value.encode("utf-8", "surrogateescape")}
    end = request(protocol_state="END-OF-MESSAGE", sasl_username="bob@example.org",
                  instance="i1", recipient_count="3")
    now = time.time()
    with caplog.at_level(logging.INFO, logger="dinomail.lookupd.policy"):
        assert decider({**end, **raw}) == DUNNO
    assert metrics.registry.get_sample_value(
        "dinomail_lookupd_policy_bad_attributes_total", {"attribute": name}
    ) == 1
    assert f"{name} out of bounds" in caplog.text
    counted = counters.sent("mailbox", "bob@example.org", 3600, now + 1)
    if name == "sasl_username":
        assert counted == (0, 0)  # no sender: not counted
    elif name == "recipient_count":
        assert counted == (1, 1)  # nothing seen at RCPT: the message counts one recipient
    else:
        assert counted == (1, 3)


def test_values_in_bounds_are_taken() -> None:
    counters = SendCounters()
    decider = PolicyDecider(snapshot, lambda: TABLES, counters)
    decider(request(protocol_state="END-OF-MESSAGE", sasl_username="bob@example.org",
                    instance="1a2b.6745c2f1.8d3e0.0", recipient_count=str(MAX_RECIPIENT_COUNT)))
    assert counters.sent("mailbox", "bob@example.org", 3600, time.time() + 1) == (
        1, MAX_RECIPIENT_COUNT
    )


async def test_counts_that_cannot_be_stored_are_dropped_before_the_batch(store: Store) -> None:
    now = time.time()
    counters = SendCounters()
    sync = CounterSync(store, counters, clock=lambda: now, metrics=LookupdMetrics())
    await sync.load()
    counters.add("mailbox", "bad@x", 1, INT64_MAX + 1, now)  # past BIGINT
    counters.add("mailbox", "x" * 300 + "@x", 1, 1, now)  # past the column's 254 characters
    counters.add("mailbox", "good@x", 1, 2, now)
    await sync.flush()
    assert await stored(store, "mailbox", "good@x") == [(600, 1, 2), (3600, 1, 2)]
    assert await stored(store, "mailbox", "bad@x") == []
    counters.add("mailbox", "good@x", 1, 2, now)
    await sync.flush()  # the dropped rows are not tried again
    assert await stored(store, "mailbox", "good@x") == [(600, 2, 4), (3600, 2, 4)]
    assert counters.take_batch() == []


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_a_row_the_database_refuses_is_written_apart(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A total that would pass BIGINT in the database (a value checked in memory cannot see
    it): PostgreSQL refuses the batch; the other rows are written one by one."""
    now = time.time()
    counters = SendCounters()
    sync = CounterSync(store, counters, clock=lambda: now)
    await sync.load()
    async with store.engine.begin() as conn:
        full = [SendCount("mailbox", "full@x", row.bucket_seconds, row.bucket_start,
                          INT64_MAX, 0)
                for row in _rows_of(counters, now)]
        await policy_store.add_counts(conn, full, writer="other")
    counters.add("mailbox", "full@x", 1, 1, now)
    counters.add("mailbox", "good@x", 1, 2, now)
    counters.add("domain", "x", 2, 3, now)
    with caplog.at_level(logging.WARNING, logger="dinomail.lookupd.counters"):
        await sync.flush()
    assert await stored(store, "mailbox", "good@x") == [(600, 1, 2), (3600, 1, 2)]
    assert await stored(store, "domain", "x") == [(600, 2, 3), (3600, 2, 3)]
    assert await stored(store, "mailbox", "full@x") == [(600, INT64_MAX, 0),
                                                        (3600, INT64_MAX, 0)]
    assert "'full@x' (1 messages, 1 recipients) dropped: refused by the database" in caplog.text
    assert counters.take_batch() == []  # nothing left to retry forever


async def test_an_outage_keeps_every_row_for_the_next_flush() -> None:
    store = Store(f"postgresql://nobody@127.0.0.1:{free_port()}/none")  # nothing listens
    now = time.time()
    counters = SendCounters()
    sync = CounterSync(store, counters, clock=lambda: now)
    counters.add("mailbox", "a@x", 1, 1, now)
    try:
        with pytest.raises(Unavailable):
            await sync.flush()
    finally:
        await store.close()
    assert len(counters.take_batch()) == 2  # both buckets kept, none dropped


def _rows_of(counters: SendCounters, now: float) -> list[SendCount]:
    probe = SendCounters()
    probe.add("mailbox", "full@x", 1, 1, now)
    return probe.take_batch()
