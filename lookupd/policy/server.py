"""The Postfix policy delegation server (`check_policy_service`, POLICY_LISTEN).

Each smtpd process keeps one connection open for many requests (and many SMTP sessions), one
request at a time; a client that pipelines still gets its replies in order, because each request
is answered synchronously as it is parsed. As in `lookupd.socketmap`, three layers: framing
(`lookupd.policy.request`), deciding (`lookupd.policy.rules`, no I/O), and this protocol, which
moves bytes, enforces limits and idleness and closes bad clients.

Failures, as SMTPD_POLICY_README asks:
- malformed input (see `lookupd.policy.request`), or a request that is not
  `request=smtpd_access_policy` → that connection closes;
- nothing to answer from yet (no snapshot, limits or counts loaded), or an exception while
  deciding → the connection closes without a reply: Postfix tries again after a second, then
  applies its `default_action` (by default `451 4.3.5`, so the mail waits, never slips past).

`PolicyService` holds the server with the state it answers from: the limit tables reloaded
every few seconds and the counters flushed every second (`lookupd.counters`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from dinomail.listen import ListenAddress, parse_listen
from dinomail.store import Store
from dinomail.waiting import wait_for_event
from lookupd.counters import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_SYNC_INTERVAL,
    CounterSync,
    SendCounters,
)
from lookupd.listen import ConnectionSet, ProtocolServer, create_server
from lookupd.metrics import LookupdMetrics, LookupRecorder
from lookupd.policy.request import PolicyRequestError, PolicyRequestParser
from lookupd.policy.rules import (
    OTHER_STATE,
    STATES,
    PolicyConfig,
    PolicyDecider,
    PolicyMetrics,
)
from lookupd.policy.tables import DEFAULT_REFRESH_INTERVAL, PolicyTablesLoader
from lookupd.snapshot import Snapshot

log = logging.getLogger("dinomail.lookupd.policy")

PROTOCOL = "policy"

# Postfix closes an unused policy connection after smtpd_policy_service_max_idle (300 s). A
# server that closes first makes the next request fail once and wait a second before Postfix
# reconnects, so only connections quiet for much longer than that are closed here.
DEFAULT_IDLE_TIMEOUT = 600.0
SHUTDOWN_QUIET = 0.1
# How often abandoned transactions are forgotten.
HOUSEKEEPING_INTERVAL = 60.0

Respond = Callable[[dict[bytes, bytes]], bytes | None]


class PolicyResponder:
    """Wraps the decider: the request-type check, timing, metrics, and exceptions turned into
    "disconnect"."""

    __slots__ = ("_decide", "_recorder")

    def __init__(self, decide: Respond, recorder: LookupRecorder | None = None) -> None:
        self._decide = decide
        self._recorder = recorder

    def __call__(self, request: dict[bytes, bytes]) -> bytes | None:
        started = time.perf_counter()
        try:
            reply = self._decide(request)
        except Exception:
            log.exception("policy request failed")
            reply = None
            if self._recorder is not None:
                self._recorder.lookup_error("exception")
        if self._recorder is not None:
            state = STATES.get(request.get(b"protocol_state", b""), OTHER_STATE)
            self._recorder.lookup(state, "temp" if reply is None else "ok",
                                  time.perf_counter() - started)
        return reply


class PolicyProtocol(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "_closing", "_connections", "_draining", "_idle_handle", "_idle_timeout",
        "_last_activity", "_loop", "_parser", "_recorder", "_respond", "_transport",
    )

    def __init__(
        self,
        respond: Respond,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        recorder: LookupRecorder | None = None,
        connections: ConnectionSet | None = None,
    ) -> None:
        self._respond = respond
        self._recorder = recorder
        self._connections = connections
        self._idle_timeout = idle_timeout
        self._parser = PolicyRequestParser()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._closing = False
        self._draining = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
            requests = self._parser.feed(data)
        except PolicyRequestError as error:
            self._client_error("malformed", error)
            return
        if not requests:
            return
        replies = []
        for request in requests:
            if request.get(b"request") != b"smtpd_access_policy":
                self._transport.write(b"".join(replies))
                self._client_error("malformed", PolicyRequestError("not smtpd_access_policy"))
                return
            reply = self._respond(request)
            if reply is None:
                # Replies already computed go out; this request gets none, so Postfix retries.
                self._transport.write(b"".join(replies))
                self._close()
                return
            replies.append(reply)
        self._transport.write(replies[0] if len(replies) == 1 else b"".join(replies))

    def eof_received(self) -> bool:
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
        # A client that sends without reading its replies: stop reading until it catches up.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def shutdown(self) -> None:
        """Close once the connection is quiet (see `SocketmapProtocol.shutdown`)."""
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

    def _client_error(self, reason: str, error: Exception) -> None:
        if self._recorder is not None:
            self._recorder.client_error(reason)
        log.info("policy: closing connection: %s", error)
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
        quiet_enough = SHUTDOWN_QUIET if self._draining else self._idle_timeout
        now = self._loop.time()
        deadline = self._last_activity + quiet_enough
        if now < deadline:
            self._arm_timer(deadline)
        elif self._draining:
            if self._parser.pending:
                self._arm_timer(now + SHUTDOWN_QUIET)
            else:
                self._close()
        else:
            if self._recorder is not None:
                self._recorder.client_error("idle")
            if self._transport.get_write_buffer_size():
                self.abort()
            else:
                self._close()


PolicyServer = ProtocolServer


async def start_policy_server(
    listen: str | ListenAddress,
    respond: Respond,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    recorder: LookupRecorder | None = None,
) -> PolicyServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`); `respond` answers each
    request (None: disconnect without a reply)."""
    address = parse_listen(listen) if isinstance(listen, str) else listen
    connections = ConnectionSet()
    responder = PolicyResponder(respond, recorder)

    def protocol_factory() -> PolicyProtocol:
        return PolicyProtocol(
            responder, idle_timeout=idle_timeout, recorder=recorder, connections=connections
        )

    return PolicyServer(await create_server(protocol_factory, address), connections)


