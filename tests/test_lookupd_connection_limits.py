"""The connection base every lookup listener shares (`lookupd.connection`, `lookupd.listen`),
on each protocol's real server over real sockets: a request that trickles in is cut off after
the request time limit whatever the protocol, a connection limit leaves new clients waiting
without disturbing the open ones, and waiting clients are served once one leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dinomail.listen import ListenAddress
from lookupd.dovecot.dict import start_dict_server
from lookupd.listen import ProtocolServer
from lookupd.metrics import LookupdMetrics
from lookupd.policy.server import start_policy_server
from lookupd.socketmap import start_socketmap_server

Start = Callable[[Path, float, int, LookupdMetrics], Awaitable[ProtocolServer]]

# A request of each protocol and the beginning of its answer; nothing loaded: temporary failure.
REQUESTS = {
    "socketmap": (b"23:mailboxes a@example.org,", b"29:TEMP "),
    "dovecot_dict": (b"H2\t1\t0\t\tauth\nLshared/passdb/a@example.org\n", b"F"),
    "policy": (b"request=smtpd_access_policy\nprotocol_state=RCPT\n\n", b"action="),
}


async def _socketmap(root: Path, timeout: float, limit: int,
                     metrics: LookupdMetrics) -> ProtocolServer:
    return await start_socketmap_server("127.0.0.1:0", lambda: None, request_timeout=timeout,
                                        max_connections=limit, metrics=metrics)


async def _dict(root: Path, timeout: float, limit: int, metrics: LookupdMetrics) -> ProtocolServer:
    return await start_dict_server(f"unix:{root / 'dict.sock'}", lambda: None,
                                   request_timeout=timeout, max_connections=limit,
                                   metrics=metrics)


async def _policy(root: Path, timeout: float, limit: int,
                  metrics: LookupdMetrics) -> ProtocolServer:
    recorder = metrics.recorder("policy", ("rcpt",))
    return await start_policy_server("127.0.0.1:0", lambda request: b"action=DUNNO\n\n",
                                     request_timeout=timeout, max_connections=limit,
                                     recorder=recorder)


SERVERS: dict[str, Start] = {"socketmap": _socketmap, "dovecot_dict": _dict, "policy": _policy}


async def connect(address: ListenAddress) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.path is not None:
        return await asyncio.open_unix_connection(address.path)
    return await asyncio.open_connection(address.host, address.port)


@pytest.mark.parametrize("protocol", sorted(SERVERS))
async def test_a_request_trickling_in_is_cut_off_after_the_time_limit(
    protocol: str, tmp_path: Path
) -> None:
    metrics = LookupdMetrics()
    server = await SERVERS[protocol](tmp_path, 1.0, 0, metrics)
    request, _ = REQUESTS[protocol]
    try:
        reader, writer = await connect(server.address)
        started = time.monotonic()
        closed_after = None
        for byte in request[:-1]:  # never whole
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(100), 0.25) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
        writer.close()
        assert closed_after is not None and 0.9 <= closed_after <= 2.5, closed_after
        assert metrics.registry.get_sample_value(
            "dinomail_lookupd_client_errors_total",
            {"protocol": protocol, "reason": "request_timeout"},
        ) == 1
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)


@pytest.mark.parametrize("protocol", sorted(SERVERS))
async def test_at_the_limit_new_clients_wait_and_are_served_once_one_leaves(
    protocol: str, tmp_path: Path
) -> None:
    server = await SERVERS[protocol](tmp_path, 10.0, 2, LookupdMetrics())
    request, answer = REQUESTS[protocol]
    try:
        first = [await connect(server.address) for _ in range(2)]
        for reader, writer in first:
            writer.write(request)
            assert (await asyncio.wait_for(reader.read(100), 5)).startswith(answer)
        reader3, writer3 = await connect(server.address)  # accepted by the kernel only
        writer3.write(request)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader3.read(100), 0.5)
        again = request.split(b"\n", 1)[-1] if protocol == "dovecot_dict" else request
        for reader, writer in first:  # the open ones are served as before
            writer.write(again)
            assert (await asyncio.wait_for(reader.read(100), 5)).startswith(answer)
        first[0][1].close()
        assert (await asyncio.wait_for(reader3.read(100), 5)).startswith(answer)
        writer3.close()
        first[1][1].close()
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)
