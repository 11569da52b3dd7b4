"""A socketmap server that answers `OK x` to every request: the floor of the transport.

It does what any socketmap server must do and nothing more: accept connections, split the byte
stream into netstrings, and write one reply per request, on the same event loop lookupd uses
(uvloop when installed). What lookupd spends beyond this server's cost is its own work: parsing
with limits, resolving the address, recording metrics. Malformed input is not checked for, since
the only client is `postmap` in the benchmark.

    .venv/bin/python benchmarks/constant_socketmap.py HOST PORT
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import cast

REPLY = b"4:OK x,"


class ConstantProtocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_transport")

    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        replies = 0
        # Postfix sends one request and waits for its reply, so this loop normally runs once;
        # it still frames correctly when a request arrives in pieces or several at once.
        while True:
            colon = buffer.find(b":")
            if colon < 0:
                break
            end = colon + 1 + int(buffer[:colon])  # index of the terminating comma
            if len(buffer) <= end:
                break
            replies += 1
            buffer = buffer[end + 1:]
        self._buffer = buffer
        if replies and self._transport is not None:
            self._transport.write(REPLY * replies)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ConstantProtocol, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(host, port))


if __name__ == "__main__":
    main()
