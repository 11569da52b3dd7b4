"""The admin API served by uvicorn on a loopback port, in the test's event loop.

Clients talk to it over real HTTP: httpx's async client directly, blocking clients (`slumber`,
`requests`) from a worker thread (`asyncio.to_thread`) while the loop serves. uvicorn's access
log is on and propagates to the root logger, so a test can capture what the process logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from adminapi.app import create_app
from dinomail.store import Store
from tests.support.adminapi import api_settings

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def live_adminapi(store: Store, **settings: Any) -> AsyncIterator[str]:
    """Serve the API over `store`; yields its base URL, `http://127.0.0.1:<port>`."""
    app = create_app(api_settings(ALLOWED_HOSTS=(LOOPBACK,), **settings), store)
    config = uvicorn.Config(
        app, host=LOOPBACK, port=0, lifespan="off", access_log=True, log_level="info",
        # No logging configuration of uvicorn's own: its records reach the root logger.
        log_config=None,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the admin API did not start")
            await asyncio.sleep(0.01)
        # Port 0: the system picked a free port, read back from the listening socket.
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        await serving