class PolicyService:
    """The policy server with the state it answers from, and the tasks keeping it current."""

    def __init__(
        self,
        server: PolicyServer,
        decider: PolicyDecider,
        tables: PolicyTablesLoader,
        counter_sync: CounterSync,
    ) -> None:
        self.server = server
        self.decider = decider
        self.tables = tables
        self.counter_sync = counter_sync
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(tables.run(self._stop)),
            asyncio.create_task(counter_sync.run(self._stop)),
            asyncio.create_task(self._housekeeping()),
        ]

    @property
    def address(self) -> ListenAddress:
        return self.server.address

    @property
    def ready(self) -> bool:
        return self.tables.current is not None and self.counter_sync.loaded

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            await wait_for_event(self._stop, HOUSEKEEPING_INTERVAL)
            self.decider.expire()

    async def stop(self) -> None:
        """Stop accepting, let connections finish, then write the last counts."""
        self.server.close()
        await self.server.wait_closed()
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self.counter_sync.loaded:
            try:
                await self.counter_sync.flush()
            except Exception as error:
                log.error("the last sending counts could not be written: %s", error)


async def start_policy_service(
    listen: str | ListenAddress,
    store: Store,
    snapshot_source: Callable[[], Snapshot | None],
    *,
    config: PolicyConfig | None = None,
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    sync_interval: float = DEFAULT_SYNC_INTERVAL,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    metrics: LookupdMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> PolicyService:
    """Listen, and start loading the limits and the counts. Until both are loaded (and the
    snapshot), requests are answered by a disconnect."""
    counters = SendCounters()
    counter_sync = CounterSync(
        store, counters, flush_interval=flush_interval, sync_interval=sync_interval,
        metrics=metrics, clock=clock,
    )
    tables = PolicyTablesLoader(store, interval=refresh_interval, metrics=metrics)
    decider = PolicyDecider(
        snapshot_source, lambda: tables.current, counters,
        ready=lambda: counter_sync.loaded, config=config,
        metrics=PolicyMetrics(metrics) if metrics is not None else None, clock=clock,
    )
    recorder = (
        metrics.recorder(PROTOCOL, (*STATES.values(), OTHER_STATE))
        if metrics is not None else None
    )
    server = await start_policy_server(
        listen, decider, idle_timeout=idle_timeout, recorder=recorder
    )
    return PolicyService(server, decider, tables, counter_sync)
