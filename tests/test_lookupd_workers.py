"""`dinomail lookupd` with LOOKUPD_WORKERS=2: real worker processes under the supervisor.

Lookups are answered by whichever worker the kernel hands the connection to (SO_REUSEPORT);
every worker follows the change log; a worker killed is replaced while the other answers; SIGTERM
stops them all; a listener that cannot bind stops the start with one line, nothing left open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dinomail import migrate
from dinomail.store import EVERYTHING, Store, aliases
from lookupd.daemon import start_lookupd
from lookupd.supervisor import HEARTBEAT_TIMEOUT
from tests.support.daemon_process import DaemonProcess
from tests.support.lookupd import lookupd_settings
from tests.support.lookupd_process import (
    LookupdProcess,
    lookupd_process,
    mail_database,
    metric_samples,
    run_on_database,
    socketmap_lookup,
)
from tests.support.ports import free_port

WORKERS = 2
# Enough new connections that the kernel's hash sends some to each worker.
CONNECTIONS = 40
ALICE = "OK example.org/alice/"


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def worker_pids(daemon: LookupdProcess) -> set[int]:
    samples = metric_samples(daemon, "dinomail_lookupd_worker_start_time_seconds")
    return {int(labels.split('pid="')[1].split('"')[0]) for labels in samples}


def alias_rows(daemon: LookupdProcess) -> dict[int, float]:
    """Aliases in each worker's snapshot, by pid."""
    samples = metric_samples(daemon, "dinomail_lookupd_snapshot_rows")
    return {
        int(labels.split('pid="')[1].split('"')[0]): value
        for labels, value in samples.items() if 'kind="aliases"' in labels
    }


def all_loaded(daemon: LookupdProcess) -> bool:
    rows = alias_rows(daemon)
    pids = worker_pids(daemon)
    return len(pids) == WORKERS and set(rows) == pids and all(rows.values())


