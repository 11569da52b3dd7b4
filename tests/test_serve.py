"""`dinomail serve` as an admin runs it: every listener up on SQLite, a SECRET_KEY generated
once into the state directory, a clean stop on SIGTERM."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import dinomail
from tests.support.dns import unused_nameserver
from tests.support.ports import free_port
from tests.support.serve_process import start_serve, stop_serve, wait_for_status
from tests.support.socketmap_client import socketmap_query


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
    process = start_serve(env, tmp_path)
    try:
        wait_for_status(f"http://{env['DINOMAIL_HTTP_LISTEN']}/healthz", 200)
        wait_for_status(f"http://{env['DINOMAIL_LOOKUPD_HTTP_LISTEN']}/healthz", 200)
        reply = await socketmap_query(env["DINOMAIL_SOCKETMAP_LISTEN"], "domains", "example.org")
        assert reply == "NOTFOUND "
    finally:
        status, stderr = stop_serve(process)
    assert status == 0, stderr
    key_file = tmp_path / "state" / "secret_key"
    assert "SECRET_KEY was not set: generated a new one" in stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    first_key = key_file.read_text()
    assert len(first_key.strip()) >= 32

    # The second start keeps the key (sessions survive a restart) and says nothing about it.
    process = start_serve(env, tmp_path)
    try:
        wait_for_status(f"http://{env['DINOMAIL_HTTP_LISTEN']}/healthz", 200)
    finally:
        status, stderr = stop_serve(process)
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
