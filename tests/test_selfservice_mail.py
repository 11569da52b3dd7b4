"""Self-service, end to end: a mailbox owner in headless Chromium changes their password and
sets their forwarding on the `/me/` pages, served by the real application; a real Dovecot
(authenticating through the real lookup daemon) takes the new password within a second and
refuses the old one, and a real Postfix (resolving through the lookup daemon's socketmap)
delivers forwarded mail to the destination, with a copy in the mailbox or without.
"""

from __future__ import annotations

import imaplib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, expect  # noqa: E402

from dinomail.passwords import hash_password  # noqa: E402
from dinomail.store import EVERYTHING, Store, domains, mailboxes  # noqa: E402
from lookupd.resolve import resolve_alias  # noqa: E402
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

pytestmark = [*needs_mail_daemons(), needs_chromium]

OWNER = "owen@example.org"
DESTINATION = "dest@other.org"
OLD_PASSWORD = "the owner's first password"
NEW_PASSWORD = "the owner's second password"
DESTINATION_PASSWORD = "the destination's password"
SENDER = "sender@elsewhere.net"
TIMEOUT = 20.0
# The promise: a new password is answered by lookupd, and used by Dovecot, this fast.
PROPAGATION_SECONDS = 1.0


@dataclass
class Stack(MailStack):
    app: ServedApp


async def fill(store: Store) -> None:
    async with store.write() as conn:
        for name in ("example.org", "other.org"):
            await domains.create(conn, "test", EVERYTHING, {"name": name})
        for email, password in ((OWNER, OLD_PASSWORD), (DESTINATION, DESTINATION_PASSWORD)):
            await mailboxes.create(conn, "test", EVERYTHING, {"email": email},
                                   password_hash=hash_password(password, "SHA512-CRYPT"))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with stack_root("dinomail-selfservice-") as (root, stops):
        app = owner_pages_app(root, fill, stops)
        url = app.database_url
        yield Stack(**vars(start_mail_stack(root, url, stops)), app=app)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


# --- clients -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, stack: Stack,
             timeout: float = TIMEOUT) -> None:
    stack.wait_for(condition, what, timeout)


def imap_works(stack: Stack, login: str, password: str) -> bool:
    return stack.imap_works(login, password)


def subjects(stack: Stack, login: str, password: str) -> list[str]:
    with imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port, timeout=10) as imap:
        imap.login(login, password)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        found = []
        for number in data[0].split():
            _, parts = imap.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            header = parts[0][1].decode() if isinstance(parts[0], tuple) else ""
            found.append(header.strip().removeprefix("Subject:").strip())
        imap.logout()
    return found


def send(stack: Stack, recipient: str, subject: str) -> str:
    """One message through Postfix's port 25; its queue id."""
    return stack.send(SENDER, recipient, subject)


def forwarding_in_snapshot(stack: Stack) -> list[str] | None:
    daemon = stack.lookupd.daemon
    assert daemon is not None and daemon.holder.current is not None
    return resolve_alias(daemon.holder.current, OWNER)


# --- the owner's day -----------------------------------------------------------------------------


def test_owner_changes_password_and_forwarding_in_the_browser(
    stack: Stack, browser: Browser,
) -> None:
    assert imap_works(stack, OWNER, OLD_PASSWORD), stack.logs()
    with browser_page(browser, stack.app) as page:
        page.goto("/me/")
        expect(page).to_have_url(re.compile(r"/me/login$"))
        page.get_by_label("Email address").fill(OWNER)
        page.get_by_label("Password").fill(OLD_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name=OWNER)).to_be_visible()

        # The password: taken by Dovecot, through the lookup daemon, within a second.
        page.get_by_role("navigation").get_by_role("link", name="Password", exact=True).click()
        page.get_by_label("Current password").fill(OLD_PASSWORD)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_label("Password confirmation").fill(NEW_PASSWORD)
        screenshot(page, "me-password")
        page.get_by_role("button", name="Change the password").click()
        expect(page.get_by_text("Your password was changed.")).to_be_visible()
        changed = time.monotonic()
        wait_for(lambda: imap_works(stack, OWNER, NEW_PASSWORD), "the new password over IMAP",
                 stack, timeout=PROPAGATION_SECONDS)
        assert time.monotonic() - changed < PROPAGATION_SECONDS
        assert not imap_works(stack, OWNER, OLD_PASSWORD)

        # Forwarding with a copy kept.
        page.get_by_role("navigation").get_by_role("link", name="Forwarding", exact=True).click()
        page.get_by_label("Forward to").fill(DESTINATION)
        page.get_by_label("Keep a copy in the mailbox").check()
        screenshot(page, "me-forwarding")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Your forwarding was saved.")).to_be_visible()
        expect(page.get_by_label("Keep a copy in the mailbox")).to_be_checked()

    wait_for(lambda: sorted(forwarding_in_snapshot(stack) or []) == sorted([OWNER, DESTINATION]),
             "the forwarding in the lookup daemon", stack)
    token = uuid.uuid4().hex[:8]
    send(stack, OWNER, f"kept {token}")
    for login, password in ((OWNER, NEW_PASSWORD), (DESTINATION, DESTINATION_PASSWORD)):
        wait_for(lambda login=login, password=password: f"kept {token}" in subjects(
            stack, login, password), f"the message in {login}", stack)


def test_forwarding_without_a_copy_reaches_only_the_destination(
    stack: Stack, browser: Browser,
) -> None:
    # The previous test's new password, if it ran; else the first one.
    password = NEW_PASSWORD if imap_works(stack, OWNER, NEW_PASSWORD) else OLD_PASSWORD
    with browser_page(browser, stack.app) as page:
        owner_log_in(page, OWNER, password)
        page.goto("/me/forwarding")
        page.get_by_label("Forward to").fill(DESTINATION)
        page.get_by_label("Keep a copy in the mailbox").uncheck()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Your forwarding was saved.")).to_be_visible()

    wait_for(lambda: forwarding_in_snapshot(stack) == [DESTINATION],
             "the forwarding without a copy in the lookup daemon", stack)
    token = uuid.uuid4().hex[:8]
    queue_id = send(stack, OWNER, f"forwarded {token}")
    wait_for(lambda: f"forwarded {token}" in subjects(stack, DESTINATION, DESTINATION_PASSWORD),
             "the message at the destination", stack)
    # The queue file is removed once every recipient is done: the mailbox got nothing.
    wait_for(lambda: f"{queue_id}: removed" in stack.postfix.log_text(),
             "the message done in Postfix", stack)
    assert f"forwarded {token}" not in subjects(stack, OWNER, password)
    log = stack.postfix.log_text()
    assert re.search(rf"{queue_id}: to=<{DESTINATION}>, orig_to=<{OWNER}>.*status=sent", log), log
    assert not re.search(rf"{queue_id}: to=<{OWNER}>", log), log
