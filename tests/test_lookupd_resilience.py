"""The lookup daemon never stops mail by itself (DESIGN.md, invariants 1 and 8), proved on the
real `dinomail lookupd` process against a real PostgreSQL that is stopped and started:

- started while the database is down, it listens and answers temporary failures (socketmap
  TEMP, dict F, HTTP 503, policy: disconnect), then the data within seconds of the database
  starting;
- its last snapshot kept on disk is served by a daemon started while the database is down
  (/healthz "stale", the age exported), and the newer data once it is back; a snapshot for
  another database is ignored;
- a listener at its connection limit keeps serving its clients, and serves a waiting one as
  soon as one leaves; a client sending a byte a second is closed after the request time limit;
  with 1,024 descriptors, 1,100 idle socketmap connections leave the dict and /healthz working.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dinomail import migrate
from dinomail.store import Store
from lookupd.snapshot_file import FORMAT
from tests.support.daemon_process import DaemonProcess, socketmap_ask, wait_for
from tests.support.mail_data import fill_mail_data
from tests.support.postgres import PostgresServer

ALICE = ("mailboxes", "alice@example.org")


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def filled_database(server: PostgresServer, name: str) -> str:
    url = server.create_database(name)

    async def fill() -> None:
        store = Store(url)
        try:
            await migrate.upgrade(store.engine)
            await fill_mail_data(store)
        finally:
            await store.close()

    asyncio.run(fill())
    return url


def add_mailbox(server: PostgresServer, database: str, email: str) -> None:
    server.psql(
        "INSERT INTO core_virtualuser (domain_id, email, password) SELECT id, '" + email
        + "', '{PLAIN}x' FROM core_virtualdomain WHERE name = 'example.org'",
        database,
    )


def start(daemons: list[DaemonProcess], root: Path, url: str, **env: str) -> DaemonProcess:
    root.mkdir(parents=True, exist_ok=True)
    daemon = DaemonProcess(root, url, env={f"DINOMAIL_{k}": v for k, v in env.items()})
    daemons.append(daemon)
    daemon.start()
    return daemon


# --- started while the database is down ----------------------------------------------------------


def test_starts_listening_while_the_database_is_down_and_loads_when_it_returns(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url = filled_database(own_postgres, "down")
    own_postgres.stop()
    daemon = start(daemons, tmp_path / "d", url, LOOKUPD_SNAPSHOT_FILE="")

    assert daemon.socketmap_query(*ALICE).startswith("TEMP ")
    assert daemon.dict_lookup("shared/passdb/alice@example.org").startswith("F")
    assert daemon.get("/dovecot/passdb/alice@example.org")[0] == 503
    assert daemon.health() == (503, {"status": "loading"})
    assert daemon.policy_request() == b""  # disconnect: Postfix retries, then defers
    assert daemon.process is not None and daemon.process.poll() is None

    own_postgres.start()
    took = wait_for(lambda: daemon.socketmap_query(*ALICE) == "OK example.org/alice/",
                    "the data once the database is back")
    assert took < 10
    assert daemon.dict_lookup("shared/passdb/alice@example.org").startswith("O")
    assert daemon.health()[1]["status"] == "ok"
    wait_for(lambda: daemon.policy_request().startswith(b"action="), "a policy answer")
    assert "cannot reach the database" in daemon.log_text() or "unavailable" in daemon.log_text()
    assert daemon.stop() == 0


def test_serve_starts_with_the_database_down_and_check_still_fails(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url = filled_database(own_postgres, "serve")
    own_postgres.stop()
    root = tmp_path / "serve"
    root.mkdir()
    daemon = DaemonProcess(root, url, command="serve",
                           env={"DINOMAIL_LOOKUPD_SNAPSHOT_FILE": ""})
    daemons.append(daemon)
    daemon.start()
    admin = daemon.env["DINOMAIL_HTTP_LISTEN"]
    with pytest.raises(OSError) as answer:
        import urllib.request
        urllib.request.urlopen(f"http://{admin}/healthz", timeout=5)
    assert getattr(answer.value, "code", None) == 503
    assert daemon.socketmap_query(*ALICE).startswith("TEMP ")

    from tests.support.cli import dinomail
    check = dinomail("check", env={"DINOMAIL_DATABASE_URL": url})
    assert check.returncode == 1
    assert "database" in check.stderr and "Traceback" not in check.stderr

    own_postgres.start()
    wait_for(lambda: daemon.socketmap_query(*ALICE) == "OK example.org/alice/",
             "the data once the database is back")
    assert daemon.stop() == 0


# --- the snapshot on disk ------------------------------------------------------------------------


def test_a_restart_without_database_serves_the_snapshot_on_disk_then_the_newer_data(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url = filled_database(own_postgres, "offline")
    root = tmp_path / "d"
    first = start(daemons, root, url)
    wait_for(lambda: first.socketmap_query(*ALICE).startswith("OK"), "the first load")
    snapshot = root / "state" / "lookupd-snapshot.json"
    wait_for(snapshot.exists, "the snapshot file")
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    header = json.loads(snapshot.read_bytes().splitlines()[0])
    assert header["format"] == FORMAT and header["database_id"]
    assert "postgres@" not in header["database"] and header["database"].endswith("/offline")
    assert first.stop() == 0

    add_mailbox(own_postgres, "offline", "newer@example.org")  # while no daemon runs
    own_postgres.stop()
    second = start(daemons, root, url)
    wait_for(lambda: second.socketmap_query(*ALICE) == "OK example.org/alice/",
             "the stored data")
    # What the saved data lacks may exist by now (it does: newer@): unknown, not "not found",
    # or Postfix would bounce its mail.
    assert second.socketmap_query("mailboxes", "newer@example.org").startswith("TEMP ")
    # The full mailboxes are not in the file: inbound mail goes on (Dovecot applies quotas).
    assert second.socketmap_query("recipient_access", "alice@example.org") == "OK DUNNO"
    assert second.dict_lookup("shared/passdb/bob@example.org").startswith("O")
    assert second.dict_lookup("shared/passdb/newer@example.org").startswith("F")
    status, health = second.health()
    assert status == 200 and health["status"] == "stale"
    assert second.metric("dinomail_lookupd_snapshot_from_disk") == 1.0
    age = second.metric("dinomail_lookupd_snapshot_age_seconds")
    assert age is not None and age > 0
    assert "serving the snapshot saved in" in second.log_text()

    own_postgres.start()
    wait_for(lambda: second.socketmap_query("mailboxes", "newer@example.org").startswith("OK"),
             "the newer data once the database is back", timeout=15)
    assert second.health()[1]["status"] == "ok"
    assert second.metric("dinomail_lookupd_snapshot_from_disk") == 0.0


def test_a_snapshot_for_another_database_is_ignored(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url_a = filled_database(own_postgres, "dba")
    url_b = filled_database(own_postgres, "dbb")
    root = tmp_path / "d"
    first = start(daemons, root, url_a)
    wait_for((root / "state" / "lookupd-snapshot.json").exists, "the snapshot file")
    assert first.stop() == 0
    own_postgres.stop()

    other = start(daemons, root, url_b)  # same state folder, another database
    wait_for(lambda: "written for the database" in other.log_text(), "the file refused")
    assert other.socketmap_query(*ALICE).startswith("TEMP ")
    assert other.health()[0] == 503
    assert other.stop() == 0

    # A snapshot from another DinoMail version is ignored too.
    snapshot = root / "state" / "lookupd-snapshot.json"
    header, body = snapshot.read_bytes().split(b"\n", 1)
    changed = json.loads(header) | {"dinomail": "0.0.1"}
    snapshot.write_bytes(json.dumps(changed).encode() + b"\n" + body)
    again = start(daemons, tmp_path / "d", url_a)
    wait_for(lambda: "written by DinoMail 0.0.1" in again.log_text(), "the file refused")
    assert again.socketmap_query(*ALICE).startswith("TEMP ")


# --- connection limits ---------------------------------------------------------------------------


def test_a_listener_at_its_limit_serves_its_clients_and_then_a_waiting_one(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url = filled_database(own_postgres, "connlimit")
    daemon = start(daemons, tmp_path / "d", url, SOCKETMAP_MAX_CONNECTIONS="3",
                   LOOKUPD_RESERVED_FILES="0")
    wait_for(lambda: daemon.socketmap_query(*ALICE).startswith("OK"), "the first load")
    clients = [socket.create_connection(daemon.socketmap, timeout=5) for _ in range(3)]
    try:
        for client in clients:
            assert socketmap_ask(client, *ALICE) == "OK example.org/alice/"
        waiting = socket.create_connection(daemon.socketmap, timeout=5)  # in the backlog
        waiting.sendall(b"25:mailboxes bob@example.org,")
        waiting.settimeout(1.0)
        with pytest.raises(TimeoutError):
            waiting.recv(100)
        for client in clients:  # the open ones are not disturbed
            assert socketmap_ask(client, *ALICE) == "OK example.org/alice/"
        clients.pop().close()
        waiting.settimeout(5.0)
        assert waiting.recv(100) == b"19:OK example.org/bob/,"
        waiting.close()
    finally:
        for client in clients:
            client.close()


def test_a_client_sending_a_byte_a_second_is_closed_after_the_request_time_limit(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    url = filled_database(own_postgres, "slow")
    daemon = start(daemons, tmp_path / "d", url, LOOKUPD_REQUEST_TIMEOUT="2")
    wait_for(lambda: daemon.socketmap_query(*ALICE).startswith("OK"), "the first load")
    request = b"27:mailboxes alice@example.org,"
    with socket.create_connection(daemon.socketmap, timeout=10) as slow:
        started = time.monotonic()
        closed_after = None
        for byte in request:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            slow.settimeout(1.0)
            try:
                if slow.recv(100) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except ConnectionError:  # reset: a byte arrived after the server closed
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "the slow client was never closed"
        assert 1.5 <= closed_after <= 5
    assert 'reason="request_timeout"' in daemon.get("/metrics")[1]


def _open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_idle_socketmap_connections_cannot_take_the_descriptors_of_the_dict_and_healthz(
    own_postgres: PostgresServer, daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    """Issue 15 defect 6: with 1,024 descriptors, 1,100 idle socketmap connections made the
    dict, /healthz and new lookups fail with "Too many open files"."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1300:
        pytest.skip("this test needs 1,300 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url = filled_database(own_postgres, "flood")
    root = tmp_path / "d"
    root.mkdir()
    daemon = DaemonProcess(root, url, preexec_fn=lambda: _open_files(1024))
    daemons.append(daemon)
    flood: list[socket.socket] = []
    try:
        daemon.start()
        wait_for(lambda: daemon.socketmap_query(*ALICE).startswith("OK"), "the first load")
        early = socket.create_connection(daemon.socketmap, timeout=5)
        flood.append(early)
        for _ in range(1100):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(daemon.socketmap)
            flood.append(sock)
        time.sleep(2.0)
        assert socketmap_ask(early, *ALICE) == "OK example.org/alice/"
        assert daemon.dict_lookup("shared/passdb/alice@example.org").startswith("O")
        assert daemon.health()[0] == 200
        assert daemon.policy_request().startswith(b"action=")
        assert "Too many open files" not in daemon.log_text()
        assert "connection limits are lowered" in daemon.log_text()
    finally:
        for sock in flood:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Once the flood is gone, new connections are served again.
    wait_for(lambda: daemon.socketmap_query(*ALICE).startswith("OK"), "a new connection")
    shutil.rmtree(root / "state", ignore_errors=True)
