"""The README's "Read replicas and failover" setup, run as written: a primary, a standby made
with `pg_basebackup -R`, `dinomail check` with the URL of each side, then `pg_ctl promote` once
the primary is gone, and `check` again with the same URLs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dinomail
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer, find_bindir
from tests.support.readme import shell_blocks

HEADING = "Read replicas and failover"
VENV_BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"


def run(
    block: str, env: dict[str, str], *, as_server_user: bool
) -> subprocess.CompletedProcess[str]:
    """A README block in `sh -e`; PostgreSQL's own commands as the `postgres` user when root."""
    extra = (
        {"user": "postgres", "group": "postgres"}
        if as_server_user and os.geteuid() == 0 else {}
    )
    return subprocess.run(
        ["sh", "-ec", block], env=env, capture_output=True, text=True, timeout=120,
        cwd="/", **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def primary() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    assert bindir is not None
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def test_readme_replica_setup_runs(primary: PostgresServer) -> None:
    blocks = shell_blocks(HEADING)
    assert len(blocks) == 4, blocks
    replicate, standby_start, settings, promote = blocks
    assert "pg_basebackup" in standby_start and "-R" in standby_start
    assert "target_session_attrs=read-write" in settings
    assert "target_session_attrs=prefer-standby" in settings

    # The database as the PostgreSQL section makes it: a `dinomail` role owning `dinomail`.
    primary.psql("CREATE ROLE dinomail LOGIN PASSWORD 'secret'")
    primary.psql("CREATE DATABASE dinomail OWNER dinomail")
    migrated = dinomail("migrate", env={
        "DINOMAIL_DATABASE_URL":
            f"postgresql://dinomail:secret@127.0.0.1:{primary.port}/dinomail",
    })
    assert migrated.returncode == 0, migrated.stderr

    # The test's server has max_connections=200 on its command line, which a copy of its data
    # folder would not carry; a standby may not have fewer than its primary.
    primary.psql("ALTER SYSTEM SET max_connections = 200")

    standby_root = Path(tempfile.mkdtemp(prefix="dinomail-pg-standby-"))
    if os.geteuid() == 0:
        shutil.chown(standby_root, "postgres", "postgres")
    env = {
        "PATH": f"{VENV_BIN}:{primary.bindir}:{os.environ['PATH']}",
        "PGHOST": "127.0.0.1", "PGPORT": str(primary.port), "PGUSER": "postgres",
        "PGDATA": str(primary.data), "STANDBY_ADDRESS": "127.0.0.1/32",
        "PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": str(primary.port),
        "STANDBY_HOST": "127.0.0.1", "STANDBY_PORT": str(free_port()),
        "STANDBY_DATA": str(standby_root / "data"),
    }
    try:
        done = run(replicate, env, as_server_user=True)
        assert done.returncode == 0, done.stderr
        assert "replicator" in primary.psql("SELECT rolname FROM pg_roles WHERE rolreplication")
        done = run(standby_start, env, as_server_user=True)
        assert done.returncode == 0, done.stderr

        check = run(settings, env, as_server_user=False)
        assert check.returncode == 0, check.stderr
        assert "No issues found" in check.stdout
        assert "Lookups read from a standby" in check.stdout

        primary.stop()
        done = run(promote, env, as_server_user=True)
        assert done.returncode == 0, done.stderr

        # The same URLs, now both reaching the promoted server, which takes writes.
        check = run(settings, env, as_server_user=False)
        assert check.returncode == 0, check.stderr
        assert "No issues found" in check.stdout
        assert "standby" not in check.stdout
    finally:
        run('pg_ctl -D "$STANDBY_DATA" -m fast -w stop', env, as_server_user=True)
        shutil.rmtree(standby_root, ignore_errors=True)
