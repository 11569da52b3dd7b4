"""The real `dinomail lookupd` (or `serve`) as a separate process, as systemd runs it, on free
loopback ports, with its log in a file; and small blocking clients for each of its listeners."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.ports import free_port


class DaemonProcess:
    def __init__(
        self, root: Path, database_url: str, *, command: str = "lookupd",
        env: Mapping[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.command = command
        self.log = root / f"{command}.log"
        self.socketmap = ("127.0.0.1", free_port())
        self.policy = ("127.0.0.1", free_port())
        self.http = f"127.0.0.1:{free_port()}"
        self.dict_socket = root / "dict.sock"
        self.state_dir = root / "state"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")} | {
            "DINOMAIL_DATABASE_URL": database_url,
            "DINOMAIL_STATE_DIR": str(self.state_dir),
            "DINOMAIL_SOCKETMAP_LISTEN": f"{self.socketmap[0]}:{self.socketmap[1]}",
            "DINOMAIL_POLICY_LISTEN": f"{self.policy[0]}:{self.policy[1]}",
            "DINOMAIL_LOOKUPD_HTTP_LISTEN": self.http,
            "DINOMAIL_DICT_LISTEN": f"unix:{self.dict_socket}",
            "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        } | dict(env or {})
        self._preexec = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until every listener accepts connections."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dinomail", self.command], env=self.env, cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=self._preexec,
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.command} exited:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.command} did not listen:\n{self.log_text()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            for address in (self.socketmap, self.policy):
                socket.create_connection(address, timeout=1).close()
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(self.dict_socket))
            self.get("/healthz")
            if self.command == "serve":  # the admin side starts after the lookup listeners
                host, _, port = self.env["DINOMAIL_HTTP_LISTEN"].rpartition(":")
                socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # --- clients ---------------------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode()

    def health(self) -> tuple[int, dict[str, object]]:
        status, body = self.get("/healthz")
        return status, json.loads(body)

    def metric(self, name: str) -> float | None:
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def socketmap_query(self, name: str, key: str) -> str:
        with socket.create_connection(self.socketmap, timeout=5) as sock:
            return socketmap_ask(sock, name, key)

    def dict_lookup(self, key: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.dict_socket))
            sock.sendall(b"H2\t1\t0\t\tauth\nL" + key.encode() + b"\n")
            return _read_line(sock)

    def policy_request(self, sender: str = "alice@example.org") -> bytes:
        """The raw reply to one RCPT request (b"" when the server disconnects without one)."""
        request = (
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            f"client_address=127.0.0.1\nsender={sender}\nrecipient=bob@example.org\n"
            f"sasl_username={sender}\n\n"
        )
        with socket.create_connection(self.policy, timeout=5) as sock:
            sock.sendall(request.encode())
            data = b""
            while not data.endswith(b"\n\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data


def socketmap_ask(sock: socket.socket, name: str, key: str) -> str:
    payload = f"{name} {key}".encode()
    sock.sendall(b"%d:%s," % (len(payload), payload))
    data = b""
    while b":" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    length, _, rest = data.partition(b":")
    while len(rest) < int(length) + 1:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return rest[: int(length)].decode()


def _read_line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
