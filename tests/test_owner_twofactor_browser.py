"""A mailbox owner's two-factor login in headless Chromium: an authenticator app enrolled from
the secret shown next to its QR code (codes computed with pyotp), then a login that asks for a
code after the password, and the app removed with the current password."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
import pyotp  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from dinomail.passwords import hash_password  # noqa: E402
from dinomail.settings import Settings  # noqa: E402
from dinomail.store import EVERYTHING, Store, domains, mailboxes  # noqa: E402
from tests.support.browser import (  # noqa: E402
    CHROMIUM,
    ServedApp,
    browser_page,
    launch_chromium,
    screenshot,
)

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)", allow_module_level=True)

EMAIL = "bob@b.org"
PASSWORD = "a long mailbox password"


async def fill(store: Store) -> None:
    async with store.write() as conn:
        await domains.create(conn, "test", EVERYTHING, {"name": "b.org"})
        await mailboxes.create(conn, "test", EVERYTHING, {"email": EMAIL},
                               password_hash=hash_password(PASSWORD, "SHA512-CRYPT", user=EMAIL))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("owner-twofactor") / "dinomail.sqlite3"
    app = ServedApp(f"sqlite:///{database}", Settings(
        SECRET_KEY="browser-test-secret-key-0123456789abcdef"))  # type: ignore[call-arg]
    app.start(fill)
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def password_step(page: Page) -> None:
    page.goto("/me/login")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page) -> None:
    page.locator(".usermenu summary").click()
    page.get_by_role("button", name="Logout").click()
    expect(page.get_by_label("Email address")).to_be_visible()


def test_enrol_log_in_with_a_code_and_remove(served: ServedApp, browser: Browser) -> None:
    with browser_page(browser, served) as page:
        password_step(page)
        expect(page.get_by_role("heading", name=EMAIL)).to_be_visible()
        page.get_by_role("link", name="Two-factor login").click()
        expect(page.get_by_role("img", name="QR code of the secret")).to_be_visible()
        screenshot(page, "me-two-factor-enrol")
        app = pyotp.TOTP(page.locator("#totp-secret").inner_text().replace(" ", ""))
        page.get_by_label("Code").fill(app.now())
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#totp-status")).to_be_visible()
        log_out(page)

        password_step(page)
        code_field = page.get_by_label("Code of your authenticator app")
        expect(code_field).to_be_visible()
        screenshot(page, "me-login-code")
        # The next step's code: later than the one enrolment used.
        code_field.fill(app.at(time.time() + 30))
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=EMAIL)).to_be_visible()

        page.get_by_role("link", name="Two-factor login").click()
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_role("button", name="Remove the authenticator app").click()
        expect(page.get_by_role("img", name="QR code of the secret")).to_be_visible()
        log_out(page)
        password_step(page)
        expect(page.get_by_role("heading", name=EMAIL)).to_be_visible()
