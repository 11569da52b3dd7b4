"""A minimal socketmap client: one connection, one request, one reply, as Postfix speaks it."""

from __future__ import annotations

import asyncio
import time


async def socketmap_query(listen: str, name: str, key: str, timeout: float = 5.0) -> str:
    """The reply payload (`OK …`, `NOTFOUND `, `TEMP …`) for `name key` on `HOST:PORT`."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        payload = f"{name} {key}".encode()
        writer.write(b"%d:%s," % (len(payload), payload))
        await writer.drain()
        length = await asyncio.wait_for(reader.readuntil(b":"), timeout)
        data = await asyncio.wait_for(reader.readexactly(int(length[:-1]) + 1), timeout)
        return data[:-1].decode()
    finally:
        writer.close()


# Generous: the real figure is in benchmarks/RESULTS.md.
PROPAGATION_BOUND = 2.0


async def answer_becomes(listen: str, name: str, key: str, expected: str) -> float:
    """Seconds until the daemon answers `expected` (a change has propagated); fails past
    PROPAGATION_BOUND."""
    started = time.monotonic()
    while True:
        reply = await socketmap_query(listen, name, key)
        if reply == expected:
            return time.monotonic() - started
        assert time.monotonic() - started < PROPAGATION_BOUND, (name, key, reply, expected)
        await asyncio.sleep(0.01)
