"""Helpers of the protocol fuzzing tests: driving a listener's asyncio protocol in process
(thousands of inputs a second), checking that replies are the protocol's defined answers, and
watching a real lookupd process while garbage arrives."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings

from lookupd.netstring import NetstringError, NetstringParser
from tests.support.lookupd_process import LookupdProcess

MiB = 1024 * 1024
# The memory a daemon may gain while fuzzed (its caches and allocator settle within this).
MAX_RSS_GROWTH = 32 * MiB


def fuzz_settings(examples: int) -> settings:
    """A bounded budget for the normal test run: a few seconds per parser."""
    return settings(
        max_examples=examples, deadline=None, database=None, derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )


class RecordingTransport(asyncio.Transport):
    """The transport side of one in-process connection: keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


def drive(
    loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, chunks: Iterable[bytes]
) -> RecordingTransport:
    """Feed `chunks` as the connection's reads, let tasks run, and end the connection.
    An exception out of the protocol's callbacks fails the caller (none may escape)."""

    async def run() -> RecordingTransport:
        transport = RecordingTransport()
        protocol.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            protocol.data_received(chunk)
            await asyncio.sleep(0)
        for _ in range(3):  # an iteration streaming its rows
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        await asyncio.sleep(0)
        return transport

    return loop.run_until_complete(run())


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` in pieces, cut at the given offsets (taken modulo its length)."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# --- the protocols' defined answers --------------------------------------------------------------

SOCKETMAP_REPLY = re.compile(rb"(OK .+|NOTFOUND |TEMP .*|PERM .*)", re.DOTALL)


def socketmap_replies(data: bytes) -> list[bytes]:
    """The reply payloads; AssertionError unless each is a socketmap answer (never `OK `
    with an empty value)."""
    try:
        payloads = NetstringParser(100_000).feed(data)
    except NetstringError as error:
        raise AssertionError(f"not netstrings: {data[:200]!r}") from error
    for payload in payloads:
        assert SOCKETMAP_REPLY.fullmatch(payload), payload[:200]
        assert payload.strip() != b"OK", payload
    return payloads


DICT_LINE = re.compile(rb"(A?[ONF].*|N|)", re.DOTALL)


class Received(bytes):
    """What a connection received; `reset`: it ended with a reset, which may have cut the
    last reply (a server closing with unread input resets the connection)."""

    reset = False


def dict_replies(data: bytes) -> list[bytes]:
    """The reply lines; AssertionError unless each is a dict answer: `O…`, `N`, `F…`, the
    end of an iteration (an empty line) or an async commit's `AO`/`AN`/`AF`."""
    assert not data or data.endswith(b"\n") or getattr(data, "reset", False), data[-200:]
    lines = data.split(b"\n")[:-1]
    for line in lines:
        assert DICT_LINE.fullmatch(line), line[:200]
    return lines


def policy_replies(data: bytes, actions: set[bytes]) -> list[bytes]:
    """The actions answered; AssertionError unless the data is `action=…\\n\\n` replies with
    one of `actions`."""
    replies = data.split(b"\n\n")
    assert replies[-1] == b"" or getattr(data, "reset", False), data[-200:]
    for reply in replies[:-1]:
        assert reply.startswith(b"action=") and reply[7:] in actions, reply[:200]
    return replies[:-1]


# --- a real daemon under fire --------------------------------------------------------------------


@dataclass
class Watch:
    """Another client served all along, and the daemon's memory watched meanwhile."""

    daemon: LookupdProcess
    check: Callable[[], bool]
    answers: list[bool] = field(default_factory=list)
    peak_rss: int = 0
    start_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self.start_rss = self.peak_rss = self.daemon.rss()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(self.check())
            except OSError:
                self.answers.append(False)
            self.peak_rss = max(self.peak_rss, self.daemon.rss())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def assert_served_and_bounded(self) -> None:
        assert self.daemon.alive()
        assert self.answers, "the other client was never answered"
        assert all(self.answers), f"{self.answers.count(False)} of the other client's " \
                                  "requests were not answered right"
        growth = max(self.peak_rss, self.daemon.rss()) - self.start_rss
        assert growth < MAX_RSS_GROWTH, f"the daemon grew by {growth / MiB:.1f} MiB"
        assert "Traceback" not in self.daemon.log_text()


def exchange(
    address: tuple[str, int] | str, data: bytes, timeout: float = 5.0, *, half_close: bool = True
) -> Received:
    """Send `data` on a new connection, end the sending side (unless `half_close` is false:
    an HTTP server takes that for a client gone), and read until the daemon closes. A daemon
    that closes while we send (it refused the input) is fine."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = bytearray()
        reset = False
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            reset = True
        answer = Received(received)
        answer.reset = reset
        return answer
