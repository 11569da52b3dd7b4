"""Running the daemons: `serve` (everything in one process), `lookupd` and `adminapi`.

One asyncio event loop carries every listener; SIGTERM and SIGINT stop them gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from dinomail.settings import Settings

log = logging.getLogger("dinomail")


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _check_migrated(settings: Settings) -> None:
    from dinomail import migrate
    from dinomail.cli import fail
    from dinomail.database import create_engine

    engine = create_engine(settings.DATABASE_URL)
    try:
        current = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    if current != migrate.head_revision():
        fail("the database is not migrated to this version: run `dinomail migrate`")


async def _run_adminapi(settings: Settings, store, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    from adminapi.app import create_app
    from dinomail.listen import parse_listen

    address = parse_listen(settings.HTTP_LISTEN)
    options = (
        {"uds": address.path} if address.path else {"host": address.host, "port": address.port}
    )
    config = uvicorn.Config(
        create_app(settings, store), log_level="info", lifespan="off", access_log=False,
        **options,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    log.info("admin API listening on %s", settings.HTTP_LISTEN)
    await stop.wait()
    server.should_exit = True
    await task


async def run_service(settings: Settings, command: str) -> None:
    from dinomail.secret_key import ensure_secret_key
    from dinomail.store import Store

    await _check_migrated(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if command in ("serve", "adminapi"):
        settings = ensure_secret_key(settings)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    store = Store(settings.DATABASE_URL)
    try:
        tasks = []
        if command in ("serve", "adminapi"):
            tasks.append(_run_adminapi(settings, store, stop))
        if command in ("serve", "lookupd"):
            from lookupd.daemon import run_lookupd

            tasks.append(run_lookupd(settings, store, stop))
        await asyncio.gather(*tasks)
    finally:
        await store.close()
