"""A throwaway PostgreSQL server: `initdb` and `pg_ctl` into a temporary folder, on a free port.

As root the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    def __init__(self, bindir: Path, *, primary: PostgresServer | None = None) -> None:
        """A new cluster (`initdb`); or, with `primary` (running), a streaming-replication
        standby of it: `pg_basebackup -R` (which writes standby.signal and the connection to
        the primary), to be started on a port of its own."""
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dinomail-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        if primary is None:
            # initdb's pg_hba.conf lets loopback connect for replication too (trust).
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        else:
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                      "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream",
                      "-c", "fast", "--no-sync")

    def standby(self) -> PostgresServer:
        """A streaming standby of this (running) server, not started yet."""
        return PostgresServer(self.bindir, primary=self)

    def promote(self) -> None:
        """Make this standby a primary (`pg_ctl promote`), waiting until it takes writes."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def _run(
        self, tool: str, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        extra = {"user": "postgres", "group": "postgres"} if self._as_postgres else {}
        return subprocess.run(
            [str(self.bindir / tool), *args], check=True, capture_output=True, text=True,
            cwd=self.root, input=input, **extra,  # type: ignore[arg-type]
        )

    def start(self) -> None:
        # wal_level replica (the default, said here because a standby depends on it) lets
        # `standby()` copy this server and stream its changes.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c wal_level=replica"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE`: `fast` (clients cut, clean shutdown) or `immediate` (as a
        crash: no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        ).stdout

    def psql_script(self, script: str, database: str) -> str:
        """Run a whole SQL script (a pg_dump, say) with psql, stopping at the first error."""
        return self._run(
            "psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", database, "-v", "ON_ERROR_STOP=1", "-f", "-", input=script,
        ).stdout

    def dump(self, database: str, *options: str) -> str:
        """`pg_dump` of the database (schema and data) as text."""
        return self._run(
            "pg_dump", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            *options, database,
        ).stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        clause = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
