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

import logging
import time
from collections.abc import Callable

from dinomail.listen import ListenAddress, parse_listen
from lookupd.connection import DEFAULT_REQUEST_TIMEOUT, LookupConnection
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
_TEMP_INCOMPLETE = encode_netstring(b"TEMP not in the saved mail data, database unreachable")
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
            if not snapshot.complete:
                return "temp", _TEMP_INCOMPLETE, None
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


class SocketmapProtocol(LookupConnection):
    """One client connection: frames requests and answers each in order; the connection's
    limits, timers and shutdown are `LookupConnection`'s."""

    __slots__ = ("_parser", "_respond")

    name = PROTOCOL

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        recorder: LookupRecorder | None = None,
        connections: ConnectionSet | None = None,
    ) -> None:
        super().__init__(
            idle_timeout=idle_timeout, request_timeout=request_timeout, recorder=recorder,
            connections=connections,
        )
        self._respond = SocketmapResponder(snapshot_source, recorder)
        self._parser = NetstringParser(MAX_REQUEST_BYTES)

    def received(self, data: bytes) -> bool:
        try:
            payloads = self._parser.feed(data)
        except NetstringError as error:
            # Nothing after a framing error can be trusted to be where a request starts.
            self.client_error("malformed", error)
            return False
        if not payloads:
            return False
        transport = self._transport
        assert transport is not None
        respond = self._respond
        if len(payloads) == 1:
            transport.write(respond(payloads[0]))
        else:
            transport.write(b"".join([respond(payload) for payload in payloads]))
        return True

    def request_pending(self) -> bool:
        return self._parser.pending > 0


SocketmapServer = ProtocolServer


async def start_socketmap_server(
    listen: str | ListenAddress,
    snapshot_source: SnapshotSource,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_connections: int = 0,
    metrics: LookupdMetrics | None = None,
) -> SocketmapServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`) and answer from the snapshot.

    `snapshot_source` is called for every request (e.g. `lambda: holder.current`), so a new
    snapshot swapped into the holder is used from the next request on. No more than
    `max_connections` (0: no limit) are open at once; the others wait in the backlog.
    """
    address = parse_listen(listen) if isinstance(listen, str) else listen
    recorder = metrics.recorder(PROTOCOL, MAP_NAMES) if metrics is not None else None
    connections = ConnectionSet(max_connections)

    def protocol_factory() -> SocketmapProtocol:
        return SocketmapProtocol(
            snapshot_source, idle_timeout=idle_timeout, request_timeout=request_timeout,
            recorder=recorder, connections=connections,
        )

    listener = await create_server(protocol_factory, address, connections=connections)
    return SocketmapServer(listener, connections)
