"""Running the daemons: `serve` (everything in one process), `lookupd` and `adminapi`.

One asyncio event loop carries every listener (uvloop when installed); SIGTERM and SIGINT stop
them gracefully: stop accepting, finish what is in flight, then exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from dinomail.settings import Settings

log = logging.getLogger("dinomail")


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


async def run_service(settings: Settings, command: str) -> None:
    from adminapi.app import create_app
    from dinomail.cli import fail
    from dinomail.dnscheck import DnsRefresher
    from dinomail.http_server import HttpServer
    from dinomail.reports.service import ReportsService
    from dinomail.secret_key import ensure_secret_key
    from dinomail.store import Store
    from lookupd.daemon import Lookupd, start_lookupd

    await _check_migrated(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with_adminapi = command in ("serve", "adminapi")
    with_lookupd = command in ("serve", "lookupd")
    if with_adminapi:
        settings = ensure_secret_key(settings)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    store = Store(settings.DATABASE_URL)
    adminapi: HttpServer | None = None
    refresher: DnsRefresher | None = None
    reports: ReportsService | None = None
    lookupd: Lookupd | None = None
    try:
        try:
            if with_lookupd:
                lookupd = await start_lookupd(settings, store)
            if with_adminapi:
                app = create_app(settings, store)
                adminapi = HttpServer(app, settings.HTTP_LISTEN)
                await adminapi.start()
                refresher = app.state.dns_refresher
                refresher.start()
                reports = app.state.reports
                await reports.start()
                log.info("admin API listening on http://%s/", settings.HTTP_LISTEN)
        except OSError as error:
            fail(f"cannot listen: {error.strerror or error}")
        await stop.wait()
        log.info("stopping")
    finally:
        if reports is not None:
            await reports.stop()
        if refresher is not None:
            await refresher.stop()
        if adminapi is not None:
            await adminapi.stop()
        if lookupd is not None:
            await lookupd.stop()
        await store.close()
