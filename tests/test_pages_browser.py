"""The admin pages in headless Chromium: an admin's day (log in, create a domain, a mailbox and
an alias, change a password, delete with the typed confirmation), French, a domain admin kept
to their domain, keyboard use, and a screenshot of every page (test-artifacts/screenshots/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

from dinomail.dnscheck.runner import target_of  # noqa: E402
from dinomail.passwords import verify_password  # noqa: E402
from dinomail.settings import Settings  # noqa: E402
from dinomail.store import (  # noqa: E402
    EVERYTHING,
    Store,
    admins,
    aliasdomains,
    aliases,
    dns,
    domains,
    mailboxes,
)
from dinomail.store.common import now  # noqa: E402
from tests.support.adminapi import FAST_ARGON2, PASSWORD  # noqa: E402
from tests.support.browser import (  # noqa: E402
    CHROMIUM,
    PHONE,
    ServedApp,
    browser_page,
    launch_chromium,
    screenshot,
)

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt install chromium)", allow_module_level=True)

LEGALS = ("<p>This server is run by <strong>Example SAS</strong>. "
          "<a href='mailto:dpo@example.org'>Contact</a><script>alert('x')</script></p>")


async def fill(store: Store) -> None:
    """example.org and nanoy.fr (alice's), as in the original's screenshots, and a few more."""
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD, is_superadmin=True)
        example = await domains.create(conn, "test", EVERYTHING,
                                       {"name": "example.org", "display_name": "Example"})
        nanoy = await domains.create(conn, "test", EVERYTHING, {"name": "nanoy.fr"})
        await domains.create(conn, "test", EVERYTHING, {"name": "bücher.example"})
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[nanoy["id"]])
        for email, quota in (("test@example.org", 20_000_000_000), ("test@nanoy.fr", 2 * 10**9),
                             ("john@example.org", 200_000_000), ("eve@bücher.example", 0)):
            await mailboxes.create(conn, "test", EVERYTHING, {"email": email, "quota": quota},
                                   password_hash="{PLAIN}unknown")
        for number in range(60):
            await mailboxes.create(conn, "test", EVERYTHING,
                                   {"email": f"staff{number:02d}@example.org",
                                    "quota": 1_000_000_000}, password_hash="{PLAIN}unknown")
        await mailboxes.record_usage(conn, {
            "test@example.org": (12_500_000_000, 9000), "john@example.org": (190_000_000, 80),
            "test@nanoy.fr": (300_000_000, 12)})
        for source, destination in (("john-doe@example.org", "john@example.org"),
                                    ("abuse@example.org", "postmaster@example.org"),
                                    ("john@nanoy.fr", "john@another.domain")):
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": source, "destination": destination})
        await aliasdomains.create(conn, "test", EVERYTHING,
                                  {"name": "example.net", "target_domain_id": example["id"]})
        # What the background DNS checker would have stored for example.org.
        spf = {"summary": "An SPF record is published.", "expected": None,
               "found": "v=spf1 mx -all", "problems": [], "data": {},
               "queries": [{"name": "example.org", "type": "TXT", "outcome": "answer",
                            "records": ["v=spf1 mx -all"], "error": None}]}
        dmarc = {"summary": "No DMARC record is published.", "expected": None, "found": None,
                 "problems": ["Publish a TXT record at _dmarc.example.org."], "data": {},
                 "queries": [{"name": "_dmarc.example.org", "type": "TXT",
                              "outcome": "nxdomain", "records": [], "error": None}]}
        await dns.save_check_results(
            conn, example["id"], [{"name": "spf", "status": "ok", "details": spf},
                                  {"name": "dmarc", "status": "missing", "details": dmarc}],
            inputs=target_of((await dns.check_targets(conn, domain_ids=[example["id"]]))[0],
                             Settings()).fingerprint,
            incomplete=False, started_at=now(),
            original={"spf_status": 1, "dmarc_status": 0})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("pages") / "dinomail.sqlite3"
    settings = Settings(SECRET_KEY="browser-test-secret-key-0123456789abcdef",
                        DINOMAIL_LEGALS=LEGALS, TIME_ZONE="Europe/Paris")
    app = ServedApp(f"sqlite:///{database}", settings)
    with pytest.MonkeyPatch.context() as patch:
        # Production Argon2 costs ~0.1 s a hash; what is tested does not depend on them.
        patch.setattr(admins, "_hasher", FAST_ARGON2)
        patch.setattr(admins, "_DUMMY_HASH", FAST_ARGON2.hash("not a password"))
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


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """With the keyboard only: the username field has the focus, Tab moves on, Enter sends."""
    page.goto("/login")
    expect(page.locator("#id_username")).to_be_focused()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    expect(page.locator(".usermenu summary")).to_contain_text(username)


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role(
        "link", name=name, exact=True).click()


def confirm_name(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Type the name of the domain to confirm")


def confirm_email(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Type the email of the user to confirm")


def flash(page: Page) -> str:
    return page.locator(".flash").inner_text()


def test_admin_creates_a_domain_a_mailbox_and_an_alias(served: ServedApp,
                                                       browser: Browser) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "root")
        nav(page, "Domains")
        page.get_by_role("link", name="New domain").click()
        expect(page.get_by_role("heading", name="Add domain")).to_be_visible()
        page.get_by_role("textbox", name="Name", exact=True).fill("shop.example")
        page.get_by_role("textbox", name="Display name", exact=True).fill("Shop & Co")
        page.get_by_role("button", name="Save").click()
        assert flash(page) == "Domain shop.example was created."
        expect(page.locator("table")).to_contain_text("shop.example")

        nav(page, "Users")
        page.get_by_role("link", name="New user").click()
        page.get_by_role("combobox", name="Domain", exact=True).select_option("shop.example")
        page.get_by_role("textbox", name="Email", exact=True).fill("anna@shop.example")
        page.get_by_role("textbox", name="Quota", exact=True).fill("2 GB")
        page.get_by_label("Password", exact=True).fill("a first password")
        page.get_by_label("Password confirmation").fill("a first password")
        page.get_by_role("button", name="Save").click()
        assert flash(page) == "User anna@shop.example was created."
        page.get_by_role("combobox", name="Domain", exact=True).select_option("shop.example")
        page.get_by_role("button", name="Filter").click()
        row = page.locator("tbody tr", has_text="anna@shop.example")
        expect(row).to_contain_text("2 GB")

        nav(page, "Aliases")
        page.get_by_role("link", name="New alias").click()
        page.get_by_role("textbox", name="Source", exact=True).fill("sales@shop.example")
        page.get_by_role("textbox", name="Destination", exact=True).fill("anna@shop.example")
        page.get_by_role("button", name="Save").click()
        assert flash(page) == "Alias sales@shop.example -> anna@shop.example was created."
        row = page.locator("tbody tr", has_text="sales@shop.example")
        expect(row.locator("td").nth(4)).to_have_text("No")  # Exterior ?
        expect(row.locator(".ok-mark")).to_be_visible()

        # The original's warning: an interior destination that does not exist.
        broken = page.locator("tbody tr", has_text="abuse@example.org")
        expect(broken.locator(".warn-mark")).to_have_attribute(
            "title", "Destination domain is managed by this instance but no email or alias "
            "was found.")

        page.goto("/virtual-domains/")
        download_link = page.get_by_role("link", name="Download the autoconfig file of "
                                                    "shop.example")
        with page.expect_download() as download:
            download_link.click()
        assert download.value.suggested_filename == "autoconfig.xml"
        xml = Path(download.value.path()).read_text()
        assert "<displayName>Shop &amp; Co</displayName>" in xml


def test_a_mailbox_password_is_changed_with_a_confirmation(served: ServedApp,
                                                            browser: Browser) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "root")
        page.goto("/virtual-users/?q=john@example.org")
        page.get_by_role("link", name="Change john@example.org's password").click()
        page.get_by_label("New password").fill("correct horse")
        page.get_by_label("Password confirmation").fill("correct hose")
        page.get_by_role("button", name="Change the password").click()
        expect(page.locator("#error-password_confirm")).to_have_text(
            "The two passwords don't match.")
        expect(page.get_by_label("Password confirmation")).to_have_attribute(
            "aria-invalid", "true")
        screenshot(page, "users-password-error")
        page.get_by_label("New password").fill("correct horse")
        page.get_by_label("Password confirmation").fill("correct horse")
        page.get_by_role("button", name="Change the password").click()
        assert flash(page) == "john@example.org's password was changed."

    async def stored_hash() -> str:
        assert served.store is not None
        async with served.store.read() as conn:
            mailbox = await mailboxes.get_by_email(conn, EVERYTHING, "john@example.org")
            return await mailboxes.password_hash(conn, EVERYTHING, mailbox["id"])

    assert verify_password("correct horse", served.run(stored_hash()), user="john@example.org")


def test_deleting_needs_the_exact_name(served: ServedApp, browser: Browser) -> None:
    async def add_domain() -> None:
        assert served.store is not None
        async with served.store.write() as conn:
            await domains.create(conn, "test", EVERYTHING, {"name": "old.example"})
            await mailboxes.create(conn, "test", EVERYTHING, {"email": "gone@old.example"},
                                   password_hash="{PLAIN}x")

    served.run(add_domain())
    with browser_page(browser, served) as page:
        log_in(page, "root")
        page.goto("/virtual-domains/?q=old.example")
        page.get_by_role("link", name="Delete domain old.example").click()
        expect(page.locator(".alert--warning")).to_contain_text("1 mailbox")
        confirm_name(page).fill("old.exampl")
        page.get_by_role("button", name="Delete").click()
        expect(page.locator("#error-verifier")).to_have_text(
            "Names don't match. Operation cancelled.")
        screenshot(page, "domain-delete-refused")
        page.goto("/virtual-domains/?q=old.example")
        expect(page.locator("tbody")).to_contain_text("old.example")

        page.get_by_role("link", name="Delete domain old.example").click()
        confirm_name(page).fill("old.example")
        page.get_by_role("button", name="Delete").click()
        assert flash(page) == "Domain old.example was deleted."
        page.goto("/virtual-users/?q=old.example")
        expect(page.locator("tbody")).to_contain_text("No user matches.")

        # A mailbox is deleted the same way, by typing its address.
        page.goto("/virtual-users/?q=staff59")
        page.get_by_role("link", name="Delete user staff59@example.org").click()
        confirm_email(page).fill("staff58@example.org")
        page.get_by_role("button", name="Delete").click()
        expect(page.locator("#error-verifier")).to_have_text(
            "Emails don't match. Operation cancelled.")
        confirm_email(page).fill("staff59@example.org")
        page.get_by_role("button", name="Delete").click()
        assert flash(page) == "User staff59@example.org was deleted."


def test_french_from_the_browser_and_from_the_switch(served: ServedApp,
                                                     browser: Browser) -> None:
    with browser_page(browser, served, locale="fr-FR") as page:
        page.goto("/login")
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.get_by_label("Mot de passe")).to_be_visible()
        screenshot(page, "fr-login")
        log_in(page, "root")
        expect(page.get_by_role("navigation", name="Rubriques")).to_contain_text("Domaines")
        nav_fr = page.get_by_role("navigation", name="Rubriques")
        nav_fr.get_by_role("link", name="Domaines", exact=True).click()
        expect(page.get_by_role("heading", name="Domaines")).to_be_visible()
        expect(page.locator("tbody")).to_contain_text("Non configuré")
        screenshot(page, "fr-domains")
        page.goto("/virtual-users/?q=test@example.org")
        expect(page.locator("tbody")).to_contain_text("12,5\u00a0Go sur 20\u00a0Go")
        screenshot(page, "fr-users")

        page.get_by_role("button", name="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("heading", name="Users")).to_be_visible()

    with browser_page(browser, served, locale="en-US") as page:
        log_in(page, "root")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.get_by_role("button", name="Français").click()
        expect(page.locator("html")).to_have_attribute("lang", "fr")
        expect(page.get_by_role("link", name="Gérer les utilisateurs")).to_be_visible()
        page.goto("/virtual-domains/new")
        page.get_by_role("button", name="Enregistrer").click()
        expect(page.locator("#error-name")).to_have_text("Ce champ est obligatoire.")


def test_a_domain_admin_cannot_see_another_domain(served: ServedApp, browser: Browser) -> None:
    with browser_page(browser, served) as page:
        log_in(page, "alice")
        expect(page.locator(".usermenu__role")).to_have_text("Domain admin")
        expect(page.locator(".stat__number").first).to_have_text("1")
        screenshot(page, "domain-admin-home")
        for url, mine, others in (
            ("/virtual-domains/", "nanoy.fr", "example.org"),
            ("/virtual-users/", "test@nanoy.fr", "example.org"),
            ("/virtual-aliases/", "john@nanoy.fr", "example.org"),
            ("/alias-domains/", "There is no alias domain yet.", "example.net"),
            ("/search?q=example", "No domain matches.", "example.org"),
        ):
            page.goto(url)
            main = page.locator("main")
            expect(main).to_contain_text(mine)
            expect(main).not_to_contain_text(others)
        page.goto("/virtual-users/new")
        options = page.get_by_role("combobox", name="Domain", exact=True).locator("option")
        expect(options).to_have_text(["From the address", "nanoy.fr"])
        expect(page.get_by_role("link", name="New domain")).to_have_count(0)

        page.goto("/virtual-domains/1/edit")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        page.goto("/virtual-users/new")
        page.get_by_role("textbox", name="Email", exact=True).fill("intruder@example.org")
        page.get_by_role("button", name="Save").click()
        # The answer a domain that does not exist gets: nothing says example.org is here.
        expect(page.locator("#error-domain")).to_have_text(
            "example.org is not a domain you manage.")


def test_keyboard_and_small_screens(served: ServedApp, browser: Browser) -> None:
    with browser_page(browser, served, viewport=PHONE) as page:
        log_in(page, "root")
        page.goto("/virtual-users/")
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to content")
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        # Reading on a phone never needs scrolling sideways, whatever the page.
        for url in ("/", "/virtual-domains/", "/virtual-users/", "/virtual-aliases/",
                    "/domain-limits/", "/api-keys", "/virtual-users/new"):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (url, width)
        # The user menu opens from the keyboard, and logging out is a button in it.
        page.locator(".usermenu summary").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="Logout")).to_be_visible()
        page.get_by_role("button", name="Logout").press("Enter")
        assert flash(page) == "You are logged out."


# Every page, wide and, for the lists, on a phone: kept under test-artifacts/screenshots/.
PAGES = {
    "home": "/", "domains": "/virtual-domains/", "domain-new": "/virtual-domains/new",
    "domain-edit": "/virtual-domains/1/edit", "domain-delete": "/virtual-domains/1/delete",
    "domain-dkim-scan": "/virtual-domains/1/dkim-scan",
    "domain-dmarc-scan": "/virtual-domains/1/dmarc-scan",
    "domain-spf-scan": "/virtual-domains/1/spf-scan",
    "users": "/virtual-users/", "user-new": "/virtual-users/new",
    "user-edit": "/virtual-users/1/edit", "user-password": "/virtual-users/1/edit-password",
    "user-delete": "/virtual-users/1/delete", "user-vacation": "/virtual-users/1/vacation",
    "user-app-passwords": "/virtual-users/1/app-passwords", "aliases": "/virtual-aliases/",
    "alias-new": "/virtual-aliases/new", "alias-edit": "/virtual-aliases/1/edit",
    "alias-delete": "/virtual-aliases/1/delete", "alias-domains": "/alias-domains/",
    "alias-domain-new": "/alias-domains/new", "alias-domain-edit": "/alias-domains/1/edit",
    "limits": "/domain-limits/", "limit-edit": "/domain-limits/1/edit",
    "search": "/search?q=john", "api-keys": "/api-keys", "legals": "/legals",
    "not-found": "/virtual-domains/999/edit",
}
PHONE_PAGES = ("home", "domains", "users", "aliases", "user-new", "legals")


def test_screenshots_of_every_page(served: ServedApp, browser: Browser) -> None:
    with browser_page(browser, served) as page:
        page.goto("/login")
        screenshot(page, "login")
        log_in(page, "root")
        for name, url in PAGES.items():
            page.goto(url)
            expect(page.locator("h1")).to_be_visible()
            # Every field has a label a screen reader reads out.
            unlabelled = page.evaluate("""() => [...document.querySelectorAll(
                'input:not([type=hidden]):not([hidden]), select, textarea')]
                .filter(el => !el.labels.length && !el.getAttribute('aria-label'))
                .map(el => el.name)""")
            assert unlabelled == [], (url, unlabelled)
            screenshot(page, name)
        page.goto(PAGES["users"])
        screenshot(page, "users-first-rows", full_page=False)
        page.goto("/api-keys")
        page.get_by_role("textbox", name="What it is for").fill("backup script")
        page.get_by_role("button", name="Create the key").click()
        secret = page.locator("#new-key").input_value()
        assert re.fullmatch(r"[0-9a-f]{40}", secret)
        screenshot(page, "api-key-created")
        page.goto("/legals")
        expect(page.locator(".legals-text strong")).to_have_text("Example SAS")
        expect(page.locator(".legals-text script")).to_have_count(0)

    with browser_page(browser, served, viewport=PHONE) as page:
        log_in(page, "root")
        for name in PHONE_PAGES:
            page.goto(PAGES[name])
            screenshot(page, f"{name}-phone")
        page.goto(PAGES["users"])
        screenshot(page, "users-phone-first-rows", full_page=False)
