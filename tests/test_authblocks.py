"""Blocks of the Dovecot auth policy shared through the database: what a daemon writes and
reads, the API's `authblock` (list, scope, unblock, audit), and a client blocked through the
real HTTP endpoint of a running lookup daemon, unblocked through the API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dinomail.store import EVERYTHING, Scope, Store, audit, authblocks
from lookupd.authblocks import BlockSync
from lookupd.authpolicy import AuthPolicy, AuthPolicyConfig
from tests.support.adminapi import add_admin, add_domain, api_client, fast_admin_hashing
from tests.support.authpolicy_requests import Clock, body, fail
from tests.support.lookupd import running_lookupd

CONFIG = AuthPolicyConfig(ip_tarpit_after=0, ip_block_after=3, login_tarpit_after=0,
                          login_block_after=3, allow_networks=())


def blocked_policy() -> tuple[AuthPolicy, Clock]:
    clock = Clock()
    policy = AuthPolicy(CONFIG, clock=clock)
    for n in range(3):
        fail(policy, f"u{n}@a.org", "pw", "203.0.113.5")  # the client: 3 logins
        fail(policy, "alice@a.org", f"guess{n}", f"198.51.100.{n}")  # alice: 3 passwords
        fail(policy, "bob@b.org", f"guess{n}", f"192.0.2.{n}")
    return policy, clock


def test_blocks_and_release_in_memory() -> None:
    policy, clock = blocked_policy()
    blocks = {(kind, key): (failures, end) for kind, key, failures, _, end in policy.blocks()}
    assert set(blocks) == {("client", "203.0.113.5"), ("login", "alice@a.org"),
                           ("login", "bob@b.org")}
    # The first of the three failures leaves the window first, and the block with it.
    assert blocks[("client", "203.0.113.5")] == (3, clock.now + CONFIG.window)
    policy.release("client", "203.0.113.5")
    assert policy.allow(body("x@a.org", "pw", "203.0.113.5")) == (0, "")
    assert policy.allow(body("alice@a.org", "pw", "203.0.113.9"))[0] == -1


async def test_daemons_write_read_and_release(store: Store) -> None:
    first, _ = blocked_policy()
    second, _ = blocked_policy()
    first_sync, second_sync = BlockSync(store, first), BlockSync(store, second)
    await first_sync.sync()
    await second_sync.sync()
    async with store.read() as conn:
        window = await authblocks.list_window(conn, EVERYTHING, limit=50)
        scoped = await authblocks.list_window(conn, Scope(frozenset({1})), limit=50)
    assert len(window.rows) == 6  # three blocks, one row per daemon
    assert {row["writer"] for row in window.rows} == {first_sync.writer, second_sync.writer}
    await first_sync.sync()  # nothing changed: nothing written again
    # Domain 1 does not exist yet: a domain admin of it sees nothing.
    assert scoped.rows == []

    client = next(row for row in window.rows if row["key"] == "203.0.113.5")
    async with store.write() as conn:
        await authblocks.release(conn, "admin:root", EVERYTHING, client["id"])
    async with store.read() as conn:
        keys = [row["key"] for row in (await authblocks.list_window(
            conn, EVERYTHING, limit=50)).rows]
        log = await audit.list_window(conn, EVERYTHING, limit=1)
    assert "203.0.113.5" not in keys  # released: gone from the list at once
    assert (log.rows[0]["action"], log.rows[0]["object_repr"]) == ("unblock", "203.0.113.5")

    await first_sync.sync()
    await second_sync.sync()
    for policy in (first, second):  # both daemons forgot the client's failures
        assert policy.allow(body("x@a.org", "pw", "203.0.113.5")) == (0, "")
    async with store.read() as conn:
        window = await authblocks.list_window(conn, EVERYTHING, limit=50)
    assert len(window.rows) == 4

    await first_sync.close()  # a clean stop takes the daemon's rows away
    async with store.write() as conn:
        assert {row["writer"] for row in (await authblocks.list_window(
            conn, EVERYTHING, limit=50)).rows} == {second_sync.writer}
        # Rows of a daemon that died go once their block has long ended.
        later = datetime.now(UTC) + timedelta(seconds=CONFIG.window) + authblocks.PRUNE_MARGIN
        assert await authblocks.prune_blocks(conn, later + timedelta(minutes=1)) == 2


async def test_blocks_that_end_are_removed(store: Store) -> None:
    policy, clock = blocked_policy()
    sync = BlockSync(store, policy)
    await sync.sync()
    clock.now += CONFIG.window + 1
    await sync.sync()
    async with store.read() as conn:
        assert (await authblocks.list_window(conn, EVERYTHING, limit=50)).rows == []


# --- the API -------------------------------------------------------------------------------------


async def test_authblock_api(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)
    a = await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    root = await add_admin(store, "root", superadmin=True)
    admin_a = await add_admin(store, "admin-a", domain_ids=(a["id"],))
    reader = await add_admin(store, "reader", superadmin=True, read_only=True)
    policy, _ = blocked_policy()
    await BlockSync(store, policy).sync()

    async with api_client(store) as client:
        async def keys(account: Any, query: str = "") -> list[str]:
            answer = await client.get(f"/api/authblock/{query}", headers=account.headers)
            assert answer.status_code == 200, answer.text
            return [item["key"] for item in answer.json()["objects"]]

        assert sorted(await keys(root)) == ["203.0.113.5", "alice@a.org", "bob@b.org"]
        assert await keys(admin_a) == ["alice@a.org"]  # no client address, no other domain
        assert await keys(root, "?q=ALICE") == ["alice@a.org"]
        page = (await client.get("/api/authblock/?limit=1", headers=root.headers)).json()
        assert page["meta"]["total_count"] == 3 and page["meta"]["next"]
        after = (await client.get(page["meta"]["next"], headers=root.headers)).json()
        assert len(after["objects"]) == 1 and after["objects"][0] != page["objects"][0]

        listed = (await client.get("/api/authblock/", headers=root.headers)).json()["objects"]
        by_key = {item["key"]: item for item in listed}
        client_uri = by_key["203.0.113.5"]["resource_uri"]
        bob_uri = by_key["bob@b.org"]["resource_uri"]
        alice_uri = by_key["alice@a.org"]["resource_uri"]
        assert by_key["alice@a.org"]["failures"] == 3 and by_key["alice@a.org"]["domain"] == "a.org"

        # Out of scope looks like nothing there; a read-only key cannot unblock.
        for uri in (client_uri, bob_uri):
            assert (await client.get(uri, headers=admin_a.headers)).status_code == 404
            assert (await client.delete(uri, headers=admin_a.headers)).status_code == 404
        answer = await client.delete(alice_uri, headers=reader.headers)
        assert (answer.status_code, answer.json()["code"]) == (403, "read_only")
        assert (await client.get(alice_uri, headers=admin_a.headers)).status_code == 200

        assert (await client.delete(alice_uri, headers=admin_a.headers)).status_code == 204
        assert (await client.delete(alice_uri, headers=admin_a.headers)).status_code == 404
        assert (await client.delete(client_uri, headers=root.headers)).status_code == 204
        assert await keys(root) == ["bob@b.org"]
        entries = (await client.get("/api/auditlog/", headers=root.headers)).json()["objects"]
    assert [(entry["action"], entry["object_repr"]) for entry in entries[:2]] == [
        ("unblock", "203.0.113.5"), ("unblock", "alice@a.org")]


# --- with a running lookup daemon ----------------------------------------------------------------


async def test_a_client_blocked_by_the_daemon_is_unblocked_through_the_api(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_admin_hashing(monkeypatch)
    root = await add_admin(store, "root", superadmin=True)
    async with (
        running_lookupd(
            store, tmp_path, AUTH_POLICY_IP_TARPIT_AFTER="0", AUTH_POLICY_IP_BLOCK_AFTER="3",
            AUTH_POLICY_ALLOW_NETWORKS="10.0.0.0/8", AUTH_POLICY_SYNC_INTERVAL="0.05",
        ) as (_, settings),
        api_client(store) as api,
        httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}", timeout=10) as http,
    ):
        async def call(command: str, fields: dict[str, Any]) -> dict[str, Any]:
            answer = await http.post(f"/dovecot/auth-policy?command={command}", json=fields)
            assert answer.status_code == 200
            return answer.json()

        for n in range(3):
            await call("allow", body(f"u{n}@example.org", "pw", "203.0.113.5"))
            await call("report", body(f"u{n}@example.org", "pw", "203.0.113.5", success=False))
        assert (await call("allow", body("x@example.org", "pw", "203.0.113.5")))["status"] == -1

        async def listed() -> list[dict[str, Any]]:
            answer = await api.get("/api/authblock/", headers=root.headers)
            return answer.json()["objects"]

        blocks = await poll(listed, lambda objects: objects, "the block in the API")
        assert [(item["kind"], item["key"], item["failures"]) for item in blocks] == [
            ("client", "203.0.113.5", 3)]
        assert (await api.delete(blocks[0]["resource_uri"], headers=root.headers)
                ).status_code == 204

        async def status() -> int:
            return int((await call("allow", body("x@example.org", "pw", "203.0.113.5")))
                       ["status"])

        await poll(status, lambda value: value == 0, "the daemon to allow the client again")
        await poll(listed, lambda objects: objects == [], "the released row to go")


async def poll(read, done, what: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """`await read()` until `done(value)`; the value."""
    started = time.monotonic()
    while True:
        value = await read()
        if done(value):
            return value
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