def gone(pid: int) -> bool:
    """Exited, or a zombie (after its parent is gone, nothing of it is left)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.fixture
def database(tmp_path: Path) -> str:
    return mail_database(tmp_path)


@pytest.fixture
def workers(database: str, tmp_path: Path) -> Iterator[LookupdProcess]:
    with lookupd_process(database, tmp_path, LOOKUPD_WORKERS=str(WORKERS)) as daemon:
        wait_for(lambda: all_loaded(daemon), "both workers' first snapshot")
        yield daemon


def test_every_worker_answers_and_follows_the_change_log(
    workers: LookupdProcess, database: str
) -> None:
    assert set(children(workers.process.pid)) == worker_pids(workers)
    before = alias_rows(workers)

    async def add_alias(store: Store) -> None:
        async with store.write() as conn:
            await aliases.create(conn, "test", EVERYTHING, {
                "source": "sales@example.org", "destination": "bob@example.org",
            })

    run_on_database(database, add_alias)
    wait_for(lambda: all(alias_rows(workers).get(pid) == rows + 1 for pid, rows in
                         before.items()), "the new alias in every worker's snapshot")
    replies = {socketmap_lookup(workers.socketmap, "aliases", "sales@example.org")
               for _ in range(CONNECTIONS)}
    assert replies == {"OK bob@example.org"}
    # Lookups answered by either worker are counted once, in the sum `/metrics` gives (each
    # worker hands its counts over within a second).
    label = '{map="aliases",protocol="socketmap",result="ok"}'
    wait_for(lambda: metric_samples(workers, "dinomail_lookupd_lookups_total").get(label)
             == CONNECTIONS, "every lookup counted")


def test_a_killed_worker_is_replaced_while_the_other_answers(workers: LookupdProcess) -> None:
    first, second = sorted(worker_pids(workers))
    os.kill(first, signal.SIGKILL)
    # Reaped by the supervisor: every thread gone, its sockets with them (the main thread alone
    # may show as a zombie while the others still hold the listening socket).
    wait_for(lambda: f"(pid {first}) was killed by SIGKILL" in workers.log_text(),
             "the supervisor to see the killed worker exit")
    for _ in range(CONNECTIONS):
        assert socketmap_lookup(workers.socketmap, "mailboxes", "alice@example.org") == ALICE
    wait_for(lambda: len(worker_pids(workers) - {first}) == WORKERS and all_loaded(workers),
             "a new worker in place of the killed one")
    assert second in worker_pids(workers)
    # Its gauges are gone from `/metrics` (counts stay), the live workers' are there, those
    # computed when read (auth policy) included.
    tracked = metric_samples(workers, "dinomail_lookupd_auth_policy_tracked")
    assert {int(labels.split('pid="')[1].split('"')[0]) for labels in tracked} == (
        worker_pids(workers))
    replies = {socketmap_lookup(workers.socketmap, "mailboxes", "alice@example.org")
               for _ in range(CONNECTIONS)}
    assert replies == {ALICE}


def test_sigterm_stops_every_worker_gracefully(workers: LookupdProcess) -> None:
    pids = worker_pids(workers)
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=30) == 0
    for pid in pids:
        assert gone(pid), f"worker {pid} outlived the supervisor"
    log = workers.log_text()
    assert log.count(": stopping") == WORKERS
    assert "Traceback" not in log
    assert not Path(workers.dict_path).exists()


def test_a_listener_that_cannot_bind_fails_the_start_cleanly(
    database: str, tmp_path: Path
) -> None:
    socketmap_port, policy_port = free_port(), free_port()
    taken = socket.create_server(("127.0.0.1", policy_port))  # no SO_REUSEPORT: a stranger
    dict_path = tmp_path / "dict.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")} | {
        "DINOMAIL_DATABASE_URL": database,
        "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{socketmap_port}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{policy_port}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{dict_path}",
    }
    with taken:
        # The workers asked for on the command line, as the README writes it.
        result = subprocess.run(
            [sys.executable, "-m", "dinomail", "lookupd", "--workers", str(WORKERS)], env=env,
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [
        f"dinomail: error: cannot listen: 127.0.0.1:{policy_port}: Address already in use"
    ], result.stderr
    assert "Traceback" not in result.stderr
    # What the start had opened is closed again: the socketmap port and the dict socket.
    socket.create_server(("127.0.0.1", socketmap_port)).close()
    assert not dict_path.exists()


@pytest.mark.parametrize("setting", ["POLICY_LISTEN", "LOOKUPD_HTTP_LISTEN"])
async def test_one_process_that_fails_half_way_closes_what_it_opened(
    tmp_path: Path, setting: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'dinomail.sqlite3'}")
    await migrate.upgrade(store.engine)
    port = free_port()
    settings = lookupd_settings(store, tmp_path, **{setting: f"127.0.0.1:{port}"})
    try:
        with socket.create_server(("127.0.0.1", port)), pytest.raises(OSError) as raised:
            await start_lookupd(settings, store)
        assert f"127.0.0.1:{port}" in str(raised.value)
        # The listeners started before the one that failed are closed again.
        host, _, socketmap_port = settings.SOCKETMAP_LISTEN.rpartition(":")
        socket.create_server((host, int(socketmap_port))).close()
        assert not (tmp_path / "dict.sock").exists()
    finally:
        await store.close()


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_worker_count_is_refused_with_one_line(value: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")} | {
        "DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    by_setting = subprocess.run(
        [sys.executable, "-m", "dinomail", "lookupd"], capture_output=True, text=True,
        env=env | {"DINOMAIL_LOOKUPD_WORKERS": value}, timeout=60,
    )
    assert by_setting.returncode == 2
    assert by_setting.stderr.strip().splitlines()[-1].startswith(
        "dinomail: error: LOOKUPD_WORKERS: must be")
    by_option = subprocess.run(
        [sys.executable, "-m", "dinomail", "lookupd", "--workers", value], capture_output=True,
        text=True, env=env, timeout=60,
    )
    assert by_option.returncode == 2
    assert "--workers: must be a number from 1 to 64" in by_option.stderr
    assert "Traceback" not in by_setting.stderr + by_option.stderr


def test_systemd_hears_ready_once_every_worker_listens(database: str, tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    root = tmp_path / "daemon"
    root.mkdir()
    daemon = DaemonProcess(root, database, env={
        "NOTIFY_SOCKET": str(notify_path), "DINOMAIL_LOOKUPD_WORKERS": str(WORKERS),
    })
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(notify_path))
        receiver.settimeout(60)
        try:
            with daemon.log.open("ab") as log:
                daemon.process = subprocess.Popen(
                    [sys.executable, "-m", "dinomail", "lookupd"], env=daemon.env, cwd=root,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )
            assert receiver.recv(4096) == b"READY=1", daemon.log_text()
            assert len(children(daemon.process.pid)) == WORKERS
            assert daemon.log_text().count(" listening (pid ") == WORKERS
            socket.create_connection(daemon.socketmap, timeout=1).close()
            daemon.process.send_signal(signal.SIGTERM)
            assert receiver.recv(4096) == b"STOPPING=1"  # from the supervisor only
            assert daemon.process.wait(30) == 0
        finally:
            daemon.stop()


def test_a_worker_whose_loop_is_stuck_is_replaced(workers: LookupdProcess) -> None:
    """SIGSTOP stands for an event loop that no longer turns: its heartbeats stop."""
    stuck = min(worker_pids(workers))
    os.kill(stuck, signal.SIGSTOP)
    try:
        wait_for(lambda: f"(pid {stuck}) was killed by SIGKILL" in workers.log_text(),
                 "the stuck worker to be killed", timeout=HEARTBEAT_TIMEOUT + 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck, signal.SIGCONT)
    assert f"(pid {stuck}) has not answered for {HEARTBEAT_TIMEOUT:g} s: killing it" in (
        workers.log_text())
    wait_for(lambda: stuck not in worker_pids(workers) and all_loaded(workers),
             "a new worker in place of the stuck one")
    assert socketmap_lookup(workers.socketmap, "mailboxes", "alice@example.org") == ALICE
