"""A minimal ManageSieve client (RFC 5804) for tests: log in with PLAIN, upload a script and
make it the active one, as a mail client's filter editor does."""

from __future__ import annotations

import base64
import contextlib
import socket


class ManageSieveError(AssertionError):
    pass


class ManageSieve:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._file = self._socket.makefile("rb")
        self._response()  # the capabilities, then OK

    def _response(self) -> list[bytes]:
        lines = []
        while True:
            line = self._file.readline()
            if not line:
                raise ManageSieveError("the server closed the connection")
            line = line.rstrip(b"\r\n")
            if line.startswith((b"OK", b"NO", b"BYE")):
                if not line.startswith(b"OK"):
                    raise ManageSieveError(line.decode("utf-8", "replace"))
                return lines
            lines.append(line)

    def _command(self, text: bytes) -> list[bytes]:
        self._socket.sendall(text + b"\r\n")
        return self._response()

    def login(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self._command(f'AUTHENTICATE "PLAIN" "{token}"'.encode())

    def put_active(self, name: str, script: str) -> None:
        data = script.encode("utf-8")
        self._command(f'PUTSCRIPT "{name}" {{{len(data)}+}}\r\n'.encode() + data)
        self._command(f'SETACTIVE "{name}"'.encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.sendall(b"LOGOUT\r\n")
        self._file.close()
        self._socket.close()
