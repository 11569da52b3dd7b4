"""A minimal socketmap client: one connection, one request, one reply, as Postfix speaks it."""

from __future__ import annotations

import asyncio


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
