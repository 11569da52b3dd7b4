"""Postfix socketmap server: maps `domains`, `mailboxes`, `aliases`, `senders`, and, in the
daemon, `recipient_access` (`lookupd.recipient_access`).

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
from collections.abc import Callable
from time import perf_counter
from typing import Unpack

from dinomail.listen import ListenAddress
from lookupd.answer import Answers, ByteReplies, Failure
from lookupd.connection import (
    DEFAULT_REQUEST_TIMEOUT,
    ConnectionOptions,
    FramedConnection,
    start_server,
)
from lookupd.listen import ProtocolServer
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
# A value, None (not found), or a temporary failure (nothing loaded yet to answer from).
Lookup = Callable[[Snapshot, str], str | Failure | None]

# Answers that are bugs or limits of a rule, not situations: counted under their own label.
EMPTY_VALUE = Failure("internal error (empty result)", "empty_value")
REPLY_TOO_LARGE = Failure("result larger than Postfix accepts", "reply_too_large")


def _rendered(snapshot: Snapshot, request: tuple[Lookup, str]) -> bytes | Failure | None:
    """The map's answer as its `OK <value>` netstring, rendered inside the lookup so that a
    value that cannot be sent is answered and counted as the temporary failure it is."""
    lookup, key = request
    value = lookup(snapshot, key)
    if value is None or isinstance(value, Failure):
        return value
    if not value or value.isspace():
        # Postfix treats `OK ` as a configuration error; a rule that yields it is a bug.
        logger.error("socketmap lookup returned an empty value for %r", key)
        return EMPTY_VALUE
    data = value.encode("utf-8")
    if len(data) > MAX_VALUE_BYTES:
        logger.warning("socketmap reply for %r is %d bytes, above Postfix's limit", key,
                       len(data) + 3)
        return REPLY_TOO_LARGE
    return b"%d:OK %s," % (len(data) + 3, data)


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
# Postfix's check_recipient_access for inbound mail; it needs the full mailboxes, which the
# daemon loads (`start_socketmap_server(recipient_access=...)`).
RECIPIENT_ACCESS = "recipient_access"

# A request is `<map> <key>`: Postfix's own key limit plus the longest map name and its space,
# so that no key Postfix is willing to send gets its connection closed.
MAX_REQUEST_BYTES = MAX_QUERY_BYTES + max(len(name) for name in MAPS) + 1
# `OK ` and the value.
MAX_VALUE_BYTES = MAX_REPLY_BYTES - 3


def _unknown_map_reply(maps: dict[bytes, tuple[str, Lookup]]) -> bytes:
    return encode_netstring(b"PERM unknown map name; known: " + b", ".join(maps))


_PERM_UNKNOWN_MAP = _unknown_map_reply(MAPS)


_REPLIES = ByteReplies(encode_netstring(b"NOTFOUND "),
                       lambda reason: encode_netstring(b"TEMP " + reason))


class SocketmapResponder:
    """One request payload in, one reply netstring out; never raises."""

    __slots__ = ("_answer", "_answers", "_maps", "_unknown_map")

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        recorder: LookupRecorder | None = None,
        maps: dict[bytes, tuple[str, Lookup]] = MAPS,
    ) -> None:
        self._answers = Answers(PROTOCOL, snapshot_source, recorder)
        self._answer = self._answers.answer
        self._maps = maps
        self._unknown_map = _PERM_UNKNOWN_MAP if maps is MAPS else _unknown_map_reply(maps)

    def __call__(self, payload: bytes) -> bytes:
        name, _, raw_key = payload.partition(b" ")
        entry = self._maps.get(name)
        if entry is None:
            self._answers.record(UNKNOWN_MAP, "perm", perf_counter())
            return self._unknown_map
        key = decode_key(raw_key)
        return _REPLIES(
            self._answer(entry[0], _rendered, None if key is None else (entry[1], key))
        )


class SocketmapProtocol(FramedConnection[bytes]):
    """One client connection: netstrings answered in order; the connection's limits, timers
    and shutdown are `LookupConnection`'s."""

    __slots__ = ("_respond",)

    name = PROTOCOL
    default_idle_timeout = DEFAULT_IDLE_TIMEOUT
    framing_error = NetstringError

    def __init__(
        self,
        snapshot_source: SnapshotSource,
        maps: dict[bytes, tuple[str, Lookup]] = MAPS,
        **options: Unpack[ConnectionOptions],
    ) -> None:
        super().__init__(NetstringParser(MAX_REQUEST_BYTES), **options)
        self._respond = SocketmapResponder(snapshot_source, options.get("recorder"), maps)

    def answer_one(self, request: bytes, transport: asyncio.Transport) -> None:
        transport.write(self._respond(request))

    def answer(self, requests: list[bytes], transport: asyncio.Transport) -> None:
        respond = self._respond
        transport.write(b"".join([respond(payload) for payload in requests]))


SocketmapServer = ProtocolServer


async def start_socketmap_server(
    listen: str | ListenAddress,
    snapshot_source: SnapshotSource,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_connections: int = 0,
    metrics: LookupdMetrics | None = None,
    recipient_access: Lookup | None = None,
) -> SocketmapServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`) and answer from the snapshot.

    `snapshot_source` is called for every request (e.g. `lambda: holder.current`), so a new
    snapshot swapped into the holder is used from the next request on. No more than
    `max_connections` (0: no limit) are open at once; the others wait in the backlog. With
    `recipient_access`, the map of that name is served too.
    """
    maps = MAPS
    if recipient_access is not None:
        maps = {**MAPS, RECIPIENT_ACCESS.encode(): (RECIPIENT_ACCESS, recipient_access)}
    names = tuple(name for name, _ in maps.values())
    recorder = metrics.recorder(PROTOCOL, names) if metrics is not None else None
    return await start_server(listen, lambda connections: SocketmapProtocol(
        snapshot_source, maps, idle_timeout=idle_timeout, request_timeout=request_timeout,
        recorder=recorder, connections=connections,
    ), max_connections)
