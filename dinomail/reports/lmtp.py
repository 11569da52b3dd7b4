"""The LMTP listener (RFC 2033) Postfix delivers the report address's mail to, on aiosmtpd.

After DATA, LMTP answers once per accepted recipient. The answer is 250 when the message was
stored, was already stored, or was set aside (malformed, a bomb, a foreign domain): junk must
not sit in Postfix's queue being retried. It is 451 only when the database could not be
reached, so Postfix keeps the report and tries again. A message over `MAX_MESSAGE_SIZE` is
refused with aiosmtpd's 552 (a permanent failure: Postfix bounces it to the reporter).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from aiosmtpd.lmtp import LMTP

from dinomail.listen import parse_listen
from dinomail.reports.intake import DUPLICATE, STORED, receive
from dinomail.reports.metrics import ReportMetrics
from dinomail.store import Store

log = logging.getLogger("dinomail.reports")

# The largest report message taken: far above a real report (a few megabytes compressed).
MAX_MESSAGE_SIZE = 25 * 1024 * 1024
# Seconds a client may stay silent before the connection is closed.
IDLE_TIMEOUT = 300
# Recipients of one message: Postfix sends one per report address routed here.
MAX_RECIPIENTS = 50


class ReportHandler:
    """aiosmtpd's handler hooks: take the recipients, hand the message to the intake."""

    def __init__(self, store: Store, metrics: ReportMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        try:
            outcome = await receive(self.store, raw, sender=envelope.mail_from or "",
                                    recipients=tuple(envelope.rcpt_tos), metrics=self.metrics)
        except Exception as error:  # the database: Postfix keeps the message and retries
            log.warning("report not stored, asking to retry: %s", error)
            answer = "451 4.3.0 Report storage unavailable, try again later"
        else:
            if outcome.status == STORED:
                answer = "250 2.0.0 Report stored"
            elif outcome.status == DUPLICATE:
                answer = "250 2.0.0 Report already stored"
            else:
                # One line, printable: the reason comes from the report's own content.
                reason = "".join(char if char.isprintable() else " " for char in outcome.reason)
                answer = f"250 2.0.0 Set aside: {reason[:200]}"
        return "\r\n".join(answer for _ in envelope.rcpt_tos) or answer


class LmtpListener:
    def __init__(self, store: Store, listen: str, metrics: ReportMetrics | None = None) -> None:
        self.listen = listen
        self.handler = ReportHandler(store, metrics)
        self._server: asyncio.base_events.Server | None = None

    def _protocol(self) -> LMTP:
        return LMTP(self.handler, data_size_limit=MAX_MESSAGE_SIZE, enable_SMTPUTF8=True,
                    decode_data=False, hostname="dinomail-reports", ident="DinoMail reports",
                    timeout=IDLE_TIMEOUT)

    async def start(self) -> None:
        address = parse_listen(self.listen)
        loop = asyncio.get_running_loop()
        if address.path:
            if os.path.exists(address.path):
                os.unlink(address.path)  # left by a previous run
            self._server = await loop.create_unix_server(self._protocol, address.path)
            os.chmod(address.path, 0o666)  # Postfix's lmtp client runs as another user
        else:
            self._server = await loop.create_server(self._protocol, address.host, address.port)

    @property
    def port(self) -> int | None:
        if self._server is None:
            return None
        for sock in self._server.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                return int(name[1])
        return None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
