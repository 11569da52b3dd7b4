"""Vacation replies and app passwords with the real daemons: Postfix, Dovecot 2.3 with Pigeonhole
(dovecot-sieve, dovecot-managesieved) configured from the shipped conf/dovecot/2.3 with the Lua
passdb, and the lookup daemon; settings made through the admin API.

Vacation: mail sent through Postfix to a mailbox with a vacation reply is delivered (LMTP, Sieve)
and its sender gets exactly one automatic reply (Dovecot sends it through Postfix, which
delivers it to the sender's mailbox); a second message within the period gets none, nor does a
message marked Auto-Submitted or from a list; the user's own ManageSieve script still runs.

App passwords: one for IMAP only opens IMAP, not SMTP submission (Postfix's SASL through
Dovecot); one for POP3 only opens POP3 (Debian's dovecot-pop3d), not IMAP; revoked, it opens
nothing; with the domain's "require app passwords", the main
password no longer opens IMAP while an app password does.
"""

from __future__ import annotations

import asyncio
import poplib
import smtplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest

from dinomail import migrate
from dinomail.passwords import hash_password
from dinomail.store import EVERYTHING, Store, apppasswords, domains, mailboxes
from lookupd.snapshot import Snapshot
from tests.support.adminapi import add_admin, api_client
from tests.support.mail_stack import (
    MailStack,
    needs_mail_daemons,
    stack_root,
    start_mail_stack,
)
from tests.support.managesieve import ManageSieve, ManageSieveError

pytestmark = needs_mail_daemons(full=True)

PASSWORD = "Main-password-123"
AWAY = "ann@example.org"
SENDERS = ("bob", "carol", "dave", "erin")
SUBJECT = 'Out of office: "back" \\ soon — élan'
BODY = 'I am away.\n.\nA "quoted" line, a backslash \\ and } ; discard;\nGrüße'


@dataclass
class Stack(MailStack):
    headers: dict[str, str]
    mailbox_id: int
    domain_id: int

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One admin API request, on its own store over the same database."""

        async def call() -> tuple[int, Any]:
            store = Store(self.url)
            try:
                async with api_client(store) as client:
                    answer = await client.request(method, path, headers=self.headers, json=body)
            finally:
                await store.close()
            return answer.status_code, answer.json() if answer.content else None

        return asyncio.run(call())


async def _fill(url: str) -> tuple[dict[str, str], int, int]:
    store = Store(url)
    try:
        await migrate.upgrade(store.engine)
        async with store.write() as conn:
            domain = await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
            ids = {}
            for local in ("ann", *SENDERS):
                row = await mailboxes.create(
                    conn, "test", EVERYTHING, {"email": f"{local}@example.org"},
                    password_hash=hash_password(PASSWORD, "SHA512-CRYPT"),
                )
                ids[local] = row["id"]
        root = await add_admin(store, "root", superadmin=True)
    finally:
        await store.close()
    return root.headers, ids["ann"], domain["id"]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with stack_root("dinomail-vacation-") as (root, stops):
        url = f"sqlite:///{root / 'dinomail.sqlite3'}"
        headers, mailbox_id, domain_id = asyncio.run(_fill(url))
        mail = start_mail_stack(root, url, stops, full=True, APP_PASSWORD_FLUSH_INTERVAL="0.2")
        yield Stack(**vars(mail), headers=headers, mailbox_id=mailbox_id, domain_id=domain_id)


# --- helpers -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], object], what: str, stack: Stack) -> None:
    stack.wait_for(condition, what)


def messages(stack: Stack, local: str, folder: str = "") -> list[EmailMessage]:
    return stack.messages(f"{local}@example.org", folder)


def send(stack: Stack, sender: str, subject: str, extra: str = "") -> None:
    """A message from `sender` to the away mailbox, through Postfix's port 25."""
    stack.send(sender, AWAY, subject, extra)


def pop3_login_works(stack: Stack, login: str, password: str) -> bool:
    client = poplib.POP3("127.0.0.1", stack.dovecot.pop3_port, timeout=30)
    try:
        client.user(login)
        try:
            client.pass_(password)
        except poplib.error_proto:
            return False
        client.stat()
        return True
    finally:
        client.quit()


