"""A mailbox owner's two-factor login in headless Chromium: an authenticator app enrolled from
the secret shown next to its QR code (codes computed with pyotp), then a login that asks for a
code after the password, and the app removed with the current password; the recovery codes
shown once at enrolment, one of them opening a login once, and new ones made with the
password."""

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
# Another owner, for the recovery codes: the tests do not depend on each other's order.
CAROL = "carol@b.org"
PASSWORD = "a long mailbox password"


async def fill(store: Store) -> None:
    async with store.write() as conn:
        await domains.create(conn, "test", EVERYTHING, {"name": "b.org"})
        for email in (EMAIL, CAROL):
            await mailboxes.create(
                conn, "test", EVERYTHING, {"email": email},
                password_hash=hash_password(PASSWORD, "SHA512-CRYPT", user=email))


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


def password_step(page: Page, email: str = EMAIL) -> None:
    page.goto("/me/login")
    page.get_by_label("Email address").fill(email)
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
        expect(page.locator("#recovery-codes li")).to_have_count(10)
        page.get_by_role("link", name="I have kept them").click()
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


def test_recovery_codes_shown_once_and_each_opens_one_login(
    served: ServedApp, browser: Browser
) -> None:
    with browser_page(browser, served) as page:
        password_step(page, CAROL)
        expect(page.get_by_role("heading", name=CAROL)).to_be_visible()
        page.get_by_role("link", name="Two-factor login").click()
        app = pyotp.TOTP(page.locator("#totp-secret").inner_text().replace(" ", ""))
        page.get_by_label("Code").fill(app.now())
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
        shown = page.locator("#recovery-codes li")
        expect(shown).to_have_count(10)
        codes = shown.all_inner_texts()
        assert len(set(codes)) == 10
        screenshot(page, "me-recovery-codes")
        page.get_by_role("link", name="I have kept them").click()
        expect(page.locator("#totp-status")).to_be_visible()
        expect(page.locator("#recovery-left")).to_contain_text("10 unused recovery codes left.")
        # Shown once: the two-factor page never shows them again.
        expect(page.locator("#recovery-codes")).to_have_count(0)
        assert not any(code in page.content() for code in codes)
        log_out(page)

        password_step(page, CAROL)
        code_field = page.get_by_label("Code of your authenticator app, or a recovery code")
        code_field.fill(codes[0])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=CAROL)).to_be_visible()
        expect(page.get_by_text("You used a recovery code: 9 are left.")).to_be_visible()
        log_out(page)

        # The same code a second time: refused, the login stays at the code step.
        password_step(page, CAROL)
        code_field.fill(codes[0])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("This code is wrong, expired or already used.")).to_be_visible()
        expect(page.get_by_role("heading", name=CAROL)).to_have_count(0)
        code_field.fill(codes[1])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=CAROL)).to_be_visible()

        # New codes for the password: the old ones stop working.
        page.get_by_role("link", name="Two-factor login").click()
        expect(page.locator("#recovery-left")).to_contain_text("8 unused recovery codes left.")
        screenshot(page, "me-two-factor-recovery")
        page.get_by_label("Your password, or a code of the app").fill(PASSWORD)
        page.get_by_role("button", name="Make new recovery codes").click()
        expect(shown).to_have_count(10)
        fresh = shown.all_inner_texts()
        assert not set(fresh) & set(codes)
        page.get_by_role("link", name="I have kept them").click()
        log_out(page)
        password_step(page, CAROL)
        code_field.fill(codes[2])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("This code is wrong, expired or already used.")).to_be_visible()
        code_field.fill(fresh[0])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=CAROL)).to_be_visible()
