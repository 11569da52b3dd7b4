"""A throwaway MariaDB server: `mariadb-install-db` and `mariadbd` in a temporary folder, on a
free loopback port, with grant tables skipped (anyone connects as root, no password).

As root the server runs as the `mysql` OS user, which owns the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port

MARIADBD = "/usr/sbin/mariadbd"
START_TIMEOUT = 60.0


def have_mariadb() -> bool:
    return Path(MARIADBD).exists() and shutil.which("mariadb-install-db") is not None


class MariaDBServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dinomail-mariadb-"))
        self.data = self.root / "data"
        self.socket = self.root / "mariadb.sock"
        self.user = "mysql" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        if os.geteuid() == 0:
            shutil.chown(self.root, "mysql", "mysql")
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
             f"--user={self.user}", "--auth-root-authentication-method=normal",
             "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--user={self.user}",
             "--skip-grant-tables", f"--pid-file={self.root / 'mariadb.pid'}",
             f"--log-error={self.root / 'error.log'}", "--innodb-buffer-pool-size=16M",
             "--skip-log-bin", "--character-set-server=utf8mb4"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.root / "error.log").read_text())
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
                capture_output=True,
            )
            if ping.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("MariaDB did not start")

    def sql(self, sql: str, database: str | None = None) -> str:
        return subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot",
             *([database] if database else [])],
            input=sql, check=True, capture_output=True, text=True, timeout=60,
        ).stdout

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE {name} CHARACTER SET latin1 COLLATE latin1_general_ci")
        return f"mysql://root@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