def imap_login_works(stack: Stack, login: str, password: str) -> bool:
    return stack.imap_works(login, password)


def submission_login_works(stack: Stack, login: str, password: str) -> bool:
    """AUTH PLAIN on the shipped submission service (after STARTTLS), which Postfix checks
    through Dovecot's SASL socket."""
    port = stack.postfix.submission_port
    assert port is not None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.starttls(context=context)
        client.ehlo("client.example")
        client.user, client.password = login, password
        try:
            client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError:
            return False
        return True


def snapshot(stack: Stack) -> Snapshot:
    daemon = stack.lookupd.daemon
    assert daemon is not None and daemon.holder.current is not None
    return daemon.holder.current


def app_password_ids(stack: Stack) -> set[int]:
    """The app passwords of the away mailbox that the lookup daemon checks logins against."""
    return {row.id for row in snapshot(stack).app_passwords(stack.mailbox_id)}


def requires_app_passwords(stack: Stack) -> bool:
    domain = snapshot(stack).domain_by_id(stack.domain_id)
    return domain is not None and domain.require_app_passwords


def app_password(stack: Stack, name: str, protocols: list[str]) -> tuple[int, str]:
    status, body = stack.api("POST", f"/api/mailbox/{stack.mailbox_id}/apppassword/",
                             {"name": name, "protocols": protocols})
    assert status == 201, body
    # Logins are checked against the snapshot, which the change log brings it to.
    wait_for(lambda: body["id"] in app_password_ids(stack), "the new app password", stack)
    return body["id"], body["password"]


def revoke(stack: Stack, pw_id: int) -> None:
    status, _ = stack.api("DELETE", f"/api/mailbox/{stack.mailbox_id}/apppassword/{pw_id}/")
    assert status == 204
    wait_for(lambda: pw_id not in app_password_ids(stack), "the revocation", stack)


def require_app_passwords(stack: Stack, required: bool) -> None:
    status, body = stack.api("PATCH", f"/api/virtualdomain/{stack.domain_id}/",
                             {"require_app_passwords": required})
    assert status in (200, 202), body
    wait_for(lambda: requires_app_passwords(stack) is required, "the domain's rule", stack)


# --- vacation ------------------------------------------------------------------------------------


def test_one_reply_per_sender_none_to_automatic_or_list_mail(stack: Stack) -> None:
    # The user's own filter, uploaded with ManageSieve: it must keep running beside the reply.
    client = ManageSieve("127.0.0.1", stack.dovecot.sieve_port)
    try:
        client.login(AWAY, PASSWORD)
        client.put_active("mine", 'require "fileinto";\n'
                          'if header :contains "subject" "[filtered]" { fileinto "Junk"; }\n')
    finally:
        client.close()
    status, body = stack.api("PUT", f"/api/mailbox/{stack.mailbox_id}/vacation/", {
        "enabled": True, "subject": SUBJECT, "body": BODY, "interval_days": 7,
        "starts": "2000-01-01", "ends": "2999-12-31",
    })
    assert status == 200, body
    daemon = stack.lookupd.daemon
    assert daemon is not None
    wait_for(lambda: daemon.vacations.loaded and daemon.vacations.script(AWAY) is not None,
             "the vacation script in the lookup daemon", stack)

    send(stack, "bob@example.org", "first")
    wait_for(lambda: messages(stack, "bob"), "the vacation reply to bob", stack)
    send(stack, "bob@example.org", "second, within the period [filtered]")
    send(stack, "carol@example.org", "automatic", "Auto-Submitted: auto-generated\r\n")
    send(stack, "dave@example.org", "from a list", "List-Id: Friends <friends.example.org>\r\n")
    send(stack, "erin@example.org", "last")
    # Erin's reply comes after the messages before hers were delivered (one queue, in order).
    wait_for(lambda: messages(stack, "erin"), "the vacation reply to erin", stack)
    wait_for(lambda: len(messages(stack, "ann")) + len(messages(stack, "ann", "Junk")) == 5,
             "the five messages in the away mailbox", stack)

    (reply,) = messages(stack, "bob")
    assert reply["Subject"] == SUBJECT
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["To"].addresses[0].addr_spec == "bob@example.org"
    assert reply.get_content().replace("\r\n", "\n").strip() == BODY
    assert messages(stack, "carol") == [] and messages(stack, "dave") == []
    assert len(messages(stack, "erin")) == 1
    # The user's script ran after the vacation reply: the second message went to Junk.
    (filtered,) = messages(stack, "ann", "Junk")
    assert filtered["Subject"] == "second, within the period [filtered]"
    assert "from=<>" in stack.postfix.log_text()  # replies leave with the null sender
    # Mailboxes without a vacation (the senders) are no error for Sieve's dict storage either.
    errors = [line for line in stack.dovecot.log_text().splitlines() if "Error:" in line]
    assert errors == [], "\n".join(errors)


