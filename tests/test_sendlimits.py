"""Sending limits and counts: the store's counts and reset, the API's `domainsendlimit` and
`mailboxsendlimit` (reading, editing, validation, who may do what), and a reset reaching a
running lookup daemon through the real policy protocol."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dinomail.sendwindows import DAY, HOUR, window_totals
from dinomail.store import EVERYTHING, Forbidden, Scope, Store, audit
from dinomail.store import policy as policy_store
from lookupd.counters import CounterSync, SendCounters
from lookupd.policy.rules import DUNNO
from tests.support.adminapi import (
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    fast_admin_hashing,
)
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.policy_client import DEFER, FAST, PolicyClient
from tests.support.sendcounts import counts

T0 = 1_800_000_000 - 1_800_000_000 % DAY


def test_window_math_is_the_daemons() -> None:
    counters = SendCounters()
    rows = counts("mailbox", "a@x", T0, 3, 30) + counts("mailbox", "a@x", T0 + 3600, 3, 30)
    counters.merge(rows)
    for now in (T0 + 10, T0 + 3599, T0 + 3900, T0 + 4200, T0 + DAY + 1800):
        for window in (HOUR, DAY):
            assert window_totals(rows, window, now) == counters.sent("mailbox", "a@x",
                                                                     window, now)
    # Half of the first sends: their 10 minutes straddle the edge of the hour.
    assert window_totals(rows, HOUR, T0 + 3900) == (4.5, 45)


async def test_counts_and_reset_in_the_store(store: Store) -> None:
    domain = await add_domain(store, "a.org")
    alice = await add_mailbox(store, "alice@a.org")
    now = time.time()
    async with store.write() as conn:
        await policy_store.add_counts(conn, counts("mailbox", "alice@a.org", now, 2, 5),
                                      writer="d1")
        await policy_store.add_counts(conn, counts("domain", "a.org", now, 2, 5), writer="d1")
        # Older than any window: not counted.
        await policy_store.add_counts(
            conn, counts("mailbox", "alice@a.org", now - 3 * DAY, 9, 9), writer="d1")
    async with store.read() as conn:
        figures = await policy_store.window_counts(
            conn, "mailbox", ["alice@a.org", "bob@a.org"], now)
    assert figures["alice@a.org"] == {"messages_last_hour": 2, "recipients_last_hour": 5,
                                      "messages_last_day": 2, "recipients_last_day": 5}
    assert figures["bob@a.org"]["messages_last_day"] == 0

    async with store.write() as conn:
        with pytest.raises(Forbidden):
            await policy_store.reset_counts(conn, "admin", Scope(frozenset({domain["id"]})),
                                            "mailbox", alice["id"])
    async with store.write() as conn:
        assert await policy_store.reset_counts(
            conn, "root", EVERYTHING, "mailbox", alice["id"]) == "alice@a.org"
    async with store.read() as conn:
        figures = await policy_store.window_counts(conn, "mailbox", ["alice@a.org"], now)
        domain_figures = await policy_store.window_counts(conn, "domain", ["a.org"], now)
        rows, _ = await policy_store.load_counts(conn, since_bucket=0, other_than="d1")
        log = await audit.list_window(conn, EVERYTHING, limit=1)
    assert figures["alice@a.org"]["messages_last_day"] == 0
    assert domain_figures["a.org"]["messages_last_day"] == 2  # a mailbox's reset is its own
    # The zeroed rows are written by no daemon: every daemon reads them at its next sync.
    assert {(row.name, row.messages) for row in rows} == {("alice@a.org", 0)}
    assert (log.rows[0]["action"], log.rows[0]["object_type"]) == ("reset",
                                                                    "mailbox_send_counts")


async def test_a_reset_reaches_every_daemon_even_one_that_flushes_first(store: Store) -> None:
    now = time.time()
    await add_domain(store, "a.org")
    alice = await add_mailbox(store, "alice@a.org")
    first, second = SendCounters(), SendCounters()
    first_sync = CounterSync(store, first, clock=lambda: now)
    second_sync = CounterSync(store, second, clock=lambda: now)
    await first_sync.load()
    await second_sync.load()
    first.add("mailbox", "alice@a.org", 5, 5, now)
    await first_sync.flush()
    await second_sync.sync()
    assert second.sent("mailbox", "alice@a.org", HOUR, now) == (5, 5)

    async with store.write() as conn:
        await policy_store.reset_counts(conn, "root", EVERYTHING, "mailbox", alice["id"])
    # The first daemon sends again before it syncs: the totals its flush gets back start
    # from the reset, and it wrote the row last, so its next sync would not read it.
    first.add("mailbox", "alice@a.org", 1, 1, now)
    await first_sync.flush()
    await first_sync.sync()
    await second_sync.sync()
    assert first.sent("mailbox", "alice@a.org", HOUR, now) == (1, 1)
    assert second.sent("mailbox", "alice@a.org", HOUR, now) == (1, 1)


# --- the API -------------------------------------------------------------------------------------


async def _setup(store: Store, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    fast_admin_hashing(monkeypatch)
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    alice = await add_mailbox(store, "alice@a.org")
    bob = await add_mailbox(store, "bob@b.org")
    root = await add_admin(store, "root", superadmin=True)
    admin_a = await add_admin(store, "admin-a", domain_ids=(a["id"],))
    reader = await add_admin(store, "reader", superadmin=True, read_only=True)
    return a, b, alice, bob, root, admin_a, reader


async def test_domain_send_limits_api(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, alice, _, root, admin_a, reader = await _setup(store, monkeypatch)
    uri = f"/api/domainsendlimit/{a['id']}/"
    async with api_client(store) as client:
        shown = (await client.get(uri, headers=root.headers)).json()
        assert shown["domain"] == f"/api/virtualdomain/{a['id']}/"
        assert shown["mailbox_messages_per_hour"] == 0 and shown["reply"] == ""
        assert shown["messages_last_hour"] == 0
        assert shown["resource_uri"] == uri

        answer = await client.patch(uri, headers=root.headers, json={
            "mailbox_messages_per_hour": 5, "domain_recipients_per_day": 100,
            "reply": "defer 4.7.1 Slow down"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["reply"] == "DEFER 4.7.1 Slow down"
        assert answer.json()["domain_recipients_per_day"] == 100

        # A PUT of the body of a GET is accepted; a limit it leaves out keeps its value.
        body = (await client.get(uri, headers=root.headers)).json()
        body.pop("domain_recipients_per_day")
        assert (await client.put(uri, headers=root.headers, json=body)).status_code == 204
        again = (await client.get(uri, headers=root.headers)).json()
        assert again["domain_recipients_per_day"] == 100 and again["mailbox_messages_per_hour"] == 5

        mailbox = (await client.get(f"/api/mailboxsendlimit/{alice['id']}/",
                                    headers=root.headers)).json()
        assert mailbox["messages_per_hour"] is None
        assert mailbox["effective_messages_per_hour"] == 5  # the domain's default

        # Bad input: 400 naming the field, nothing written.
        for bad, field in (({"reply": "OK"}, "reply"),
                           ({"mailbox_messages_per_day": -1}, "mailbox_messages_per_day"),
                           ({"domain_messages_per_hour": "x"}, "domain_messages_per_hour"),
                           ({"domain_messages_per_hour": 2**31}, "domain_messages_per_hour"),
                           ({"mailbox_messages_per_day": 3, "nope": 1}, "nope")):
            answer = await client.patch(uri, headers=root.headers, json=bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["field"] == field
        assert (await client.get(uri, headers=root.headers)).json() == again

        # A domain admin reads their domains' limits and counts, changes nothing; other
        # domains do not exist for them; a read-only key writes nothing.
        assert (await client.get(uri, headers=admin_a.headers)).status_code == 200
        assert (await client.patch(uri, headers=admin_a.headers,
                                   json={"reply": ""})).status_code == 403
        assert (await client.post(f"{uri}reset/", headers=admin_a.headers)).status_code == 403
        other = f"/api/domainsendlimit/{b['id']}/"
        assert (await client.get(other, headers=admin_a.headers)).status_code == 404
        assert (await client.patch(other, headers=admin_a.headers, json={})).status_code == 404
        assert (await client.post(f"{other}reset/", headers=admin_a.headers)).status_code == 404
        listed = (await client.get("/api/domainsendlimit/", headers=admin_a.headers)).json()
        assert [item["name"] for item in listed["objects"]] == ["a.org"]
        assert (await client.get(uri, headers=reader.headers)).status_code == 200
        answer = await client.patch(uri, headers=reader.headers, json={"reply": ""})
        assert (answer.status_code, answer.json()["code"]) == (403, "read_only")
        assert (await client.post(f"{uri}reset/", headers=reader.headers)).status_code == 403
        assert (await client.get("/api/domainsendlimit/999/",
                                 headers=root.headers)).status_code == 404


async def test_mailbox_send_limits_and_reset_api(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, alice, bob, root, admin_a, _ = await _setup(store, monkeypatch)
    now = time.time()
    async with store.write() as conn:
        await policy_store.add_counts(conn, counts("mailbox", "alice@a.org", now, 3, 7),
                                      writer="d1")
    uri = f"/api/mailboxsendlimit/{alice['id']}/"
    async with api_client(store) as client:
        shown = (await client.get(uri, headers=admin_a.headers)).json()
        assert (shown["messages_last_hour"], shown["recipients_last_day"]) == (3, 7)
        assert shown["email"] == "alice@a.org"
        answer = await client.patch(uri, headers=root.headers,
                                    json={"messages_per_day": 10, "recipients_per_hour": 0})
        assert answer.status_code == 202, answer.text
        assert answer.json()["effective_messages_per_day"] == 10
        assert answer.json()["recipients_per_hour"] == 0
        answer = await client.patch(uri, headers=root.headers, json={"messages_per_day": None})
        assert answer.json()["messages_per_day"] is None
        assert (await client.patch(uri, headers=root.headers, json={"messages_per_day": 1.5})
                ).json()["field"] == "messages_per_day"
        assert (await client.get(f"/api/mailboxsendlimit/{bob['id']}/",
                                 headers=admin_a.headers)).status_code == 404
        listed = (await client.get("/api/mailboxsendlimit/?domain=a.org",
                                   headers=root.headers)).json()
        assert [item["email"] for item in listed["objects"]] == ["alice@a.org"]

        reset = await client.post(f"{uri}reset/", headers=root.headers)
        assert reset.status_code == 200, reset.text
        assert reset.json()["messages_last_hour"] == 0
        # A parameter it does not know is ignored (a client's cache buster), as everywhere.
        assert (await client.post(f"{uri}reset/?_=1", headers=root.headers)).status_code == 200
        assert (await client.get(f"{uri}reset/", headers=root.headers)).status_code == 405
        entries = (await client.get("/api/auditlog/", headers=root.headers)).json()["objects"]
    assert {"reset", "update"} <= {entry["action"] for entry in entries}


# --- with a running lookup daemon ----------------------------------------------------------------


async def test_a_deferred_sender_is_accepted_after_a_reset_through_the_api(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_admin_hashing(monkeypatch)
    domain = await add_domain(store, "example.org")
    alice = await add_mailbox(store, "alice@example.org")
    root = await add_admin(store, "root", superadmin=True)
    async with api_client(store) as api:
        answer = await api.patch(f"/api/domainsendlimit/{domain['id']}/", headers=root.headers,
                                 json={"mailbox_messages_per_hour": 2})
        assert answer.status_code == 202
        async with running_lookupd(store, tmp_path, **FAST) as (daemon, settings):
            await wait_until(lambda: daemon.policy.ready, what="the policy data")
            await wait_until(lambda: daemon.policy.tables.current.domains,  # type: ignore[union-attr]
                             what="the limits")
            client = await PolicyClient.connect(settings.POLICY_LISTEN)
            assert await client.message("alice@example.org", "m1") == [DUNNO, DUNNO]
            assert await client.message("alice@example.org", "m2") == [DUNNO, DUNNO]
            assert await client.message("alice@example.org", "m3") == [DEFER]

            uri = f"/api/mailboxsendlimit/{alice['id']}/"
            await wait_for_counts(api, uri, root.headers, 2)
            reset = await api.post(f"{uri}reset/", headers=root.headers)
            assert reset.status_code == 200

            counters = daemon.policy.decider.counters
            await wait_until(
                lambda: counters.sent("mailbox", "alice@example.org", HOUR, time.time())[0] == 0,
                what="the daemon to drop the reset counts")
            assert await client.message("alice@example.org", "m4") == [DUNNO, DUNNO]
            await client.close()


async def wait_for_counts(api, uri: str, headers: dict[str, str], messages: int,  # type: ignore[no-untyped-def]
                           timeout: float = 10.0) -> None:
    """Until the API shows `messages` sent in the last hour (the daemon has written them)."""
    started = time.monotonic()
    while (await api.get(uri, headers=headers)).json()["messages_last_hour"] != messages:
        if time.monotonic() - started > timeout:
            raise AssertionError("the daemon's counts did not reach the database")
        await asyncio.sleep(0.02)
