"""A Postfix-like client of the policy service, the replies it reads, and the lookup daemon
settings that make the service flush and sync its counts quickly."""

from __future__ import annotations

import asyncio
import contextlib

from dinomail.listen import ListenAddress
from lookupd.policy.rules import DUNNO
from tests.support.policy_requests import postfix_request

TIMEOUT = 5.0
FAST = {
    "POLICY_FLUSH_INTERVAL": "0.05",
    "POLICY_SYNC_INTERVAL": "0.1",
    "POLICY_REFRESH_INTERVAL": "0.1",
}
DEFER = b"action=DEFER_IF_PERMIT 4.7.1 Sending rate limit exceeded, try again later\n\n"


class PolicyClient:
    """A Postfix-like client: one connection, requests and replies in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: ListenAddress | str) -> PolicyClient:
        if isinstance(address, str):
            host, _, port = address.rpartition(":")
            address = ListenAddress(host=host, port=int(port))
        if address.path is not None:
            reader, writer = await asyncio.open_unix_connection(address.path)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer)

    async def ask(self, *requests: bytes) -> list[bytes]:
        self.writer.write(b"".join(requests))
        await self.writer.drain()
        async with asyncio.timeout(TIMEOUT):
            return [await self.reader.readuntil(b"\n\n") for _ in requests]

    async def message(self, sender: str, instance: str, recipients: int = 1) -> list[bytes]:
        """RCPT for each recipient, then END-OF-MESSAGE if any was accepted."""
        replies = []
        for n in range(recipients):
            [reply] = await self.ask(postfix_request(
                sasl_username=sender, instance=instance, recipient=f"r{n}@far.example"
            ))
            replies.append(reply)
        accepted = replies.count(DUNNO)
        if accepted:
            replies += await self.ask(postfix_request(
                protocol_state="END-OF-MESSAGE", sasl_username=sender, instance=instance,
                recipient="", recipient_count=str(accepted),
            ))
        return replies

    async def closed_by_server(self) -> bool:
        """The server closed the connection (EOF or reset) without sending anything more."""
        try:
            async with asyncio.timeout(TIMEOUT):
                return await self.reader.read(65536) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
