"""Driving the admin pages in a real browser: the application served by uvicorn on a loopback
port, and headless Chromium through Playwright.

The browser is Debian's Chromium (`/usr/bin/chromium`), never one Playwright downloads. Each
launch gets a fresh temporary profile from Playwright. Playwright's sync API owns the test's
thread, so the application runs its event loop in a thread of its own; database work a test
needs (filling, checking) runs on that loop through `ServedApp.run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from adminapi.app import create_app
from dinomail import migrate
from dinomail.http_server import HttpServer
from dinomail.settings import Settings
from dinomail.store import Store, admins
from tests.support.adminapi import FAST_ARGON2

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Starting the app (migrating SQLite, filling it) takes well under this.
START_TIMEOUT = 30.0
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} is not installed")

T = TypeVar("T")


class ServedApp:
    """The admin application on `http://127.0.0.1:<port>`, over a SQLite database."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        # Known once the server listens (it binds port 0: the system picks a free one).
        self.port = 0
        self.base_url = ""
        self.database_url = database_url
        self.settings = settings
        self.store: Store | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="served-app", daemon=True)

    def start(self, prepare: Callable[[Store], Awaitable[None]]) -> None:
        self._prepare = prepare
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("the admin application did not start")
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:
            self._failure = error
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        store = self.store = Store(self.database_url)
        try:
            await migrate.upgrade(store.engine)
            await self._prepare(store)
            server = HttpServer(create_app(self.settings, store), "127.0.0.1:0")
            await server.start()
            assert server.port is not None
            self.port = server.port
            self.base_url = f"http://127.0.0.1:{self.port}"
            self._started.set()
            await self._stop.wait()
            await server.stop()
        finally:
            await store.close()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` (which may use `self.store`) on the application's event loop."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(START_TIMEOUT)

    def stop(self) -> None:
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)


def owner_pages_app(root: Path, prepare: Callable[[Store], Awaitable[None]],
                    stops: list[Callable[[], None]]) -> ServedApp:
    """The application on 127.0.0.1 over a new SQLite database in `root`, migrated and filled
    by `prepare` (so that daemons started next read it); its stop appended to `stops`."""
    app = ServedApp(f"sqlite:///{root / 'dinomail.sqlite3'}",
                    Settings(ALLOWED_HOSTS=("127.0.0.1",),
                             SECRET_KEY="test-secret-key-of-forty-characters-0123"))
    stops.append(app.stop)
    app.start(prepare)
    return app


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextmanager
def browser_page(
    browser: Browser, app: ServedApp, *, locale: str = "en-US",
    viewport: dict[str, int] | None = None, host: str = "127.0.0.1",
) -> Iterator[Page]:
    """A page in a context of its own (its own cookies), failing on any browser-side error.
    `host`: the name the browser uses for the app (WebAuthn wants a name, not an address:
    `localhost`)."""
    context = browser.new_context(base_url=f"http://{host}:{app.port}", locale=locale,
                                  viewport=viewport or WIDE)
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # A page answered 4xx on purpose (a refused form) is logged as a failed load too;
        # failed loads are checked below, for the resources a page needs.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_response(response: Any) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", on_response)
    try:
        yield page
        # A refused stylesheet or a Content-Security-Policy violation shows up here.
        assert problems == [], problems
    finally:
        context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@contextmanager
def served_app(folder: Path, settings: Settings,
               prepare: Callable[[Store], Awaitable[None]]) -> Iterator[ServedApp]:
    """The application over a new SQLite database in `folder`, filled by `prepare`, with admin
    passwords hashed cheaply (production Argon2 costs ~0.1 s a hash; what is tested does not
    depend on it)."""
    app = ServedApp(f"sqlite:///{folder / 'dinomail.sqlite3'}", settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(admins, "_hasher", FAST_ARGON2)
        patch.setattr(admins, "_DUMMY_HASH", FAST_ARGON2.hash("not a password"))
        app.start(prepare)
        try:
            yield app
        finally:
            app.stop()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the length of the block."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


def owner_log_in(page: Page, email: str, password: str) -> None:
    """Log a mailbox owner in on `/me/login`, through the form's labelled fields."""
    page.goto("/me/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name=email)).to_be_visible()
