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
from typing import Unpack

from dinomail.listen import ListenAddress
from dinomail.store import Store
from dinomail.waiting import wait_for_event
from lookupd.answer import Answers, Failure
from lookupd.connection import (
    DEFAULT_REQUEST_TIMEOUT,
    ConnectionOptions,
    FramedConnection,
    start_server,
)
from lookupd.counters import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_SYNC_INTERVAL,
    CounterSync,
    SendCounters,
)
from lookupd.listen import ProtocolServer
from lookupd.metrics import LookupdMetrics, LookupRecorder
from lookupd.policy.request import PolicyRequest, PolicyRequestError, PolicyRequestParser
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
# How often abandoned transactions are forgotten.
HOUSEKEEPING_INTERVAL = 60.0

Respond = Callable[[dict[bytes, bytes]], bytes | None]


# What a responder that is not a `PolicyDecider` means by None.
NO_REPLY = Failure("no reply")
_EMPTY = Snapshot()


class PolicyResponder:
    """Answers each request through `lookupd.answer` (timing, metrics, no snapshot or an
    exception turned into a temporary failure); a temporary failure is "disconnect" (None)."""

    __slots__ = ("_answer", "_decide")

    def __init__(self, respond: Respond, recorder: LookupRecorder | None = None) -> None:
        self._decide: Callable[[Snapshot, dict[bytes, bytes]], bytes | Failure]
        if isinstance(respond, PolicyDecider):
            snapshot_source = respond.snapshot_source
            self._decide = respond.decide
        else:
            # Any other responder answers from nothing of ours.
            snapshot_source = _empty_snapshot
            self._decide = lambda snapshot, request: respond(request) or NO_REPLY
        self._answer = Answers(PROTOCOL, snapshot_source, recorder).answer

    def __call__(self, request: dict[bytes, bytes]) -> bytes | None:
        state = STATES.get(request.get(b"protocol_state", b""), OTHER_STATE)
        outcome = self._answer(state, self._decide, request)
        return outcome if type(outcome) is bytes else None


def _empty_snapshot() -> Snapshot:
    return _EMPTY


class PolicyProtocol(FramedConnection[PolicyRequest]):
    """One client connection: requests answered in order; the connection's limits, timers
    and shutdown are `LookupConnection`'s."""

    __slots__ = ("_respond",)

    name = PROTOCOL
    default_idle_timeout = DEFAULT_IDLE_TIMEOUT
    framing_error = PolicyRequestError

    def __init__(self, respond: Respond, **options: Unpack[ConnectionOptions]) -> None:
        super().__init__(PolicyRequestParser(), **options)
        self._respond = respond

    def answer(self, requests: list[PolicyRequest], transport: asyncio.Transport) -> None:
        replies: list[bytes] = []
        for request in requests:
            if request.get(b"request") != b"smtpd_access_policy":
                transport.write(b"".join(replies))
                self.client_error("malformed", PolicyRequestError("not smtpd_access_policy"))
                return
            reply = self._respond(request)
            if reply is None:
                # Replies already computed go out; this request gets none, so Postfix retries.
                transport.write(b"".join(replies))
                self.close()
                return
            replies.append(reply)
        transport.write(replies[0] if len(replies) == 1 else b"".join(replies))


PolicyServer = ProtocolServer


async def start_policy_server(
    listen: str | ListenAddress,
    respond: Respond,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_connections: int = 0,
    recorder: LookupRecorder | None = None,
) -> PolicyServer:
    """Listen on `listen` (`HOST:PORT`, `[v6]:PORT`, `unix:/path`); `respond` answers each
    request (None: disconnect without a reply)."""
    responder = PolicyResponder(respond, recorder)
    return await start_server(listen, lambda connections: PolicyProtocol(
        responder, idle_timeout=idle_timeout, request_timeout=request_timeout,
        recorder=recorder, connections=connections,
    ), max_connections)


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
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_connections: int = 0,
    metrics: LookupdMetrics | None = None,
    clock: Callable[[], float] = time.time,
    tables: PolicyTablesLoader | None = None,
) -> PolicyService:
    """Listen, and start loading the limits and the counts. Until both are loaded (and the
    snapshot), requests are answered by a disconnect. `tables`: a loader shared with another
    reader of the full mailboxes (the `recipient_access` socketmap), which the service keeps
    loading; by default one of its own."""
    counters = SendCounters()
    counter_sync = CounterSync(
        store, counters, flush_interval=flush_interval, sync_interval=sync_interval,
        metrics=metrics, clock=clock,
    )
    if tables is None:
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
        listen, decider, idle_timeout=idle_timeout, request_timeout=request_timeout,
        max_connections=max_connections, recorder=recorder,
    )
    return PolicyService(server, decider, tables, counter_sync)
