"""Postfix socketmap server: maps `domains`, `mailboxes`, `aliases` and `senders`.

Wire format (socketmap_table(5)): the request is the netstring `<map> <key>`, the reply one of
the netstrings `OK <value>`, `NOTFOUND `, `TEMP <reason>`, `PERM <reason>`. Each Postfix process
keeps one connection per endpoint and sends one request at a time, so a server holds many quiet
connections; a client that pipelines still gets its replies in order, because each request is
answered synchronously as it is parsed.

Three layers, each ignorant of the others' concerns: `NetstringParser` frames bytes,
`SocketmapResponder` turns one request payload into one reply (asking `lookupd.resolve`), and
`SocketmapProtocol` moves bytes, enforces limits and idleness, and closes bad clients.

Every failure has a conservative answer:
- no snapshot loaded yet, or an exception in a lookup → `TEMP` (Postfix defers; mail waits);
- a value that would be empty, or a reply above Postfix's limit → `TEMP`, counted as an error;
- an unknown map name → `PERM` (a configuration mistake on the Postfix side);
- a key that is not UTF-8 or holds a NUL → `NOTFOUND` (no stored address can match it);
- a malformed or oversized netstring, or a connection idle too long → that connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from dinomail.listen import ListenAddress, parse_listen
from lookupd.listen import ConnectionSet, ProtocolServer, create_server
from lookupd.metrics import UNKNOWN_MAP, LookupdMetrics, LookupRecorder
from lookupd.netstring import MAX_QUERY_BYTES, NetstringError, NetstringParser, encode_netstring
from lookupd.resolve import (
    decode_key,
    resolve_alias,
    resolve_domain,
    resolve_mailbox,
    resolve_senders,
)
from lookupd.snapshot import Snapshot

logger = logging.getLogger(__name__)

PROTOCOL = "socketmap"

# Postfix closes its own idle connections after 10 s; a client quiet for much longer is stuck
# or gone. Postfix reconnects transparently when we close between requests.
DEFAULT_IDLE_TIMEOUT = 60.0

# How long a shutdown waits for connections to finish the request they are sending.

# During shutdown, a connection quiet for this long has no request on its way and is closed.
SHUTDOWN_QUIET = 0.1

# Postfix's `socketmap_max_reply_size`: a longer reply fails on its side as a temporary error.
MAX_REPLY_BYTES = 100_000

SnapshotSource = Callable[[], Snapshot | None]
Lookup = Callable[[Snapshot, str], str | None]


def _joined(values: list[str] | None) -> str | None:
    # Postfix splits an alias or sender-owner result at commas and whitespace.
    return ",".join(values) if values else None


def _aliases(snapshot: Snapshot, key: str) -> str | None:
    return _joined(resolve_alias(snapshot, key))


def _senders(snapshot: Snapshot, key: str) -> str | None:
    return _joined(resolve_senders(snapshot, key))


MAPS: dict[bytes, tuple[str, Lookup]] = {
    b"domains": ("domains", resolve_domain),
    b"mailboxes": ("mailboxes", resolve_mailbox),
    b"aliases": ("aliases", _aliases),
    b"senders": ("senders", _senders),
}
MAP_NAMES = tuple(name for name, _ in MAPS.values())

# A request is `<map> <key>`: Postfix's own key limit plus the longest map name and its space,
# so that no key Postfix is willing to send gets its connection closed.
MAX_REQUEST_BYTES = MAX_QUERY_BYTES + max(len(name) for name in MAPS) + 1

_NOTFOUND = encode_netstring(b"NOTFOUND ")
_TEMP_NOT_LOADED = encode_netstring(b"TEMP mail data not loaded yet")
_TEMP_INTERNAL = encode_netstring(b"TEMP internal error")
_TEMP_EMPTY = encode_netstring(b"TEMP internal error (empty result)")
_TEMP_TOO_LARGE = encode_netstring(b"TEMP result larger than Postfix accepts")
_PERM_UNKNOWN_MAP = encode_netstring(
    b"PERM unknown map name; known: " + b", ".join(MAPS)
)


class SocketmapResponder:
    """One request payload in, one reply netstring out; never raises."""

    __slots__ = ("_recorder", "_snapshot_source")

    def __init__(
        self, snapshot_source: SnapshotSource, recorder: LookupRecorder | None = None
    ) -> None:
        self._snapshot_source = snapshot_source
        self._recorder = recorder

    def __call__(self, payload: bytes) -> bytes:
        started = time.perf_counter()
        name, _, raw_key = payload.partition(b" ")
        entry = MAPS.get(name)
        error: str | None = None
        if entry is None:
            map_name, result, reply = UNKNOWN_MAP, "perm", _PERM_UNKNOWN_MAP
        else:
            map_name, lookup = entry
            try:
                result, reply, error = self._lookup(lookup, raw_key)
            except Exception:
                logger.exception("socketmap lookup %s failed", map_name)
                result, reply, error = "temp", _TEMP_INTERNAL, "exception"
        recorder = self._recorder
        if recorder is not None:
            recorder.lookup(map_name, result, time.perf_counter() - started)
            if error is not None:
                recorder.lookup_error(error)
        return reply

    def _lookup(self, lookup: Lookup, raw_key: bytes) -> tuple[str, bytes, str | None]:
        snapshot = self._snapshot_source()
        if snapshot is None:
            return "temp", _TEMP_NOT_LOADED, None
        key = decode_key(raw_key)
        if key is None:
            return "notfound", _NOTFOUND, None
        value = lookup(snapshot, key)
        if value is None:
            return "notfound", _NOTFOUND, None
        if not value or value.isspace():
            # Postfix treats `OK ` as a configuration error; a rule that yields it is a bug.
            logger.error("socketmap lookup returned an empty value for %r", key)
            return "temp", _TEMP_EMPTY, "empty_value"
        data = b"OK " + value.encode("utf-8")
        if len(data) > MAX_REPLY_BYTES:
            logger.warning("socketmap reply for %r is %d bytes, above Postfix's limit", key,
                           len(data))
            return "temp", _TEMP_TOO_LARGE, "reply_too_large"
        return "ok", encode_netstring(data), None


class SocketmapProtocol(asyncio.Protocol):
    """One client connection: frames requests, answers each in order, enforces limits."""

    __slots__ = (
        "_closing",
        "_connections",
        "_draining",
        "_idle_handle",
        "_idle_timeout",
        "_last_activity",
        "_loop",
        "_parser",
        "_recorder",
        "_respond",
        "_transport",
    )

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        recorder: LookupRecorder | None = None,
        connections: ConnectionSet | None = None,
    ) -> None:
        self._respond = SocketmapResponder(snapshot_source, recorder)
        self._recorder = recorder
        self._connections = connections
        self._idle_timeout = idle_timeout
        self._parser = NetstringParser(MAX_REQUEST_BYTES)
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._closing = False  # the transport is closing: nothing more is read
        self._draining = False  # the server is shutting down: close once quiet

    # --- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._arm_timer(self._last_activity + self._idle_timeout)
        if self._recorder is not None:
            self._recorder.connections.inc()
        if self._connections is not None:
            self._connections.add(self)
            if self._connections.closing:
                self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        assert self._loop is not None and self._transport is not None
        self._last_activity = self._loop.time()
        try:
            payloads = self._parser.feed(data)
        except NetstringError as error:
            # Nothing after a framing error can be trusted to be where a request starts.
            self._client_error("malformed", error)
            return
        if payloads:
            respond = self._respond
            if len(payloads) == 1:
                self._transport.write(respond(payloads[0]))
            else:
                self._transport.write(b"".join([respond(payload) for payload in payloads]))

    def eof_received(self) -> bool:
        # The client is done sending; replies already written are flushed, then we close.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if self._recorder is not None:
            self._recorder.connections.dec()
        if self._connections is not None:
            self._connections.discard(self)
        self._transport = None

    def pause_writing(self) -> None:
        # A client that sends without reading its replies: stop reading until it catches up,
        # so its replies cannot pile up in memory.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    # --- closing ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close once the connection is quiet: no request half received, none just sent.

        A request may already sit unread in the kernel's buffer when shutdown begins; closing
        at once would drop it (and reset the connection). Waiting for a short quiet spell lets
        the loop read and answer it first. The server's shutdown timeout bounds the wait.
        """
        if self._draining or self._transport is None:
            return
        self._draining = True
        self._arm_timer(self._last_activity + SHUTDOWN_QUIET)

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _close(self) -> None:
        if self._closing or self._transport is None:
            return
        self._closing = True
        self._transport.close()

    def _client_error(self, reason: str, error: Exception | None = None) -> None:
        if self._recorder is not None:
            self._recorder.client_error(reason)
        if error is not None:
            logger.info("socketmap: closing connection: %s", error)
        self._close()

    def _arm_timer(self, when: float) -> None:
        assert self._loop is not None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._idle_handle = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_handle = None
        if self._transport is None or self._loop is None or self._closing:
            return
        # One timer per connection, pushed back when it fires early: re-arming it on every
        # request would cost more than comparing a timestamp.
        quiet_enough = SHUTDOWN_QUIET if self._draining else self._idle_timeout
        now = self._loop.time()
        deadline = self._last_activity + quiet_enough
        if now < deadline:
            self._arm_timer(deadline)
        elif self._draining:
            if self._parser.pending:
                self._arm_timer(now + SHUTDOWN_QUIET)  # a request is half received: wait
            else:
                self._close()
        else:
            if self._recorder is not None:
                self._recorder.client_error("idle")
            if self._transport.get_write_buffer_size():
                self.abort()  # a client that neither sends nor reads would keep close() waiting
            else:
                self._close()


SocketmapServer = ProtocolServer


async def start_socketmap_server(
    listen: str | ListenAddress,
    snapshot_source: SnapshotSource,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    metrics: LookupdMetrics | None = None,
) -> SocketmapServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`) and answer from the snapshot.

    `snapshot_source` is called for every request (e.g. `lambda: holder.current`), so a new
    snapshot swapped into the holder is used from the next request on.
    """
    address = parse_listen(listen) if isinstance(listen, str) else listen
    recorder = metrics.recorder(PROTOCOL, MAP_NAMES) if metrics is not None else None
    connections = ConnectionSet()

    def protocol_factory() -> SocketmapProtocol:
        return SocketmapProtocol(
            snapshot_source, idle_timeout=idle_timeout, recorder=recorder,
            connections=connections,
        )

    listener = await create_server(protocol_factory, address)
    return SocketmapServer(listener, connections)
