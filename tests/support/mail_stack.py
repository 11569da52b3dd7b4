"""A mail server for end-to-end tests: the lookup daemon, a real Postfix resolving through its
socketmap and a real Dovecot authenticating through it, over one database that the test has
already migrated and filled; with the clients the tests read and send mail with.

Postfix and Dovecot check their logs for crashes as they stop (tests/support/daemon_logs.py),
so a test module that starts a stack and stops it in its fixture checks them.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import re
import shutil
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.dovecot import (
    DovecotInstance,
    LookupdThread,
    have_dovecot,
    have_dovecot_lua,
    lookupd_settings_for_dovecot,
    make_root,
)
from tests.support.ports import free_port
from tests.support.postfix import PostfixInstance, have_postfix

# Delivery through Postfix, LMTP and Sieve, and a reply back through Postfix, take well under it.
TIMEOUT = 30.0

SIEVE_PLUGIN = Path("/usr/lib/dovecot/modules/lib90_sieve_plugin.so")


def needs_mail_daemons(*, full: bool = False) -> list[pytest.MarkDecorator]:
    """The skip marks of a module that starts a stack (see `start_mail_stack` for `full`)."""
    marks = [
        pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
        pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed"),
        pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix and Dovecot needs root"),
    ]
    if full:
        marks += [
            pytest.mark.skipif(not have_dovecot_lua(),
                               reason="Dovecot's Lua auth is not installed"),
            pytest.mark.skipif(not SIEVE_PLUGIN.exists(), reason="dovecot-sieve is not installed"),
        ]
    return marks


@dataclass
class MailStack:
    root: Path
    url: str
    lookupd: LookupdThread
    postfix: PostfixInstance
    dovecot: DovecotInstance

    def logs(self) -> str:
        return f"--- postfix\n{self.postfix.log_text()}\n--- dovecot\n{self.dovecot.log_text()}"

    def wait_for(self, condition: Callable[[], object], what: str,
                 timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def messages(self, address: str, folder: str = "") -> list[EmailMessage]:
        """The messages delivered to a mailbox's folder (INBOX when empty), read from its
        Maildir (no login: the mailbox's password may be the thing under test)."""
        local, domain = address.split("@")
        maildir = self.dovecot.vmail / domain / local / "Maildir"
        if folder:
            maildir = maildir / f".{folder}"
        found = []
        for sub in ("new", "cur"):
            path = maildir / sub
            if path.is_dir():
                for item in sorted(path.iterdir()):
                    parsed = email.message_from_bytes(item.read_bytes(),
                                                      policy=email.policy.default)
                    assert isinstance(parsed, EmailMessage)
                    found.append(parsed)
        return found

    def imap_works(self, login: str, password: str) -> bool:
        with imaplib.IMAP4("127.0.0.1", self.dovecot.imap_port, timeout=30) as imap:
            try:
                imap.login(login, password)
            except imaplib.IMAP4.error:
                return False
            imap.logout()
            return True

    def send(self, sender: str, recipient: str, subject: str, extra_headers: str = "") -> str:
        """One message through Postfix's port 25; its queue id. `extra_headers`: header lines,
        each ending in CRLF."""
        text = (f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n{extra_headers}"
                f"Message-ID: <{uuid.uuid4().hex}@client.example>\r\n\r\nHello.\r\n")
        with smtplib.SMTP("127.0.0.1", self.postfix.smtp_port, timeout=30) as client:
            client.ehlo("client.example")
            code, reply = client.mail(sender)
            assert code == 250, reply
            code, reply = client.rcpt(recipient)
            assert code == 250, (reply, self.logs())
            code, reply = client.data(text.encode())
            assert code == 250, (reply, self.logs())
        match = re.search(r"queued as (\w+)", reply.decode())
        assert match, reply
        return match.group(1)


def start_mail_stack(root: Path, url: str, stops: list[Callable[[], None]], *,
                     full: bool = False, **lookupd_overrides: str) -> MailStack:
    """The lookup daemon, Postfix and Dovecot under `root` over the database at `url`; each
    one's stop is appended to `stops` as it starts (call them in reverse).

    `full`: Dovecot authenticates through the shipped Lua passdb (app passwords, "require app
    passwords") and serves Sieve (vacation replies, which leave through this Postfix),
    ManageSieve and POP3; Postfix has the submission port, its logins checked by Dovecot.
    Otherwise Dovecot uses the dict passdb and serves IMAP and LMTP only."""
    settings = lookupd_settings_for_dovecot(root, url, **lookupd_overrides)
    lookupd = LookupdThread(settings)
    stops.append(lookupd.stop)
    lookupd.start()
    postfix = PostfixInstance(
        root / "postfix", smtp_port=free_port(), socketmap=f"inet:{settings.SOCKETMAP_LISTEN}",
        submission_port=free_port() if full else None,
    )
    stops.append(postfix.stop)
    postfix.start()
    dovecot = DovecotInstance(
        root, dict_socket=settings.dict_listen.removeprefix("unix:"), imap_port=free_port(),
        lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}", postfix_private=postfix.private,
        auth="lua" if full else "dict",
        sieve_port=free_port() if full else 0, pop3_port=free_port() if full else 0,
        # Vacation replies leave through the test's Postfix (on a server: /usr/sbin/sendmail).
        extra_conf=f"submission_host = 127.0.0.1:{postfix.smtp_port}\n" if full else "",
    )
    stops.append(dovecot.stop)
    dovecot.start()
    return MailStack(root, url, lookupd, postfix, dovecot)


@contextmanager
def stack_root(prefix: str) -> Iterator[tuple[Path, list[Callable[[], None]]]]:
    """A new folder for a stack, and the list of its stops: at the end each is called, the last
    started first (Postfix and Dovecot fail there on a crash in their logs), and the folder is
    removed."""
    root = make_root(prefix)
    stops: list[Callable[[], None]] = []
    try:
        yield root, stops
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(root, ignore_errors=True)
