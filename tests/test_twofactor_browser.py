"""My account and two-factor login in headless Chromium: a password change ends the other
session; an authenticator app enrolled from the QR page's secret (codes computed with pyotp),
its codes used once, recovery codes used once; TWO_FACTOR_REQUIRED leading a new admin to
enrolment; passkeys registered, used and removed with Chromium's virtual authenticator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
import pyotp  # noqa: E402
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from dinomail.settings import Settings  # noqa: E402
from dinomail.store import Store, admins, twofactor  # noqa: E402
from tests.support.adminapi import FAST_ARGON2, PASSWORD  # noqa: E402
from tests.support.browser import (  # noqa: E402
    CHROMIUM,
    ServedApp,
    browser_page,
    launch_chromium,
    screenshot,
)

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)", allow_module_level=True)

USERS = ("root", "alice", "carol", "dave", "erin")
NEW_PASSWORD = "a new password, long enough"


async def fill(store: Store) -> None:
    async with store.write() as conn:
        for username in USERS:
            await admins.create(conn, "test", username=username, password=PASSWORD,
                                is_superadmin=username == "root")


def serve(tmp_path_factory: pytest.TempPathFactory, **settings: str) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("twofactor") / "dinomail.sqlite3"
    app = ServedApp(f"sqlite:///{database}", Settings(
        SECRET_KEY="browser-test-secret-key-0123456789abcdef", **settings))  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(admins, "_hasher", FAST_ARGON2)
        patch.setattr(admins, "_DUMMY_HASH", FAST_ARGON2.hash("not a password"))
        app.start(fill)
        try:
            yield app
        finally:
            app.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


def password_step(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    password_step(page, username, password)
    expect(page.locator(".usermenu summary")).to_contain_text(username)


def log_out(page: Page) -> None:
    page.locator(".usermenu summary").click()
    page.get_by_role("button", name="Logout").click()
    expect(page.get_by_label("Username")).to_be_visible()


def second_step(page: Page, code: str) -> None:
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    page.get_by_label("Code from your app, or a recovery code").fill(code)
    page.get_by_role("button", name="Log in").click()


def open_two_factor(page: Page) -> None:
    page.locator(".usermenu summary").click()
    page.get_by_role("link", name="My account").click()
    page.get_by_role("link", name="Two-factor settings").click()
    expect(page.get_by_role("heading", name="Two-factor login", exact=True)).to_be_visible()


def enrol_app(page: Page) -> tuple[pyotp.TOTP, list[str]]:
    """From the two-factor page: set up an app with the secret shown, as a person would."""
    page.get_by_role("link", name="Set up an app").click()
    expect(page.get_by_role("img", name="QR code of the secret")).to_be_visible()
    app = pyotp.TOTP(page.locator("#totp-secret").inner_text().replace(" ", ""))
    page.get_by_label("Code").fill(app.now())
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I have kept them").click()
    return app, codes


def test_password_change_ends_the_other_session(browser: Browser, served: ServedApp) -> None:
    with browser_page(browser, served) as first, browser_page(browser, served) as second:
        log_in(first, "alice")
        log_in(second, "alice")
        first.locator(".usermenu summary").click()
        first.get_by_role("link", name="My account").click()
        first.get_by_label("Current password").fill("not my password")
        first.locator("#id_new_password").fill(NEW_PASSWORD)
        first.get_by_label("New password again").fill(NEW_PASSWORD)
        first.get_by_role("button", name="Change my password").click()
        expect(first.locator("#error-current_password")).to_contain_text(
            "The current password is wrong.")
        first.get_by_label("Current password").fill(PASSWORD)
        first.locator("#id_new_password").fill(NEW_PASSWORD)
        first.get_by_label("New password again").fill(NEW_PASSWORD)
        first.get_by_role("button", name="Change my password").click()
        expect(first.locator(".flashes")).to_contain_text("Your password was changed")
        screenshot(first, "account")
        # This session goes on; the other one is over.
        first.reload()
        expect(first.get_by_role("heading", name="My account")).to_be_visible()
        second.reload()
        expect(second.get_by_label("Username")).to_be_visible()
        log_in(second, "alice", NEW_PASSWORD)


def test_totp_login_codes_once_and_recovery_code_once(
    browser: Browser, served: ServedApp
) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "carol")
        open_two_factor(page)
        app, codes = enrol_app(page)
        expect(page.get_by_text("10 unused recovery codes left.")).to_be_visible()
        log_out(page)

        # The next step's code: later than the one that confirmed the app.
        code = app.at(time.time() + 30)
        password_step(page, "carol")
        screenshot(page, "login-second-step")
        second_step(page, code)
        expect(page.locator(".usermenu summary")).to_contain_text("carol")
        log_out(page)

        password_step(page, "carol")
        second_step(page, code)
        expect(page.locator("#error-code")).to_contain_text(
            "This code is wrong, expired or already used.")
        second_step(page, codes[0])
        expect(page.locator(".usermenu summary")).to_contain_text("carol")
        expect(page.locator(".flashes")).to_contain_text("You used a recovery code: 9 are left.")
        open_two_factor(page)
        expect(page.get_by_text("9 unused recovery codes left.")).to_be_visible()
        log_out(page)

        password_step(page, "carol")
        second_step(page, codes[0])
        expect(page.locator("#error-code")).to_contain_text("already used")
        page.goto("/")
        expect(page.get_by_label("Username")).to_be_visible()


def test_required_two_factor_leads_a_new_admin_to_enrolment(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for app in serve(tmp_path_factory, TWO_FACTOR_REQUIRED="all"):
        with browser_page(browser, app) as page:
            log_in(page, "dave")
            expect(page).to_have_url(f"http://127.0.0.1:{app.port}/account/two-factor")
            expect(page.get_by_role("alert")).to_contain_text(
                "This server asks you for a second factor")
            screenshot(page, "two-factor-enrolment")
            page.get_by_role("navigation", name="Sections").get_by_role(
                "link", name="Domains", exact=True).click()
            expect(page).to_have_url(f"http://127.0.0.1:{app.port}/account/two-factor")
            enrol_app(page)
            page.get_by_role("navigation", name="Sections").get_by_role(
                "link", name="Domains", exact=True).click()
            expect(page.get_by_role("heading", name="Domains")).to_be_visible()


def test_passkey_register_log_in_remove(browser: Browser, served: ServedApp) -> None:
    # WebAuthn wants a domain name: the pages are opened as localhost, the relying party.
    with browser_page(browser, served, host="localhost") as page:
        cdp = page.context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }})
        log_in(page, "erin")
        open_two_factor(page)
        page.get_by_role("link", name="Add a passkey").click()
        page.get_by_label("Name").fill("laptop")
        page.get_by_role("button", name="Add the passkey").click()
        expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
        page.get_by_role("link", name="I have kept them").click()
        expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()
        log_out(page)

        password_step(page, "erin")
        expect(page.get_by_role("heading", name="Second step")).to_be_visible()
        page.get_by_role("button", name="Use a passkey").click()
        expect(page.locator(".usermenu summary")).to_contain_text("erin")

        async def used() -> object:
            async with served.store.read() as conn:  # type: ignore[union-attr]
                account = await admins.get_by_username(conn, "erin")
                return (await twofactor.list_passkeys(conn, account["id"]))[0]["last_used_at"]

        assert served.run(used()) is not None
        open_two_factor(page)
        page.get_by_role("button", name="Remove laptop").click()
        expect(page.locator(".flashes")).to_contain_text("The passkey laptop was removed.")
        expect(page.get_by_text("No passkey yet.")).to_be_visible()
        log_out(page)
        # No second factor left: the password alone logs in again.
        log_in(page, "erin")
