"""The policy server over real loopback TCP and unix sockets, with Postfix-shaped requests; and
inside the whole lookup daemon: limits and full mailboxes from the database, counts written in
batches, found again after a restart, and added up by two daemons sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from dinomail.store import EVERYTHING, Forbidden, Scope, Store, domains, mailboxes
from dinomail.store import policy as policy_store
from dinomail.validation import ValidationError
from lookupd.counters import SYNC_OVERLAP, CounterSync, SendCounters
from lookupd.metrics import LookupdMetrics
from lookupd.policy.request import MAX_LINE_BYTES
from lookupd.policy.rules import DUNNO, PolicyDecider
from lookupd.policy.server import PolicyServer, start_policy_server
from lookupd.policy.tables import PolicyTables, SendLimits
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import fill_mail_data
from tests.support.policy_client import DEFER, FAST, TIMEOUT, PolicyClient
from tests.support.policy_requests import TABLES, postfix_request, snapshot

FULL = b"action=552 5.2.2 Mailbox full\n\n"


# --- the server alone ----------------------------------------------------------------------------


def make_decider() -> PolicyDecider:
    return PolicyDecider(snapshot, lambda: TABLES, SendCounters())


@contextlib.asynccontextmanager
async def policy_server(
    respond: Callable[[dict[bytes, bytes]], bytes | None], listen: str = "127.0.0.1:0",
    metrics: LookupdMetrics | None = None,
) -> AsyncIterator[PolicyServer]:
    recorder = metrics.recorder("policy", ("rcpt", "end_of_message", "other")) if metrics else None
    server = await start_policy_server(listen, respond, recorder=recorder)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)


async def test_pipelined_requests_on_a_reused_connection() -> None:
    async with policy_server(make_decider()) as server:
        client = await PolicyClient.connect(server.address)
        replies = await client.ask(
            postfix_request(recipient="alice@example.org"),  # full
            postfix_request(recipient="bob@example.org"),
            postfix_request(protocol_state="END-OF-MESSAGE", recipient_count="1", instance="a"),
            postfix_request(protocol_state="END-OF-MESSAGE", recipient_count="1", instance="b"),
            postfix_request(instance="c"),  # alice's third message this hour
        )
        assert replies == [FULL, DUNNO, DUNNO, DUNNO, DEFER]
        # The connection stays open for the next SMTP session's requests.
        for _ in range(3):
            assert await client.ask(postfix_request(sasl_username="")) == [DUNNO]
        await client.close()


async def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "policy.sock"
    async with policy_server(make_decider(), f"unix:{path}") as server:
        client = await PolicyClient.connect(server.address)
        assert await client.ask(postfix_request(), postfix_request()) == [DUNNO, DUNNO]
        await client.close()
    assert not path.exists()


@pytest.mark.parametrize(
    "bad",
    [
        b"request=smtpd_access_policy\nthis line has no equals sign\n\n",
        b"request=something_else\nprotocol_state=RCPT\n\n",
        b"protocol_state=RCPT\n\n",  # no request attribute
        b"request=smtpd_access_policy\nhelo_name=" + b"x" * (MAX_LINE_BYTES + 10),
        b"\n",
    ],
)
async def test_malformed_input_closes_only_that_connection(bad: bytes) -> None:
    metrics = LookupdMetrics()
    async with policy_server(make_decider(), metrics=metrics) as server:
        good = await PolicyClient.connect(server.address)
        assert await good.ask(postfix_request()) == [DUNNO]
        evil = await PolicyClient.connect(server.address)
        evil.writer.write(bad)
        assert await evil.closed_by_server()
        assert await good.ask(postfix_request()) == [DUNNO]
        await good.close()
        await evil.close()
    exposition = metrics.exposition().decode()
    assert 'dinomail_lookupd_client_errors_total{protocol="policy",reason="malformed"} 1.0' in (
        exposition
    )


async def test_internal_error_disconnects_without_a_reply() -> None:
    decider = make_decider()

    def fragile(request: dict[bytes, bytes]) -> bytes | None:
        if request.get(b"instance") == b"boom":
            raise RuntimeError("a bug")
        return decider(request)

    metrics = LookupdMetrics()
    async with policy_server(fragile, metrics=metrics) as server:
        other = await PolicyClient.connect(server.address)
        client = await PolicyClient.connect(server.address)
        boom = postfix_request(instance="boom")
        client.writer.write(postfix_request() + boom + postfix_request())
        async with asyncio.timeout(TIMEOUT):
            assert await client.reader.readuntil(b"\n\n") == DUNNO  # the request before it
        assert await client.closed_by_server()  # nothing for the failed one, nor after it
        assert await other.ask(postfix_request()) == [DUNNO]
        await client.close()
        await other.close()
    assert 'reason="exception"} 1.0' in metrics.exposition().decode()


async def test_nothing_loaded_yet_disconnects() -> None:
    async with policy_server(PolicyDecider(lambda: None, lambda: None, SendCounters())) as server:
        client = await PolicyClient.connect(server.address)
        client.writer.write(postfix_request())
        assert await client.closed_by_server()
        await client.close()


async def test_idle_connections_are_closed_after_the_timeout() -> None:
    server = await start_policy_server("127.0.0.1:0", make_decider(), idle_timeout=0.2)
    try:
        client = await PolicyClient.connect(server.address)
        assert await client.ask(postfix_request()) == [DUNNO]
        started = time.monotonic()
        assert await client.closed_by_server()
        assert time.monotonic() - started >= 0.15
        await client.close()
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)


async def test_many_concurrent_connections() -> None:
    async with policy_server(make_decider()) as server:
        clients = [await PolicyClient.connect(server.address) for _ in range(100)]

        async def session(client: PolicyClient) -> list[bytes]:
            replies = []
            for _ in range(5):
                replies += await client.ask(postfix_request(sasl_username=""))
            return replies

        results = await asyncio.gather(*(session(client) for client in clients))
        assert all(replies == [DUNNO] * 5 for replies in results)
        for client in clients:
            await client.close()


# --- in the lookup daemon, with the database -----------------------------------------------------


async def set_limits(store: Store, domain: str, **limits: object) -> None:
    async with store.write() as conn:
        domain_id = (await domains.get_by_name(conn, EVERYTHING, domain))["id"]
        await policy_store.set_domain_limits(conn, "test", EVERYTHING, domain_id, limits)


async def test_counts_are_written_and_survive_a_restart(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    await set_limits(store, "example.org", mailbox_messages_per_hour=3)
    # No flush while it runs: what reaches the database is the last flush, at the stop.
    async with running_lookupd(store, tmp_path, **{**FAST, "POLICY_FLUSH_INTERVAL": "60"}) as (
        daemon, settings
    ):
        await wait_until(lambda: daemon.policy.ready, what="the policy data")
        client = await PolicyClient.connect(settings.POLICY_LISTEN)
        for n in range(3):
            assert await client.message("alice@example.org", f"m{n}", recipients=2) == [
                DUNNO, DUNNO, DUNNO
            ]
        assert await client.message("alice@example.org", "m3") == [DEFER]
    await client.close()
    # Stopped (while Postfix's connection was still open): its last counts were written.
    async with store.read() as conn:
        rows = await policy_store.counts_of(conn, "mailbox", "alice@example.org")
        domain_rows = await policy_store.counts_of(conn, "domain", "example.org")
    assert [(row.bucket_seconds, row.messages, row.recipients) for row in rows] == [
        (600, 3, 6), (3600, 3, 6)
    ]
    assert [(row.messages, row.recipients) for row in domain_rows] == [(3, 6), (3, 6)]

    async with running_lookupd(store, tmp_path, **FAST) as (daemon, settings):
        await wait_until(lambda: daemon.policy.ready, what="the policy data")
        client = await PolicyClient.connect(settings.POLICY_LISTEN)
        assert await client.message("alice@example.org", "m4") == [DEFER]
        assert await client.message("bob@example.org", "m5") == [DUNNO, DUNNO]
        await client.close()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_full_mailbox_and_limit_changes_are_picked_up(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)  # alice's quota: 1,000,000 bytes
    async with running_lookupd(store, tmp_path, **FAST) as (daemon, settings):
        await wait_until(lambda: daemon.policy.ready, what="the policy data")
        client = await PolicyClient.connect(settings.POLICY_LISTEN)
        to_alice = postfix_request(recipient="alice+news@example.org", sasl_username="")
        assert await client.ask(to_alice) == [DUNNO]
        # What Dovecot's quota_clone reports ends up in the table; the service reloads it.
        async with store.write() as conn:
            await mailboxes.record_usage(conn, {"alice@example.org": (1_000_000, 10)})
        await wait_until(lambda: daemon.policy.tables.current.full_mailboxes, what="the usage")  # type: ignore[union-attr]
        assert await client.ask(to_alice) == [FULL]
        assert await client.ask(postfix_request(recipient="bob@example.org")) == [DUNNO]

        await set_limits(store, "example.org", domain_messages_per_day=1, reply="DEFER 4.7.1 No")
        await wait_until(lambda: daemon.policy.tables.current.domains, what="the limits")  # type: ignore[union-attr]
        assert await client.message("bob@example.org", "m1") == [DUNNO, DUNNO]
        assert await client.message("alice@example.org", "m2") == [b"action=DEFER 4.7.1 No\n\n"]
        await client.close()


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_two_daemons_sharing_postgresql_add_up(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    await set_limits(store, "example.org", mailbox_messages_per_day=4)
    other_store = Store(store.url)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        async with (
            running_lookupd(store, tmp_path / "a", **FAST) as (first, first_settings),
            running_lookupd(other_store, tmp_path / "b", **FAST) as (second, second_settings),
        ):
            await wait_until(lambda: first.policy.ready and second.policy.ready,
                             what="the policy data")
            a = await PolicyClient.connect(first_settings.POLICY_LISTEN)
            b = await PolicyClient.connect(second_settings.POLICY_LISTEN)
            assert await a.message("alice@example.org", "a1") == [DUNNO, DUNNO]
            assert await a.message("alice@example.org", "a2") == [DUNNO, DUNNO]
            assert await b.message("alice@example.org", "b1") == [DUNNO, DUNNO]
            assert await b.message("alice@example.org", "b2") == [DUNNO, DUNNO]

            def seen_by(daemon) -> float:  # type: ignore[no-untyped-def]
                counters = daemon.policy.decider.counters
                return counters.sent("mailbox", "alice@example.org", 86400, time.time())[0]

            await wait_until(lambda: seen_by(first) == 4 and seen_by(second) == 4,
                             what="each daemon to see the other's counts")
            assert await a.message("alice@example.org", "a3") == [DEFER]
            assert await b.message("alice@example.org", "b3") == [DEFER]
            await a.close()
            await b.close()
    finally:
        await other_store.close()
    async with store.read() as conn:
        rows = await policy_store.counts_of(conn, "mailbox", "alice@example.org")
    assert [row.messages for row in rows] == [4, 4]


# --- the limits in the store ---------------------------------------------------------------------


async def test_limits_in_the_store(store: Store) -> None:
    ids = await fill_mail_data(store)
    domain_id, alice = ids["example.org"], ids["alice@example.org"]
    async with store.write() as conn:
        assert (await policy_store.get_domain_limits(conn, EVERYTHING, domain_id))[
            "mailbox_messages_per_hour"] == 0
        row = await policy_store.set_domain_limits(
            conn, "root", EVERYTHING, domain_id,
            {"mailbox_messages_per_hour": 10, "domain_recipients_per_day": "500",
             "reply": "452 4.7.1 Slow down"},
        )
        assert row["mailbox_messages_per_hour"] == 10 and row["domain_recipients_per_day"] == 500
        await policy_store.set_mailbox_limits(
            conn, "root", EVERYTHING, alice, {"messages_per_hour": 0, "recipients_per_day": 50}
        )
        with pytest.raises(ValidationError):
            await policy_store.set_domain_limits(conn, "root", EVERYTHING, domain_id,
                                                 {"reply": "OK"})
        with pytest.raises(ValidationError):
            await policy_store.set_mailbox_limits(conn, "root", EVERYTHING, alice,
                                                  {"messages_per_hour": -1})
        with pytest.raises(Forbidden):
            await policy_store.set_mailbox_limits(
                conn, "admin", Scope(frozenset({domain_id})), alice, {"messages_per_hour": 1}
            )
    async with store.read() as conn:
        loaded = await policy_store.load_limits(conn)
        mine = await policy_store.get_mailbox_limits(conn, Scope(frozenset({domain_id})), alice)
    assert [row["name"] for row in loaded.domains] == ["example.org"]
    assert [(row["email"], row["messages_per_hour"], row["messages_per_day"])
            for row in loaded.mailboxes] == [("alice@example.org", 0, None)]
    assert mine["recipients_per_day"] == 50
    tables = PolicyTables.build(loaded, {})
    assert tables.limits_for("alice@example.org", "example.org") == (
        SendLimits(0, 0, 0, 50), SendLimits(0, 0, 0, 500), "452 4.7.1 Slow down"
    )
    assert tables.limits_for("bob@example.org", "example.org")[0] == SendLimits(10, 0, 0, 0)

    async with store.write() as conn:  # all back to defaults: the rows go
        await policy_store.set_mailbox_limits(
            conn, "root", EVERYTHING, alice, {"messages_per_hour": None,
                                              "recipients_per_day": None}
        )
        await policy_store.set_domain_limits(
            conn, "root", EVERYTHING, domain_id,
            {"mailbox_messages_per_hour": 0, "domain_recipients_per_day": 0, "reply": ""},
        )
        assert await policy_store.load_limits(conn) == ([], [])


async def test_counter_syncs_between_daemons(store: Store) -> None:
    """Two daemons' counters on one database (SQLite or PostgreSQL), flushed and synced by
    hand: each sees the other's counts, and reads back only rows the other wrote last."""
    now = time.time()
    first, second = SendCounters(), SendCounters()
    first_sync = CounterSync(store, first, clock=lambda: now)
    second_sync = CounterSync(store, second, clock=lambda: now)
    await first_sync.load()
    await second_sync.load()

    first.add("mailbox", "a@x", 2, 3, now)
    await first_sync.flush()
    await second_sync.sync()
    assert second.sent("mailbox", "a@x", 3600, now) == (2, 3)

    second.add("mailbox", "a@x", 1, 1, now)
    await second_sync.flush()  # the totals it gets back include the first daemon's
    assert second.sent("mailbox", "a@x", 3600, now) == (3, 4)
    await first_sync.sync()
    assert first.sent("mailbox", "a@x", 3600, now) == (3, 4)

    async with store.read() as conn:
        mine, read_at = await policy_store.load_counts(
            conn, since_bucket=0, other_than=second_sync.writer
        )
        recent, _ = await policy_store.load_counts(
            conn, since_bucket=0, changed_since=read_at - SYNC_OVERLAP
        )
        future, _ = await policy_store.load_counts(
            conn, since_bucket=0, changed_since=read_at + timedelta(hours=1)
        )
    assert mine == []  # the second daemon wrote both rows last: it has nothing to read back
    assert len(recent) == 2 and future == []