def test_vacation_removed_through_the_api_leaves_the_lookup_daemon(stack: Stack) -> None:
    status, _ = stack.api("DELETE", f"/api/mailbox/{stack.mailbox_id}/vacation/")
    assert status == 204
    daemon = stack.lookupd.daemon
    assert daemon is not None
    wait_for(lambda: daemon.vacations.script(AWAY) is None, "the script gone", stack)


# --- app passwords -------------------------------------------------------------------------------


def test_app_password_for_imap_only(stack: Stack) -> None:
    pw_id, secret = app_password(stack, "phone", ["imap"])
    assert imap_login_works(stack, AWAY, secret)
    assert imap_login_works(stack, AWAY, PASSWORD)  # the main password still works
    assert not submission_login_works(stack, AWAY, secret)
    assert submission_login_works(stack, AWAY, PASSWORD)
    assert not imap_login_works(stack, AWAY, secret + "x")
    assert not imap_login_works(stack, "bob@example.org", secret)  # another mailbox's

    async def last_used() -> Any:
        store = Store(stack.url)
        try:
            async with store.read() as conn:
                rows = await apppasswords.list_for(conn, EVERYTHING, stack.mailbox_id)
        finally:
            await store.close()
        return next(row["last_used"] for row in rows if row["id"] == pw_id)

    wait_for(lambda: asyncio.run(last_used()) is not None, "the last use written", stack)
    revoke(stack, pw_id)
    assert not imap_login_works(stack, AWAY, secret)


def test_app_password_for_pop3_only(stack: Stack) -> None:
    pw_id, secret = app_password(stack, "old phone", ["pop3"])
    assert pop3_login_works(stack, AWAY, secret)
    assert not imap_login_works(stack, AWAY, secret)
    assert not pop3_login_works(stack, AWAY, secret + "x")
    assert pop3_login_works(stack, AWAY, PASSWORD)  # the main password still works
    revoke(stack, pw_id)
    assert not pop3_login_works(stack, AWAY, secret)


def test_app_password_for_smtp_and_sieve(stack: Stack) -> None:
    pw_id, secret = app_password(stack, "mail client", ["smtp", "sieve"])
    assert submission_login_works(stack, AWAY, secret)
    assert not imap_login_works(stack, AWAY, secret)
    client = ManageSieve("127.0.0.1", stack.dovecot.sieve_port)
    try:
        client.login(AWAY, secret)
    finally:
        client.close()
    revoke(stack, pw_id)


def test_domain_requiring_app_passwords_refuses_the_main_password(stack: Stack) -> None:
    _, secret = app_password(stack, "tablet", ["imap"])
    require_app_passwords(stack, True)
    try:
        assert not imap_login_works(stack, AWAY, PASSWORD)
        assert not submission_login_works(stack, AWAY, PASSWORD)
        client = ManageSieve("127.0.0.1", stack.dovecot.sieve_port)
        try:
            with pytest.raises(ManageSieveError):
                client.login(AWAY, PASSWORD)
        finally:
            client.close()
        assert imap_login_works(stack, AWAY, secret)
    finally:
        require_app_passwords(stack, False)
    assert imap_login_works(stack, AWAY, PASSWORD)
