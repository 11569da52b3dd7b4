"""`dinomail serve` as an admin runs it: every listener up on SQLite, a SECRET_KEY generated
once into the state directory, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.cli import dinomail
from tests.support.dns import unused_nameserver
from tests.support.ports import free_port
from tests.support.socketmap_client import socketmap_query


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait_for(url: str, status: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if _get(url) == status:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status}")


def _start(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")} | env
    return subprocess.Popen(
        [sys.executable, "-m", "dinomail", "serve"], env=environ, cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr


async def test_serve_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    env = {
        "DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
        "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{tmp_path / 'dict.sock'}",
        # The background DNS checker asks only a loopback port nothing answers.
        "DINOMAIL_DNS_RESOLVERS": unused_nameserver(),
    }
    assert dinomail("migrate", env=env, cwd=tmp_path).returncode == 0
    process = _start(env, tmp_path)
    try:
        _wait_for(f"http://{env['DINOMAIL_HTTP_LISTEN']}/healthz", 200)
        _wait_for(f"http://{env['DINOMAIL_LOOKUPD_HTTP_LISTEN']}/healthz", 200)
        reply = await socketmap_query(env["DINOMAIL_SOCKETMAP_LISTEN"], "domains", "example.org")
        assert reply == "NOTFOUND "
    finally:
        status, stderr = _stop(process)
    assert status == 0, stderr
    key_file = tmp_path / "state" / "secret_key"
    assert "SECRET_KEY was not set: generated a new one" in stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    first_key = key_file.read_text()
    assert len(first_key.strip()) >= 32

    # The second start keeps the key (sessions survive a restart) and says nothing about it.
    process = _start(env, tmp_path)
    try:
        _wait_for(f"http://{env['DINOMAIL_HTTP_LISTEN']}/healthz", 200)
    finally:
        status, stderr = _stop(process)
    assert status == 0, stderr
    assert "SECRET_KEY" not in stderr, stderr
    assert key_file.read_text() == first_key


def test_serve_refuses_a_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
            "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{port}",
            "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "DINOMAIL_DICT_LISTEN": f"unix:{tmp_path / 'dict.sock'}",
        }
        assert dinomail("migrate", env=env, cwd=tmp_path).returncode == 0
        result = dinomail("serve", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "dinomail: error: cannot listen: " in result.stderr.strip().splitlines()[-1]
