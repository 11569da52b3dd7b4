"""A mailbox owner's vacation reply and app passwords, set on the `/me/` pages in headless
Chromium and proven with the real daemons: Postfix, Dovecot 2.3 with Pigeonhole configured from
the shipped conf/dovecot/2.3 with the Lua passdb, and the lookup daemon.

Vacation: the owner fills the vacation form by its labels; mail sent through Postfix is then
delivered (LMTP, Sieve) and its sender gets exactly one automatic reply with the owner's
subject; a second message within the period gets none, nor does a message marked
Auto-Submitted or from a list.

Require app passwords: with the domain's setting on, the main password no longer opens IMAP but
still opens the pages, where the owner creates an app password for IMAP that then opens it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from dinomail.passwords import hash_password  # noqa: E402
from dinomail.store import EVERYTHING, Store, domains, mailboxes  # noqa: E402
from tests.support.browser import (  # noqa: E402
    ServedApp,
    browser_page,
    chromium,
    needs_chromium,
    owner_log_in,
    owner_pages_app,
    screenshot,
)
from tests.support.mail_stack import (  # noqa: E402
    MailStack,
    needs_mail_daemons,
    stack_root,
    start_mail_stack,
)

pytestmark = [*needs_mail_daemons(full=True), needs_chromium]

PASSWORD = "the owners' main password"
AWAY = "ann@example.org"
BOB, CAROL, DAVE, ERIN = (f"{name}@example.org" for name in ("bob", "carol", "dave", "erin"))
SUBJECT = "Away until the 20th — réponse automatique"
BODY = "I am away.\nYour message will be read when I am back."


@dataclass
class Stack(MailStack):
    app: ServedApp
    domain_id: int

    def require_app_passwords(self, required: bool) -> None:
        """The domain's setting, as an admin sets it (the store's rules and audit)."""

        async def update() -> None:
            assert self.app.store is not None
            async with self.app.store.write() as conn:
                await domains.update(conn, "test", EVERYTHING, self.domain_id,
                                     {"require_app_passwords": required})

        self.app.run(update())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    domain_ids: list[int] = []

    async def fill(store: Store) -> None:
        async with store.write() as conn:
            domain = await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
            domain_ids.append(domain["id"])
            for address in (AWAY, BOB, CAROL, DAVE, ERIN):
                await mailboxes.create(conn, "test", EVERYTHING, {"email": address},
                                       password_hash=hash_password(PASSWORD, "SHA512-CRYPT"))

    with stack_root("dinomail-vacation-pages-") as (root, stops):
        app = owner_pages_app(root, fill, stops)
        url = app.database_url
        mail = start_mail_stack(root, url, stops, full=True, APP_PASSWORD_FLUSH_INTERVAL="0.2")
        yield Stack(**vars(mail), app=app, domain_id=domain_ids[0])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def test_vacation_set_in_the_pages_answers_each_sender_once(
    stack: Stack, browser: Browser,
) -> None:
    starts, ends = date.today() - timedelta(days=1), date.today() + timedelta(days=30)
    with browser_page(browser, stack.app) as page:
        owner_log_in(page, AWAY, PASSWORD)
        page.get_by_role("navigation").get_by_role("link", name="Vacation reply").click()
        expect(page.get_by_role("heading", name="Vacation reply")).to_be_visible()
        page.get_by_label("Answer mail automatically").check()
        page.get_by_label("Subject").fill(SUBJECT)
        page.get_by_label("Message").fill(BODY)
        page.get_by_label("First day").fill(starts.isoformat())
        page.get_by_label("Last day").fill(ends.isoformat())
        page.get_by_label("Days between two replies to one sender").fill("7")
        screenshot(page, "me-vacation")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Your vacation reply was saved.")).to_be_visible()
        # What the page shows again is what was stored.
        expect(page.get_by_label("Subject")).to_have_value(SUBJECT)
        expect(page.get_by_label("Last day")).to_have_value(ends.isoformat())
        expect(page.get_by_label("Days between two replies to one sender")).to_have_value("7")
        expect(page.get_by_label("Answer mail automatically")).to_be_checked()

    daemon = stack.lookupd.daemon
    assert daemon is not None
    stack.wait_for(lambda: daemon.vacations.loaded and daemon.vacations.script(AWAY) is not None,
                   "the vacation script in the lookup daemon")

    stack.send(BOB, AWAY, "first")
    stack.wait_for(lambda: stack.messages(BOB), "the vacation reply to bob")
    stack.send(BOB, AWAY, "second, within the period")
    stack.send(CAROL, AWAY, "automatic", "Auto-Submitted: auto-generated\r\n")
    stack.send(DAVE, AWAY, "from a list", "List-Id: Friends <friends.example.org>\r\n")
    stack.send(ERIN, AWAY, "last")
    # Erin's reply comes after the messages before hers were delivered (one queue, in order).
    stack.wait_for(lambda: stack.messages(ERIN), "the vacation reply to erin")
    stack.wait_for(lambda: len(stack.messages(AWAY)) == 5, "the five messages delivered")

    assert sorted(str(message["Subject"]) for message in stack.messages(AWAY)) == sorted(
        ["first", "second, within the period", "automatic", "from a list", "last"])
    (reply,) = stack.messages(BOB)
    assert reply["Subject"] == SUBJECT
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["To"].addresses[0].addr_spec == BOB
    assert reply.get_content().replace("\r\n", "\n").strip() == BODY
    assert stack.messages(CAROL) == [] and stack.messages(DAVE) == []
    (to_erin,) = stack.messages(ERIN)
    assert to_erin["Subject"] == SUBJECT
    assert "from=<>" in stack.postfix.log_text()  # replies leave with the null sender
    errors = [line for line in stack.dovecot.log_text().splitlines() if "Error:" in line]
    assert errors == [], "\n".join(errors)


def test_required_app_passwords_leave_the_main_password_to_the_pages(
    stack: Stack, browser: Browser,
) -> None:
    assert stack.imap_works(AWAY, PASSWORD), stack.logs()
    stack.require_app_passwords(True)
    try:
        stack.wait_for(lambda: not stack.imap_works(AWAY, PASSWORD),
                       "the main password refused over IMAP")
        with browser_page(browser, stack.app) as page:
            owner_log_in(page, AWAY, PASSWORD)  # the pages still take it
            page.get_by_role("navigation").get_by_role("link", name="App passwords").click()
            page.get_by_label("What it is for").fill("mail client")
            page.get_by_label("IMAP (reading mail)").check()
            page.get_by_role("button", name="Create the app password").click()
            secret_field = page.get_by_label("Your new app password", exact=True)
            expect(secret_field).to_be_visible()
            secret = secret_field.input_value()
            assert re.fullmatch(r"\S{16,}", secret), secret
            expect(page.get_by_role("cell", name="mail client", exact=True)).to_be_visible()

        stack.wait_for(lambda: stack.imap_works(AWAY, secret), "the app password over IMAP")
        assert not stack.imap_works(AWAY, PASSWORD)
    finally:
        stack.require_app_passwords(False)
    stack.wait_for(lambda: stack.imap_works(AWAY, PASSWORD), "the main password over IMAP again")
