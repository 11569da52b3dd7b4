"""The Admins, Audit log and DKIM pages in headless Chromium, without JavaScript of their own: a
superadmin creates a domain admin, who logs in and sees only themself; the audit log shows the
change and its CSV export holds it; screenshots of the new pages (test-artifacts/screenshots/)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

from dinomail.settings import Settings  # noqa: E402
from dinomail.store import EVERYTHING, Store, admins, domains  # noqa: E402
from tests.support.adminapi import PASSWORD  # noqa: E402
from tests.support.browser import (  # noqa: E402
    CHROMIUM,
    ServedApp,
    browser_page,
    chromium,
    screenshot,
    served_app,
)

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)", allow_module_level=True)

NEW_PASSWORD = "carol's long password"


async def fill(store: Store) -> None:
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD, is_superadmin=True)
        for name in ("example.org", "shop.example"):
            await domains.create(conn, "test", EVERYTHING, {"name": name})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    settings = Settings(SECRET_KEY="browser-test-secret-key-0123456789abcdef",
                        TIME_ZONE="Europe/Paris")
    with served_app(tmp_path_factory.mktemp("admin-pages"), settings, fill) as app:
        yield app


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".usermenu summary")).to_contain_text(username)


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role(
        "link", name=name, exact=True).click()


def test_a_superadmin_creates_a_domain_admin_who_logs_in_and_the_log_shows_it(
    served: ServedApp, browser: Browser,
) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "root")
        nav(page, "Admins")
        page.get_by_role("link", name="New admin").click()
        expect(page.get_by_role("heading", name="Add admin")).to_be_visible()
        page.get_by_role("textbox", name="Username", exact=True).fill("carol")
        page.get_by_role("textbox", name="Email", exact=True).fill("carol@shop.example")
        page.locator("#id_password").fill(NEW_PASSWORD)
        page.locator("#id_password_confirm").fill(NEW_PASSWORD)
        page.get_by_role("textbox", name="Domains", exact=True).fill("shop.example")
        expect(page.get_by_role("checkbox", name="Active")).to_be_checked()
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".flash")).to_have_text("Admin carol was created.")
        row = page.locator("tbody tr", has_text="carol")
        expect(row).to_contain_text("Domain admin")
        expect(row).to_contain_text("shop.example")
        screenshot(page, "admins")
        row.get_by_role("link", name="Change admin carol").click()
        expect(page.get_by_role("button", name="Remove two-factor")).to_be_visible()
        screenshot(page, "admin-edit")

        with browser_page(browser, served) as carol:
            log_in(carol, "carol", NEW_PASSWORD)
            nav(carol, "My admin account")
            expect(carol.locator("tbody tr")).to_have_count(1)
            expect(carol.locator("tbody")).to_contain_text("carol")
            expect(carol.get_by_role("link", name="New admin")).to_have_count(0)
            nav(carol, "Domains")
            expect(carol.locator("tbody")).to_contain_text("shop.example")
            expect(carol.locator("tbody")).not_to_contain_text("example.org")

        nav(page, "Audit log")
        page.get_by_role("textbox", name="Admin", exact=True).fill("root")
        page.get_by_role("combobox", name="Action").select_option("create")
        page.get_by_role("button", name="Filter").click()
        entry = page.locator("tbody tr", has_text="carol")
        expect(entry).to_contain_text("admin:root")
        expect(entry).to_contain_text("from 127.0.0.1")
        expect(entry).to_contain_text("admin carol")
        screenshot(page, "audit-log")
        with page.expect_download() as download:
            page.get_by_role("link", name="Export as CSV").click()
        assert download.value.suggested_filename == "audit-log.csv"
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert [(row["action"], row["object_type"], row["object_repr"]) for row in rows] == [
            ("create", "admin", "carol")]
        assert rows[0]["actor"] == "admin:root" and rows[0]["address"] == "127.0.0.1"
        assert PASSWORD not in Path(download.value.path()).read_text()


def test_a_dkim_key_is_made_from_the_domains_page(served: ServedApp, browser: Browser) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "root")
        nav(page, "Domains")
        row = page.locator("tbody tr", has_text="example.org").first
        row.locator("summary", has_text="DNS").click()
        row.get_by_role("link", name="DKIM key", exact=True).click()
        expect(page.get_by_role("heading", name="DKIM key of example.org")).to_be_visible()
        expect(page.get_by_role("radio", name="RSA (every receiver checks it)")).to_be_checked()
        page.get_by_role("button", name="Make a new key").click()
        expect(page.locator(".flash")).to_contain_text("A DKIM key was made for example.org")
        expect(page.locator("#dkim-record-value")).to_contain_text("v=DKIM1; k=rsa; p=")
        screenshot(page, "domain-dkim")
