"""What every lookupd connection does the same way, whatever its protocol: open and close,
pause reading while replies are not read, the idle and request timers, and the graceful stop.

A protocol (socketmap, Dovecot dict, policy) subclasses `LookupConnection` and writes only its
framing and answers, in three hooks:
- `received(data)`: frame the bytes and write the replies (True if a request was whole);
- `request_pending()`: whether a request is half received (or queued): shutdown waits for it,
  and the request timer runs while it is true;
- `busy()`: whether the connection is sending on its own (a dict iteration): not idle.
A protocol whose requests a parser frames (socketmap's netstrings, policy's attribute blocks)
subclasses `FramedConnection` instead, which implements the first two with its `Parser`, and
writes only `answer(requests, transport)`. What to answer from the snapshot, and how a miss or
a failure is decided, is `lookupd.answer`'s.

Two timers, one timer handle. The idle timer closes a connection nobody used for
`idle_timeout` seconds. The request timer closes a connection whose request has been arriving
for more than `request_timeout` seconds: a client sending one byte a second would otherwise keep
the idle timer from ever firing and hold its connection (and its descriptor) for hours. The
handle is armed for the earlier deadline and pushed back when it fires early: re-arming it on
every request would cost more than comparing two timestamps.

The limit on the number of connections is the listener's (`lookupd.listen`): past it, new
connections wait in the kernel's backlog without disturbing the open ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypedDict, TypeVar, Unpack, cast

from dinomail.listen import ListenAddress, parse_listen
from lookupd.listen import ConnectionSet, ProtocolServer, create_server
from lookupd.metrics import LookupRecorder

log = logging.getLogger("dinomail.lookupd.connection")

# During shutdown, a connection quiet for this long has no request on its way and is closed.
SHUTDOWN_QUIET = 0.1

# Postfix and Dovecot write a whole request at once; one that takes longer than this to arrive
# comes from a client that is broken or hostile.
DEFAULT_REQUEST_TIMEOUT = 10.0


class ConnectionOptions(TypedDict, total=False):
    """What every protocol's connection takes besides what it answers from."""

    idle_timeout: float
    request_timeout: float
    recorder: LookupRecorder | None
    connections: ConnectionSet | None


