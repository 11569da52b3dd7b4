"""Serving an ASGI application with uvicorn on a listen address, inside a running event loop,
until asked to stop. Both daemons use it (admin API, lookupd HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvicorn

from dinomail.listen import parse_listen


class HttpServer:
    def __init__(
        self, app: Callable[..., Awaitable[None]], listen: str, *, log_level: str = "warning"
    ) -> None:
        self._listen = listen
        address = parse_listen(listen)
        options: dict[str, object] = (
            {"uds": address.path} if address.path else {"host": address.host, "port": address.port}
        )
        config = uvicorn.Config(
            app, lifespan="off", access_log=False, log_level=log_level,
            # Our own handlers stop the process; uvicorn must not install its own.
            **options,  # type: ignore[arg-type]
        )
        self._server = uvicorn.Server(config)
        # `install_signal_handlers` is the hook of older uvicorn versions; newer ones install
        # their handlers in `Server.capture_signals`, and their `Server` does not declare it.
        self._server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                # Binding failed: uvicorn logged why and exits; say it in one line.
                raise OSError(f"cannot listen on {self._listen}")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (useful with port 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    return int(name[1])
        return None

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
