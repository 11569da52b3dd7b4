"""A client of the Dovecot dict proxy protocol over the server's unix socket, as Dovecot's dict
client speaks it: a handshake, then lines and their replies in order."""

from __future__ import annotations

import asyncio
import contextlib

from lookupd.dovecot.dict import DictServer

TIMEOUT = 5.0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: DictServer, handshake: bytes | None = None) -> Client:
        assert server.address.path is not None
        reader, writer = await asyncio.open_unix_connection(server.address.path, limit=2**24)
        client = cls(reader, writer)
        if handshake is not None:
            client.send(handshake)
        return client

    def send(self, *lines: bytes) -> None:
        self.writer.write(b"".join(line + b"\n" for line in lines))

    async def line(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        if not data.endswith(b"\n"):
            raise ConnectionError("closed by the server")
        return data[:-1]

    async def ask(self, *lines: bytes) -> list[bytes]:
        self.send(*lines)
        return [await self.line() for _ in lines]

    async def closed_by_server(self) -> bool:
        try:
            async with asyncio.timeout(TIMEOUT):
                while await self.reader.read(65536):
                    pass
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


V3_AUTH = b"H3\t2\t0\t\tauth"
