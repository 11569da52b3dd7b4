"""lookupd on a PostgreSQL streaming-replication standby, and through a failover.

A real standby (`pg_basebackup -R` from the test's primary): lookupd loads from it, follows by
polling the changes made on the primary (it cannot LISTEN there), and `check` says what the
standby is good for. Then the primary stops and the standby is promoted (`pg_ctl promote`):
lookups never go wrong meanwhile, and a write through the admin API, with both servers in its
URL, lands on the new primary without a restart and reaches lookupd.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from dinomail.store import Store
from dinomail.store.errors import Unavailable
from lookupd.daemon import Lookupd
from tests.support.adminapi import add_admin, api_client, fast_admin_hashing
from tests.support.cli import dinomail
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.replication import DATABASE, ReplicatedPair, replicated_pair
from tests.support.socketmap_client import socketmap_query

# The bound for a change on the primary to reach a lookupd following a standby.
PROPAGATION_BOUND = 2.0
# The admin API's writes must work again this soon after the standby is promoted.
WRITES_BACK_WITHIN = 15.0

EXPECTED = {
    ("mailboxes", "alice@example.org"): "OK example.org/alice/",
    ("aliases", "info@example.org"): "OK alice@example.org,bob@elsewhere.net",
    ("domains", "example.net"): "OK example.net",
    ("senders", "info@example.org"): "OK alice@example.org",
}


@pytest.fixture
def pair() -> Iterator[ReplicatedPair]:
    with replicated_pair() as servers:
        yield servers


def follow_mode(daemon: Lookupd) -> dict[str, float]:
    sample = daemon.metrics.registry.get_sample_value
    return {mode: sample("dinomail_lookupd_follow_mode", {"mode": mode}) or 0.0
            for mode in ("listen", "poll")}


async def answer_becomes(listen: str, name: str, key: str, expected: str) -> float:
    started = time.monotonic()
    while True:
        reply = await socketmap_query(listen, name, key)
        if reply == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < PROPAGATION_BOUND, (name, key, reply, expected)
        await asyncio.sleep(0.01)


async def test_lookupd_on_a_standby_loads_and_follows_the_primary(
    pair: ReplicatedPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a new user tries first: DATABASE_URL naming the standby.
    store = Store(pair.standby.url(DATABASE))
    caplog.set_level(logging.INFO, logger="dinomail")
    try:
        async with running_lookupd(store, tmp_path) as (daemon, settings):
            listen = settings.SOCKETMAP_LISTEN
            for (name, key), expected in EXPECTED.items():
                assert await socketmap_query(listen, name, key) == expected
            assert follow_mode(daemon) == {"listen": 0.0, "poll": 1.0}
            assert daemon.refresher.poll_interval == 0.25  # LOOKUPD_POLL_INTERVAL's default
            assert "is a standby, which cannot LISTEN" in caplog.text
            assert "LISTEN during recovery" not in caplog.text

            def on_primary(sql: str) -> None:
                pair.primary.psql(sql, DATABASE)

            domain_id = pair.primary.psql(
                "SELECT id FROM core_virtualdomain WHERE name = 'example.org'", DATABASE
            ).strip()
            await asyncio.to_thread(
                on_primary,
                "INSERT INTO core_virtualuser (domain_id, email, password, quota, active) "
                f"VALUES ({domain_id}, 'replica@example.org', '{{PLAIN}}x', 0, TRUE)",
            )
            await answer_becomes(listen, "mailboxes", "replica@example.org",
                                 "OK example.org/replica/")
            await asyncio.to_thread(
                on_primary,
                "UPDATE core_virtualuser SET email = 'moved@example.org' "
                "WHERE email = 'replica@example.org'",
            )
            await answer_becomes(listen, "mailboxes", "moved@example.org", "OK example.org/moved/")
            assert await socketmap_query(listen, "mailboxes", "replica@example.org") == "NOTFOUND "
            await asyncio.to_thread(
                on_primary, "DELETE FROM core_virtualalias WHERE source = 'info@example.org'"
            )
            # Without its aliases, info@ falls to the catch-all of example.org.
            await answer_becomes(listen, "aliases", "info@example.org", "OK alice@example.org")
            await asyncio.to_thread(
                on_primary, "DELETE FROM core_virtualuser WHERE email = 'moved@example.org'"
            )
            await answer_becomes(listen, "mailboxes", "moved@example.org", "NOTFOUND ")
            # Never a failed refresh: the standby was followed, not fought with.
            for kind in ("full", "incremental"):
                assert daemon.metrics.registry.get_sample_value(
                    "dinomail_lookupd_refreshes_total", {"kind": kind, "result": "error"}
                ) == 0.0
    finally:
        await store.close()


def test_check_says_what_a_standby_is_good_for(pair: ReplicatedPair) -> None:
    standby = pair.standby.url(DATABASE)
    primary = pair.primary.url(DATABASE)
    admin_on_standby = dinomail("check", env={"DINOMAIL_DATABASE_URL": standby})
    assert admin_on_standby.returncode == 1, admin_on_standby
    assert "No issues found" not in admin_on_standby.stdout
    assert "is a standby" in admin_on_standby.stdout
    assert "Lookups work there" in admin_on_standby.stdout
    assert "`dinomail migrate`" in admin_on_standby.stdout
    assert "DATABASE_URL names a standby" in admin_on_standby.stderr

    lookups_on_standby = dinomail("check", env={
        "DINOMAIL_DATABASE_URL": primary, "DINOMAIL_LOOKUPD_DATABASE_URL": standby,
    })
    assert lookups_on_standby.returncode == 0, lookups_on_standby
    assert "No issues found" in lookups_on_standby.stdout
    assert "Lookups read from a standby" in lookups_on_standby.stdout

    both = dinomail("check", env={
        "DINOMAIL_DATABASE_URL": pair.url(target="read-write"),
        "DINOMAIL_LOOKUPD_DATABASE_URL": pair.url(target="prefer-standby"),
    })
    assert both.returncode == 0, both
    assert "Lookups read from a standby" in both.stdout

    migrate = dinomail("migrate", env={"DINOMAIL_DATABASE_URL": standby})
    assert migrate.returncode == 1, migrate
    assert "standby" in migrate.stderr and "Traceback" not in migrate.stderr


async def test_failover_keeps_lookups_right_and_writes_resume(
    pair: ReplicatedPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_admin_hashing(monkeypatch)
    # The admin side writes to whichever server takes writes; lookupd prefers the standby.
    admin_store = Store(pair.url(target="read-write"))
    root = await add_admin(admin_store, "root", superadmin=True)
    try:
        async with (
            running_lookupd(
                admin_store, tmp_path,
                LOOKUPD_DATABASE_URL=pair.url(target="prefer-standby"),
            ) as (daemon, settings),
            api_client(admin_store) as api,
        ):
            listen = settings.SOCKETMAP_LISTEN
            assert follow_mode(daemon)["poll"] == 1.0
            assert daemon.refresher.server is not None
            assert daemon.refresher.server.address.endswith(f":{pair.standby.port}")

            async def create_mailbox(email: str) -> int:
                response = await api.post(
                    "/api/virtualuser/",
                    json={"email": email, "password": "s3cret passphrase"},
                    headers=root.headers,
                )
                return response.status_code

            assert await create_mailbox("before@example.org") == 201
            await answer_becomes(listen, "mailboxes", "before@example.org",
                                 "OK example.org/before/")
            expected = {**EXPECTED, ("mailboxes", "before@example.org"): "OK example.org/before/"}

            answered = 0
            stop_asking = asyncio.Event()

            async def keep_asking() -> None:
                nonlocal answered
                while not stop_asking.is_set():
                    for (name, key), want in expected.items():
                        reply = await socketmap_query(listen, name, key)
                        assert reply == want, (name, key, reply)
                        answered += 1
                    await asyncio.sleep(0.005)

            asker = asyncio.create_task(keep_asking())
            await asyncio.to_thread(pair.primary.stop)
            # No server takes writes: the API says the database is unavailable (503).
            assert await create_mailbox("nowhere@example.org") == 503
            await asyncio.sleep(0.5)  # lookups go on with no primary at all
            await asyncio.to_thread(pair.standby.promote)
            promoted_at = time.monotonic()

            # The admin API's pool held connections to the stopped primary: they are replaced
            # by connections to the promoted standby, without a restart.
            # Meanwhile a request fails as "database unavailable" (503), never as a 500.
            statuses = [await create_mailbox("during@example.org")]
            while statuses[-1] != 201:
                assert time.monotonic() - promoted_at < WRITES_BACK_WITHIN, statuses
                await asyncio.sleep(0.2)
                statuses.append(await create_mailbox("after@example.org"))
            assert set(statuses) <= {201, 503}, statuses
            created = "during" if len(statuses) == 1 else "after"
            assert pair.standby.psql(
                f"SELECT count(*) FROM core_virtualuser WHERE email = '{created}@example.org'",
                DATABASE,
            ).strip() == "1"

            # lookupd follows the new primary (now through LISTEN) and sees the write.
            await answer_becomes(listen, "mailboxes", f"{created}@example.org",
                                 f"OK example.org/{created}/")
            await wait_until(lambda: follow_mode(daemon)["listen"] == 1.0, timeout=15,
                             what="lookupd to LISTEN on the promoted standby")
            stop_asking.set()
            await asker
            assert answered > 50
            assert await socketmap_query(listen, "mailboxes", "before@example.org") == (
                "OK example.org/before/"
            )
    finally:
        await admin_store.close()


async def test_a_write_refused_by_a_standby_drops_the_pool(pair: ReplicatedPair) -> None:
    """A connection that meets a server in recovery is not kept: after a failover, a pool
    must not hold on to a server that no longer takes writes."""
    store = Store(pair.standby.url(DATABASE))

    async def driver_connection() -> Any:
        async with store.read() as conn:
            raw = await conn.get_raw_connection()
            return raw.driver_connection

    try:
        before = await driver_connection()
        assert await driver_connection() is before  # the pool keeps a healthy connection
        # The store says "unavailable"; the driver's refusal underneath dropped the connection.
        with pytest.raises(Unavailable) as refused:
            async with store.write() as conn:
                await conn.execute(sa.text(
                    "UPDATE core_virtualuser SET quota = 1 WHERE email = 'bob@example.org'"
                ))
        cause = refused.value.__cause__
        assert isinstance(cause, OperationalError) and cause.connection_invalidated
        assert "read-only transaction" in str(refused.value)
        assert before.is_closed()
        assert await driver_connection() is not before
    finally:
        await store.close()


async def test_a_standby_lost_sends_lookupd_to_the_primary_with_a_full_reload(
    pair: ReplicatedPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another server's log may not continue the one followed (a change not yet replicated
    before a failover): a connection landing on another server reloads in full."""
    caplog.set_level(logging.INFO, logger="dinomail")
    store = Store(pair.url(target="read-write"))
    try:
        async with running_lookupd(
            store, tmp_path, LOOKUPD_DATABASE_URL=pair.url(target="prefer-standby")
        ) as (daemon, settings):
            listen = settings.SOCKETMAP_LISTEN
            assert follow_mode(daemon)["poll"] == 1.0
            await asyncio.to_thread(pair.standby.stop)
            # Written without the change log (triggers off): only a full load can show it.
            domain_id = pair.primary.psql(
                "SELECT id FROM core_virtualdomain WHERE name = 'example.org'", DATABASE
            ).strip()
            await asyncio.to_thread(
                pair.primary.psql,
                "SET session_replication_role = replica; "
                "INSERT INTO core_virtualuser (domain_id, email, password, quota, active) "
                f"VALUES ({domain_id}, 'unlogged@example.org', '{{PLAIN}}x', 0, TRUE)",
                DATABASE,
            )
            deadline = time.monotonic() + 20
            while (reply := await socketmap_query(listen, "mailboxes", "unlogged@example.org")
                   ) != "OK example.org/unlogged/":
                assert reply == "NOTFOUND ", reply  # never TEMP: the snapshot keeps serving
                assert time.monotonic() < deadline, "no full reload from the primary"
                await asyncio.sleep(0.05)
            assert f"now reading from the server at 127.0.0.1:{pair.primary.port}" in caplog.text
            assert follow_mode(daemon)["listen"] == 1.0
            assert await socketmap_query(listen, "mailboxes", "alice@example.org") == (
                "OK example.org/alice/"
            )
    finally:
        await store.close()


async def test_no_server_taking_writes_is_an_unavailable_database(
    pair: ReplicatedPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every server answers, none takes writes (all standbys, mid-failover): the API says the
    database is unavailable (503), as when none answers, never a 500."""
    fast_admin_hashing(monkeypatch)
    primary_store = Store(pair.primary.url(DATABASE))
    root = await add_admin(primary_store, "root", superadmin=True)
    await primary_store.close()
    await asyncio.to_thread(pair.wait_replayed)
    store = Store(f"{pair.standby.url(DATABASE)}?target_session_attrs=read-write")
    try:
        with pytest.raises(Unavailable, match="None of the hosts match"):
            await store.ping()
        async with api_client(store) as api:
            response = await api.get("/api/virtualdomain/", headers=root.headers)
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "unavailable"
    finally:
        await store.close()
