"""The shipped systemd units are valid (`systemd-analyze verify`) and hardened."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dinomail.sdnotify import watchdog_interval
from tests.support.daemon_process import DaemonProcess

UNITS = sorted((Path(__file__).parent.parent / "systemd").glob("*.service"))
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "StateDirectory=dinomail", "RuntimeDirectory=dinomail", "User=dinomail")


def test_three_units_are_shipped() -> None:
    assert [unit.name for unit in UNITS] == [
        "dinomail-adminapi.service", "dinomail-lookupd.service", "dinomail.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_is_hardened(unit: Path) -> None:
    text = unit.read_text()
    for line in HARDENING:
        assert f"\n{line}\n" in text, line
    command = {"dinomail.service": "serve", "dinomail-lookupd.service": "lookupd",
               "dinomail-adminapi.service": "adminapi"}[unit.name]
    assert f"dinomail.toml {command}\n" in text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is absent")
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    # verify checks that the executable exists, so point it at the installed command.
    executable = Path(sys.executable).parent / "dinomail"
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/local/bin/dinomail", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_notifies_restarts_for_ever_and_has_room_for_connections(unit: Path) -> None:
    text = unit.read_text()
    service = text.split("[Service]", 1)[1]
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30s", "Restart=always",
                 "RestartSec=2s", "LimitNOFILE=65536"):
        assert f"\n{line}\n" in service, line
    # No start limit: a long database outage cannot leave the service down for good.
    assert "\nStartLimitIntervalSec=0\n" in text.split("[Service]", 1)[0]
    # A database that is down does not keep the daemon from listening (migrate may fail).
    for line in service.splitlines():
        if line.startswith("ExecStartPre="):
            assert line.startswith("ExecStartPre=-"), line


@pytest.mark.parametrize("command", ["lookupd", "serve"])
def test_ready_and_watchdog_notifications_reach_a_notify_socket(
    command: str, tmp_path: Path
) -> None:
    """systemd's side, played by a real unix datagram socket named in $NOTIFY_SOCKET: READY=1
    once the listeners accept connections (the database is unreachable: that must not delay
    it), WATCHDOG=1 at half of $WATCHDOG_USEC, STOPPING=1 on SIGTERM."""
    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.settimeout(30)
    root = tmp_path / "daemon"
    root.mkdir()
    daemon = DaemonProcess(
        root, f"sqlite:///{tmp_path / 'missing' / 'db.sqlite3'}", command=command,
        env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"},
    )
    try:
        with daemon.log.open("ab") as log:
            daemon.process = subprocess.Popen(
                [sys.executable, "-m", "dinomail", command], env=daemon.env, cwd=root,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        assert receiver.recv(4096) == b"READY=1", daemon.log_text()
        # Ready means listening, at once.
        socket.create_connection(daemon.socketmap, timeout=1).close()
        assert daemon.socketmap_query("mailboxes", "a@example.org").startswith("TEMP ")
        started = time.monotonic()
        pings = [receiver.recv(4096) for _ in range(3)]
        assert pings == [b"WATCHDOG=1"] * 3
        assert time.monotonic() - started < 3.0  # every 0.5 s
        daemon.process.send_signal(signal.SIGTERM)
        messages = []
        while b"STOPPING=1" not in messages:
            messages.append(receiver.recv(4096))
        assert daemon.process.wait(30) == 0
    finally:
        daemon.stop()
        receiver.close()


def test_no_watchdog_pings_meant_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