class LookupConnection(asyncio.Protocol):
    """One client connection of a lookupd listener; see the module's docstring for the hooks."""

    __slots__ = (
        "_closing",
        "_connections",
        "_draining",
        "_idle_timeout",
        "_last_activity",
        "_loop",
        "_recorder",
        "_request_started",
        "_request_timeout",
        "_timer",
        "_transport",
    )

    # The protocol's name in the log ("socketmap", "dict", "policy").
    name = "lookupd"
    # How long a connection may stay unused, unless told otherwise.
    default_idle_timeout = 60.0

    def __init__(
        self,
        *,
        idle_timeout: float | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        recorder: LookupRecorder | None = None,
        connections: ConnectionSet | None = None,
    ) -> None:
        self._idle_timeout = self.default_idle_timeout if idle_timeout is None else idle_timeout
        self._request_timeout = request_timeout
        self._recorder = recorder
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._request_started = 0.0  # 0: no request half received
        self._closing = False  # the transport is closing: nothing more is read
        self._draining = False  # the server is shutting down: close once quiet

    # --- hooks -----------------------------------------------------------------------------------

    def received(self, data: bytes) -> bool:
        """Frame `data` and answer every whole request in it; True if there was one."""
        raise NotImplementedError

    def request_pending(self) -> bool:
        """Whether a request has begun to arrive and is not answered yet."""
        return False

    def busy(self) -> bool:
        """Whether the connection is still sending an answer on its own (not idle)."""
        return False

    def closed(self) -> None:
        """The connection is gone: release what the protocol holds."""

    # --- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = loop = asyncio.get_running_loop()
        self._last_activity = loop.time()
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
        assert self._loop is not None
        now = self._last_activity = self._loop.time()
        answered = self.received(data)
        if self.request_pending():
            # The request timer runs from the first byte of the request still incomplete.
            if (answered or not self._request_started) and not self._closing:
                self._request_started = now
                deadline = now + self._request_timeout
                timer = self._timer
                if timer is None or timer.when() > deadline:
                    self._arm_timer(deadline)
        else:
            self._request_started = 0.0

    def eof_received(self) -> bool:
        # The client is done sending; replies already written are flushed, then we close.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closing = True
        self.closed()
        if self._recorder is not None:
            self._recorder.connections.dec()
        if self._connections is not None:
            self._connections.discard(self)
        self._transport = None

    def pause_writing(self) -> None:
        # A client that sends without reading its replies: stop reading until it catches up,
        # so that its replies cannot pile up in memory.
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
        """Close now, dropping unsent data."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close once the replies already written are sent."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.closed()
        self._transport.close()

    def client_error(self, reason: str, message: object = None) -> None:
        """The client broke the protocol or a limit: count it, say why, close its connection."""
        if self._recorder is not None:
            self._recorder.client_error(reason)
        if message is not None:
            log.info("%s: closing connection: %s", self.name, message)
        self.close()

    # --- timers ----------------------------------------------------------------------------------

    def active_now(self) -> None:
        """Restart the idle and request timers (the connection was busy on our side)."""
        if self._loop is not None:
            now = self._last_activity = self._loop.time()
            self._request_started = now if self.request_pending() else 0.0

    def _arm_timer(self, when: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check_timers)

    def _check_timers(self) -> None:
        self._timer = None
        if self._transport is None or self._loop is None or self._closing:
            return
        now = self._loop.time()
        if self._draining:
            deadline = self._last_activity + SHUTDOWN_QUIET
            if now < deadline:
                self._arm_timer(deadline)
            elif self.request_pending() or self.busy():
                self._arm_timer(now + SHUTDOWN_QUIET)  # a request is on its way: wait
            else:
                self.close()
            return
        started = self._request_started
        busy = self.busy()
        if busy:
            started = 0.0  # the rest of its request waits for us, not for the client
        elif started and now >= started + self._request_timeout and self.request_pending():
            self._time_out(
                "request_timeout", f"a request still incomplete after {self._request_timeout:g} s"
            )
            return
        deadline = self._last_activity + self._idle_timeout
        if started:
            deadline = min(deadline, started + self._request_timeout)
        if now < deadline:
            self._arm_timer(deadline)
        elif busy:
            self._arm_timer(now + self._idle_timeout)  # sending, not idle
        else:
            self._time_out("idle", None)

    def _time_out(self, reason: str, message: str | None) -> None:
        if self._recorder is not None:
            self._recorder.client_error(reason)
        if message is not None:
            log.info("%s: closing connection: %s", self.name, message)
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size():
            self.abort()  # a client that neither sends nor reads would keep close() waiting
        else:
            self.close()


Request = TypeVar("Request")


class Parser(Protocol[Request]):
    """Frames a byte stream into requests (`lookupd.netstring`, `lookupd.policy.request`)."""

    @property
    def pending(self) -> int | bool:
        """Whether a request has begun to arrive and is not whole yet."""

    def whole(self, data: bytes) -> Request | None:
        """The request `data` is, when nothing is pending and `data` is one whole request;
        else None (`feed` takes it). Raises on input that breaks the framing."""

    def feed(self, data: bytes) -> list[Request]:
        """The requests `data` completes, in order; raises on input that breaks the framing."""


class FramedConnection(LookupConnection, Generic[Request]):
    """A connection whose requests a `Parser` frames and `answer` answers, in order; input
    that breaks the framing (`framing_error`) closes the connection, counted as malformed."""

    __slots__ = ("_parser",)

    framing_error: type[Exception] = ValueError

    def __init__(self, parser: Parser[Request], **options: Unpack[ConnectionOptions]) -> None:
        super().__init__(**options)
        self._parser = parser

    def answer(self, requests: list[Request], transport: asyncio.Transport) -> None:
        """Write the replies to `requests` (at least one), in order."""
        raise NotImplementedError

    def answer_one(self, request: Request, transport: asyncio.Transport) -> None:
        """Write the reply to `request`, the only one received."""
        self.answer([request], transport)

    def data_received(self, data: bytes) -> None:
        # The common case (Postfix and Dovecot wait for each reply): `data` is one whole
        # request and nothing is half received, so no timer can change but the idle one.
        if not self._closing:
            try:
                request = self._parser.whole(data)
            except self.framing_error as error:
                self.client_error("malformed", error)
                return
            if request is not None:
                assert self._loop is not None and self._transport is not None
                self._last_activity = self._loop.time()
                self._request_started = 0.0
                self.answer_one(request, self._transport)
                return
        super().data_received(data)

    def received(self, data: bytes) -> bool:
        try:
            requests = self._parser.feed(data)
        except self.framing_error as error:
            # Nothing after a framing error can be trusted to be where a request starts.
            self.client_error("malformed", error)
            return False
        if not requests:
            return False
        assert self._transport is not None
        self.answer(requests, self._transport)
        return True

    def request_pending(self) -> bool:
        return bool(self._parser.pending)


async def start_server(
    listen: str | ListenAddress,
    connection: Callable[[ConnectionSet], LookupConnection],
    max_connections: int = 0,
) -> ProtocolServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`); each client is served by
    `connection(connections)`. No more than `max_connections` (0: no limit) are open at once;
    the others wait in the backlog."""
    address = parse_listen(listen) if isinstance(listen, str) else listen
    connections = ConnectionSet(max_connections)
    listener = await create_server(
        lambda: connection(connections), address, connections=connections
    )
    return ProtocolServer(listener, connections)
