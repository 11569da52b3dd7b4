"""Serving an ASGI application with uvicorn on a listen address, inside a running event loop,
until asked to stop. Both daemons use it (admin API, lookupd HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from dinomail.listen import parse_listen


@contextlib.contextmanager
def _leave_signals_alone() -> Iterator[None]:
    yield


class StartupFailed(Exception):
    """The app's lifespan failed to start (uvicorn logged its traceback)."""


class HttpServer:
    def __init__(
        self, app: Callable[..., Awaitable[None]], listen: str, *, log_level: str = "warning",
        lifespan: bool = False,
    ) -> None:
        """`lifespan`: run the app's lifespan (its background tasks) with the server; a
        failure to start them is a failure to start the server."""
        self._listen = listen
        address = parse_listen(listen)
        # With a socket path, uvicorn binds it and leaves host and port alone.
        config = uvicorn.Config(
            app, uds=address.path, host=address.host if address.host is not None else "127.0.0.1",
            port=address.port,
            lifespan="on" if lifespan else "off", access_log=False, log_level=log_level,
        )
        self._server = uvicorn.Server(config)
        # While it serves, uvicorn would put its own handlers in place of the process's SIGTERM
        # and SIGINT handlers (`Server.capture_signals`) and stop this server alone; the daemon's
        # handlers stop every listener together, so uvicorn's stay out.
        self._server.capture_signals = _leave_signals_alone  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        try:
            await self._server.serve(sockets=sockets)
        except SystemExit:
            # uvicorn ends the process when it cannot bind or when the app's lifespan fails to
            # start; here it ends this server only, and `start` says which in one line.
            return

    @property
    def _startup_failed(self) -> bool:
        lifespan = getattr(self._server, "lifespan", None)
        return bool(getattr(lifespan, "should_exit", False))

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and serve; or serve on `sockets` the caller bound (`lookupd.listen`)."""
        self._task = asyncio.create_task(self._serve(sockets))
        while not self._server.started:
            if self._task.done():
                if self._startup_failed:
                    raise StartupFailed(
                        f"the application on {self._listen} failed to start (see the log)")
                # Binding failed: uvicorn logged why and exits; say it in one line.
                raise OSError(f"cannot listen on {self._listen}")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int | None:
        """The TCP port actually bound (useful with port 0)."""
        for server in getattr(self._server, "servers", ()):
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    return int(name[1])
        return None

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
