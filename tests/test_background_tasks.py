"""The admin side's background tasks start and stop with the server, through the app's
lifespan: one that fails to start stops those started before it, and the server does not
listen."""

from __future__ import annotations

import socket

import httpx
import pytest

from adminapi.app import create_app
from dinomail.http_server import HttpServer, StartupFailed
from dinomail.store import Store
from tests.support.adminapi import HOST, api_settings


async def test_tasks_run_while_the_server_serves(store: Store) -> None:
    app = create_app(api_settings(), store)
    server = HttpServer(app, "127.0.0.1:0", lifespan=True)
    await server.start()
    try:
        assert app.state.dns_refresher._task is not None
        assert app.state.reports._cleanup is not None
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/healthz",
                                      headers={"Host": HOST})
        assert answer.status_code == 200
    finally:
        await server.stop()
    assert app.state.dns_refresher._task is None and app.state.reports._cleanup is None


async def test_a_task_that_cannot_start_undoes_the_start(store: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        settings = api_settings(REPORTS_LMTP_LISTEN=f"127.0.0.1:{busy}")
        app = create_app(settings, store)
        server = HttpServer(app, "127.0.0.1:0", lifespan=True)
        with pytest.raises(StartupFailed):
            await server.start()
    # The DNS checks, started before the report intake failed to listen, were stopped.
    assert app.state.dns_refresher._task is None
    assert server.port is None
