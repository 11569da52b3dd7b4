"""Running the daemons: `serve` (everything in one process), `lookupd` and `adminapi`.

One asyncio event loop carries every listener (uvloop when installed); SIGTERM and SIGINT stop
them gracefully: stop accepting, finish what is in flight, then exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from dinomail.commands import fail
from dinomail.settings import Settings

if TYPE_CHECKING:
    from lookupd.daemon import Lookupd

log = logging.getLogger("dinomail")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# How long the start waits for the database before listening anyway.
DATABASE_CHECK_TIMEOUT = 5.0


async def _check_migrated(settings: Settings) -> None:
    """Refuse to start on a database that answers but is not migrated to this version.

    A database that does not answer is no reason to stay down: the daemons listen anyway,
    answer temporary failures (or lookupd's last snapshot on disk) and load as soon as it is
    back. Refusing would make Postfix and Dovecot find nobody listening, and leave the service
    to systemd's restart limits.
    """
    from dinomail import migrate
    from dinomail.database import create_engine
    from dinomail.store.errors import as_unavailable

    engine = create_engine(settings.DATABASE_URL)
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT):
            current = await migrate.current_revision(engine)
    except Exception as error:
        unavailable = as_unavailable(error)
        if unavailable is None:
            raise
        message = (
            f"the database did not answer within {DATABASE_CHECK_TIMEOUT:g} s"
            if isinstance(error, TimeoutError) else unavailable.message
        )
        log.warning("%s; listening anyway, with temporary failures until it answers", message)
        return
    finally:
        await engine.dispose()
    if current != migrate.head_revision():
        fail("the database is not migrated to this version: run `dinomail migrate`")


async def run_service(settings: Settings, command: str) -> None:
    from dinomail.http_server import HttpServer, StartupFailed
    from dinomail.sdnotify import keep_watchdog_fed, notify
    from dinomail.secret_key import ensure_secret_key
    from dinomail.store import Store
    from lookupd.supervisor import Workers, WorkerStartError, start_workers

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    await _check_migrated(settings)
    with_adminapi = command in ("serve", "adminapi")
    with_lookupd = command in ("serve", "lookupd")
    if with_adminapi:
        settings = ensure_secret_key(settings)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    # Everything started is stopped in reverse order, whether the start went through or failed
    # half way (a listener that cannot bind stops those already listening).
    async with contextlib.AsyncExitStack() as started:
        store = Store(settings.DATABASE_URL)
        started.push_async_callback(store.close)
        try:
            if with_lookupd:
                lookupd: Lookupd | Workers
                if command == "lookupd" and settings.LOOKUPD_WORKERS > 1:
                    lookupd = await start_workers(settings)  # `serve` keeps one process
                else:
                    from lookupd.daemon import start_lookupd  # not in the supervisor of workers

                    lookupd = await start_lookupd(settings, store)
                started.push_async_callback(lookupd.stop)
            if with_adminapi:
                # Imported here: a lookup daemon alone does without the pages' memory.
                from adminapi.app import create_app

                # The app's lifespan starts its background tasks (DNS checks, reports).
                adminapi = HttpServer(create_app(settings, store), settings.HTTP_LISTEN,
                                      lifespan=True)
                await adminapi.start()
                started.push_async_callback(adminapi.stop)
                log.info("admin API listening on http://%s/", settings.HTTP_LISTEN)
        except OSError as error:
            fail(f"cannot listen: {error.strerror or error}")
        except (StartupFailed, WorkerStartError) as error:
            fail(str(error))
        # Listening: Postfix and Dovecot may start (their units are ordered after this one).
        notify("READY=1")
        watchdog = asyncio.create_task(keep_watchdog_fed(stop))
        started.push_async_callback(_stop_watchdog, stop, watchdog)
        await stop.wait()
        notify("STOPPING=1")
        log.info("stopping")


async def _stop_watchdog(stop: asyncio.Event, watchdog: asyncio.Task[None]) -> None:
    stop.set()
    await watchdog
