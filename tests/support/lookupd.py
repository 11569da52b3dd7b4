"""Starting the real lookup daemon in the test's event loop, on free loopback ports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from dinomail.settings import Settings, load_settings
from dinomail.store import Store
from lookupd.daemon import Lookupd, start_lookupd
from tests.support.ports import free_port


def lookupd_settings(store: Store, tmp_path: Path, **overrides: str) -> Settings:
    environ = {
        "DINOMAIL_DATABASE_URL": store.url,
        "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{tmp_path / 'dict.sock'}",
        "DINOMAIL_SQLITE_POLL_INTERVAL": "0.05",
    }
    environ.update({f"DINOMAIL_{key}": value for key, value in overrides.items()})
    return load_settings(environ=environ)


async def wait_until(condition, timeout: float = 10.0, what: str = "condition") -> float:  # type: ignore[no-untyped-def]
    """Poll `condition()` until true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> float:
    """Await `check()` again and again until it is true (for a condition that takes a request,
    such as a login refused once a change reached the snapshot); return the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@asynccontextmanager
async def running_lookupd(
    store: Store, tmp_path: Path, *, wait_loaded: bool = True, **overrides: str
) -> AsyncIterator[tuple[Lookupd, Settings]]:
    settings = lookupd_settings(store, tmp_path, **overrides)
    daemon = await start_lookupd(settings, store)
    try:
        if wait_loaded:
            await wait_until(lambda: daemon.holder.current is not None, what="the first snapshot")
        yield daemon, settings
    finally:
        await daemon.stop()
