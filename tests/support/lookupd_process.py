"""The real `dinomail lookupd` in its own process, on loopback ports and a unix socket, for tests
that watch the daemon's memory (its RSS, from /proc) while clients misbehave."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dinomail import migrate
from dinomail.store import Store
from tests.support.mail_data import fill_mail_data
from tests.support.ports import free_port


def mail_database(tmp_path: Path) -> str:
    """A SQLite database, migrated and filled with `fill_mail_data`; its URL. Usable from
    sync fixtures (it runs its own event loop in a thread)."""
    url = f"sqlite:///{tmp_path / 'dinomail.sqlite3'}"

    async def prepare() -> None:
        store = Store(url)
        try:
            await migrate.upgrade(store.engine)
            await fill_mail_data(store)
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, prepare()).result()
    return url


@dataclass
class LookupdProcess:
    process: subprocess.Popen[str]
    socketmap: tuple[str, int]
    policy: tuple[str, int]
    http: tuple[str, int]
    dict_path: str
    log: Path

    def log_text(self) -> str:
        """What the daemon wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def rss(self) -> int:
        """Resident memory of the daemon, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the daemon")

    def alive(self) -> bool:
        return self.process.poll() is None


def _address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host, int(port)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


@contextmanager
def lookupd_process(database_url: str, tmp_path: Path, **settings: str) -> Iterator[LookupdProcess]:
    """Start the daemon on a migrated database; yield once its first snapshot is loaded."""
    listen = {
        "SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DICT_LISTEN": f"unix:{tmp_path / 'dict.sock'}",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")}
    env.update({f"DINOMAIL_{key}": value for key, value in {
        "DATABASE_URL": database_url,
        "STATE_DIR": str(tmp_path / "state"),
        "SQLITE_POLL_INTERVAL": "0.1",
        **listen,
        **settings,
    }.items()})
    stderr = open(tmp_path / "lookupd.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "dinomail", "lookupd"], env=env, text=True,
        stdout=subprocess.DEVNULL, stderr=stderr,
    )
    daemon = LookupdProcess(
        process, _address(listen["SOCKETMAP_LISTEN"]), _address(listen["POLICY_LISTEN"]),
        _address(listen["LOOKUPD_HTTP_LISTEN"]), listen["DICT_LISTEN"].removeprefix("unix:"),
        tmp_path / "lookupd.log",
    )
    try:
        deadline = time.monotonic() + 30
        url = "http://{}:{}/healthz".format(*daemon.http)
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("lookupd did not start: "
                                     + (tmp_path / "lookupd.log").read_text()[-2000:])
            time.sleep(0.1)
        yield daemon
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()


def connect(address: tuple[str, int] | str, timeout: float = 5.0) -> socket.socket:
    """A blocking client socket: TCP for (host, port), unix for a path."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
    else:
        sock = socket.create_connection(address, timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or `limit` bytes, or the timeout)."""
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def run_on_database(database_url: str, work: Callable[[Store], Awaitable[None]]) -> None:
    """Run `await work(store)` against the database from a sync test (its own loop, a thread)."""
    async def run() -> None:
        store = Store(database_url)
        try:
            await work(store)
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


def socketmap_lookup(address: tuple[str, int], name: str, key: str) -> str:
    """One lookup on a new connection (as a Postfix process that just started): the reply."""
    with connect(address) as sock:
        payload = f"{name} {key}".encode()
        sock.sendall(b"%d:%s," % (len(payload), payload))
        reply = b""
        while not reply.endswith(b","):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {reply!r}")
            reply += chunk
    return reply.split(b":", 1)[1][:-1].decode()


def metric_samples(daemon: LookupdProcess, name: str) -> dict[str, float]:
    """The samples of one metric on the daemon's `/metrics`: {labels text: value}."""
    url = "http://{}:{}/metrics".format(*daemon.http)
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name):].rpartition(" ")
            samples[labels] = float(value)
    return samples
