"""Framing of Postfix policy delegation requests (SMTPD_POLICY_README): lines `name=value\n`,
an empty line ending each request. Postfix sends about 30 attributes, every one every time.

Anything else is a client we cannot trust to be where a request starts: a line without `=`, a
line longer than `MAX_LINE_BYTES`, more than `MAX_ATTRIBUTES` attributes or `MAX_REQUEST_BYTES`
bytes in one request, or an empty request. The caller closes that connection.
"""

from __future__ import annotations

# Postfix's longest values are TLS certificate subjects and issuers (xtext-encoded), a few
# hundred bytes; 16 KiB leaves room for anything a real client sends.
MAX_LINE_BYTES = 16 * 1024
# Postfix 3.12 sends 34 attributes.
MAX_ATTRIBUTES = 100
MAX_REQUEST_BYTES = 64 * 1024

PolicyRequest = dict[bytes, bytes]


class PolicyRequestError(ValueError):
    """The bytes cannot be a policy request; the connection must close."""


class PolicyRequestParser:
    """Splits a byte stream into requests; feed it whatever arrives, in any pieces.

    A repeated attribute keeps its last value (SMTPD_POLICY_README allows either).
    """

    __slots__ = ("_buffer", "_line_start", "_newlines", "_scanned")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # How far the buffer has been searched for the end of a request, so that a request fed
        # byte by byte is not searched again from its start at every byte.
        self._scanned = 0
        # The partial request's line count and where its last line starts, kept up to date
        # with each piece for the same reason: recounting 64 KiB at every byte of a client
        # sending one byte per segment took seconds of the event loop.
        self._newlines = 0
        self._line_start = 0

    @property
    def pending(self) -> bool:
        """A request is partly received."""
        return bool(self._buffer)

    def whole(self, data: bytes) -> PolicyRequest | None:
        """The request, when nothing is pending and `data` is exactly one whole request; else
        None, and `feed` must take `data`. Raises as `feed` does on a bad request.

        The common case, a client waiting for each reply: parsed without going through the
        buffer (which, empty, holds no state).
        """
        if (not self._buffer and data[:1] != b"\n" and data.endswith(b"\n\n")
                and data.find(b"\n\n") == len(data) - 2):
            return _parse(data[:-2])
        return None

    def feed(self, data: bytes) -> list[PolicyRequest]:
        request = self.whole(data)
        if request is not None:
            return [request]
        buffer = self._buffer
        received_at = len(buffer)
        buffer += data
        requests: list[PolicyRequest] = []
        start = 0
        while True:
            if buffer[start:start + 1] == b"\n":
                raise PolicyRequestError("empty request")
            end = buffer.find(b"\n\n", max(start, self._scanned - 1))
            if end < 0:
                break
            requests.append(_parse(bytes(buffer[start:end])))
            start = end + 2
            self._scanned = start
        if start:
            # What is left arrived with this piece (the request before it ended in it).
            del buffer[:start]
            self._scanned = 0
            self._newlines = buffer.count(b"\n")
            self._line_start = buffer.rfind(b"\n") + 1
        else:
            self._newlines += data.count(b"\n")
            last = data.rfind(b"\n")
            if last >= 0:
                self._line_start = received_at + last + 1
        self._check_partial()
        self._scanned = len(buffer)
        return requests

    def _check_partial(self) -> None:
        buffer = self._buffer
        if len(buffer) > MAX_REQUEST_BYTES:
            raise PolicyRequestError(f"request longer than {MAX_REQUEST_BYTES} bytes")
        if self._newlines > MAX_ATTRIBUTES:
            raise PolicyRequestError(f"more than {MAX_ATTRIBUTES} attributes")
        if len(buffer) - self._line_start > MAX_LINE_BYTES:
            raise PolicyRequestError(f"line longer than {MAX_LINE_BYTES} bytes")


def _parse(block: bytes) -> PolicyRequest:
    if len(block) > MAX_REQUEST_BYTES:
        raise PolicyRequestError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    lines = block.split(b"\n")
    if len(lines) > MAX_ATTRIBUTES:
        raise PolicyRequestError(f"more than {MAX_ATTRIBUTES} attributes")
    if max(map(len, lines)) > MAX_LINE_BYTES:
        raise PolicyRequestError(f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        # dict() refuses a line without `=` (a one-item pair): checked in C, not per line here.
        return dict(line.split(b"=", 1) for line in lines)
    except ValueError:
        raise PolicyRequestError("a line without name=value") from None
