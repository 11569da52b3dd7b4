"""The whole mail path, end to end: a real Postfix and a real Dovecot, configured from the
shipped conf/ (only paths and ports adapted), both served by the real lookup daemon (on SQLite).

Mail sent with smtplib is delivered by Postfix over LMTP to Dovecot and read back over IMAP:
to a mailbox, to `mailbox+tag`, to a multi-destination alias, to a catch-all and to an
alias-domain address. An unknown user is refused at RCPT TO; an authenticated submission (SASL
through Dovecot's auth socket) from an address the login does not own is refused; a sending
limit defers the message after the limit; a mailbox that Dovecot's quota_clone reports full is
refused at RCPT TO; repeated wrong IMAP passwords get one client blocked while another still
logs in.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dinomail import migrate
from dinomail.passwords import hash_password
from dinomail.store import EVERYTHING, Store, aliasdomains, aliases, domains, mailboxes, policy
from tests.support.dovecot import (
    DovecotInstance,
    LookupdThread,
    have_dovecot,
    lookupd_settings_for_dovecot,
    make_root,
)
from tests.support.ports import free_port
from tests.support.postfix import PostfixInstance, have_postfix
from tests.support.tls import write_self_signed

pytestmark = [
    pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
    pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix and Dovecot needs root"),
]

PASSWORD = "Secret-123"
SENDER = "sender@elsewhere.net"
LIMITED = "carol@example.org"
MESSAGES_PER_HOUR = 2
SMALL = "dora@example.org"
SMALL_QUOTA = 20_000
# IMAP clients connect from addresses of their own on the loopback network: the guesser from
# one, the other client from another. 127.0.0.1 (Postfix's SASL requests, doveadm) stays in
# AUTH_POLICY_ALLOW_NETWORKS, so the other tests' logins are never counted.
GUESSER = "127.0.0.2"
OTHER_CLIENT = "127.0.0.3"
# Dovecot itself delays each login after a failed one from the same address (2, 4, 8 s...):
# two failures are enough to show the block, and keep the test short.
BLOCK_AFTER = 2
TIMEOUT = 20.0


@dataclass
class Stack:
    root: Path
    lookupd: LookupdThread
    postfix: PostfixInstance
    dovecot: DovecotInstance

    def logs(self) -> str:
        return f"--- postfix\n{self.postfix.log_text()}\n--- dovecot\n{self.dovecot.log_text()}"


async def fill(store: Store) -> None:
    async with store.write() as conn:
        example = await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
        await domains.create(conn, "test", EVERYTHING, {"name": "catchall.org"})
        ids = {}
        for email, quota in (("alice@example.org", None), ("bob@example.org", None),
                             (LIMITED, None), (SMALL, SMALL_QUOTA)):
            row = await mailboxes.create(
                conn, "test", EVERYTHING, {"email": email, "quota": quota},
                password_hash=hash_password(PASSWORD, "SHA512-CRYPT"),
            )
            ids[email] = row["id"]
        for source, destination in (
            ("team@example.org", "alice@example.org"),
            ("team@example.org", "bob@example.org"),
            ("@catchall.org", "alice@example.org"),
        ):
            await aliases.create(
                conn, "test", EVERYTHING, {"source": source, "destination": destination}
            )
        await aliasdomains.create(
            conn, "test", EVERYTHING, {"name": "example.net", "target_domain_id": example["id"]}
        )
        await policy.set_mailbox_limits(
            conn, "test", EVERYTHING, ids[LIMITED], {"messages_per_hour": MESSAGES_PER_HOUR}
        )


async def migrate_database(url: str) -> None:
    store = Store(url)
    try:
        await migrate.upgrade(store.engine)
    finally:
        await store.close()


def start_stack(root: Path, stops: list[Callable[[], None]]) -> Stack:
    """Everything started; `stops` gets how to stop each part as soon as it runs, so a step
    that fails leaves nothing behind."""
    url = f"sqlite:///{root / 'dinomail.sqlite3'}"
    asyncio.run(migrate_database(url))
    settings = lookupd_settings_for_dovecot(
        root, url,
        # Small intervals: limits, usage and counts reach the policy service within a second.
        POLICY_REFRESH_INTERVAL="0.2", POLICY_FLUSH_INTERVAL="0.2", POLICY_SYNC_INTERVAL="0.2",
        AUTH_POLICY_ALLOW_NETWORKS="127.0.0.1/32",
        AUTH_POLICY_IP_BLOCK_AFTER=str(BLOCK_AFTER), AUTH_POLICY_IP_TARPIT_AFTER="0",
        AUTH_POLICY_LOGIN_BLOCK_AFTER="0", AUTH_POLICY_LOGIN_TARPIT_AFTER="0",
    )
    lookupd = LookupdThread(settings)
    stops.append(lookupd.stop)
    lookupd.start()
    lookupd.call(fill)
    daemon = lookupd.daemon
    assert daemon is not None
    lookupd.wait_until(
        lambda: daemon.holder.current is not None
        and daemon.holder.current.row_counts()["mailboxes"] == 4,
        "the mailboxes in the snapshot",
    )
    lookupd.wait_until(lambda: daemon.policy.ready, "the policy data")

    postfix = PostfixInstance(
        root / "postfix", smtp_port=free_port(), submission_port=free_port(),
        socketmap=f"inet:{settings.SOCKETMAP_LISTEN}", policy=f"inet:{settings.POLICY_LISTEN}",
    )
    stops.append(postfix.stop)
    postfix.start()
    # Postfix made its private folder; Dovecot puts its LMTP and SASL sockets there.
    dovecot = DovecotInstance(
        root, dict_socket=settings.dict_listen.removeprefix("unix:"), imap_port=free_port(),
        lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}", postfix_private=postfix.private,
        auth_policy=True, tls=write_self_signed(root / "dovecot-tls"),
    )
    stops.append(dovecot.stop)
    dovecot.start()
    return Stack(root, lookupd, postfix, dovecot)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = make_root("dinomail-mail-path-")
    stops: list[Callable[[], None]] = []
    try:
        yield start_stack(root, stops)
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(root, ignore_errors=True)


# --- clients -------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, stack: Stack,
             timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{stack.logs()}")
        time.sleep(0.05)


def message(sender: str, recipient: str, subject: str, body: str = "Hello.") -> bytes:
    return (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@client.example>\r\n\r\n{body}\r\n"
    ).encode()


def unverified_tls() -> ssl.SSLContext:
    """For the test's self-signed certificates: nothing to verify them against."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def inbound(stack: Stack, source: str = "127.0.0.1") -> smtplib.SMTP:
    """An SMTP session on Postfix's port 25, as another mail server would open."""
    client = smtplib.SMTP("127.0.0.1", stack.postfix.smtp_port, timeout=30,
                          source_address=(source, 0))
    client.ehlo("client.example")
    return client


def submission(stack: Stack, login: str, password: str = PASSWORD,
               source: str = "127.0.0.1") -> smtplib.SMTP:
    """An authenticated session on the shipped submission service: STARTTLS, then AUTH,
    which Postfix hands to Dovecot's SASL socket."""
    port = stack.postfix.submission_port
    assert port is not None
    client = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        client.ehlo("client.example")
        client.starttls(context=unverified_tls())
        client.ehlo("client.example")
        # PLAIN only: smtplib.login would try LOGIN after a refusal, a second failure that
        # Dovecot makes wait.
        client.user, client.password = login, password
        client.auth("PLAIN", client.auth_plain)
    except BaseException:
        client.close()
        raise
    return client


def send(client: smtplib.SMTP, sender: str, recipient: str, subject: str,
         body: str = "Hello.") -> tuple[int, str]:
    """One message in the session; the reply to RCPT TO, or to the end of DATA once accepted."""
    code, reply = client.mail(sender)
    assert code == 250, reply
    code, reply = client.rcpt(recipient)
    if code != 250:
        client.rset()
        return code, reply.decode()
    code, reply = client.data(message(sender, recipient, subject, body))
    return code, reply.decode()


class IMAP4From(imaplib.IMAP4):
    """IMAP from a chosen loopback source address (imaplib has no parameter for it)."""

    def __init__(self, host: str, port: int, source: str, timeout: float) -> None:
        self.source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def imap_login(stack: Stack, login: str, password: str, source: str) -> None:
    """A login from another machine: STARTTLS first (the shipped `ssl = required`)."""
    with IMAP4From("127.0.0.1", stack.dovecot.imap_port, source, timeout=30) as imap:
        imap.starttls(unverified_tls())
        imap.login(login, password)
        imap.logout()


def subjects(stack: Stack, login: str) -> list[str]:
    """The subjects of the messages in the mailbox's INBOX, read over IMAP (without TLS:
    Dovecot counts a connection from its own address as secure, as for a local webmail)."""
    with imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port, timeout=30) as imap:
        imap.login(login, PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        found = []
        for number in data[0].split():
            _, parts = imap.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            header = parts[0][1].decode() if isinstance(parts[0], tuple) else ""
            found.append(header.strip().removeprefix("Subject:").strip())
        imap.logout()
    return found


def wait_for_subjects(stack: Stack, login: str, token: str, expected: set[str]) -> None:
    """Until the mailbox holds exactly `expected` among its messages marked with `token`."""
    def marked() -> set[str]:
        return {subject for subject in subjects(stack, login) if subject.endswith(token)}

    wait_for(lambda: marked() == expected, f"{sorted(expected)} in {login}", stack)


# --- delivery ------------------------------------------------------------------------------------


def test_mail_is_delivered_over_lmtp_and_read_over_imap(stack: Stack) -> None:
    token = uuid.uuid4().hex[:8]
    cases = {
        "alice@example.org": "mailbox",
        "Alice+tag@example.org": "extension",
        "team@example.org": "alias",  # alice and bob
        "whoever@catchall.org": "catch-all",  # alice
        "bob@example.net": "alias domain",  # bob@example.org
    }
    with inbound(stack) as client:
        for recipient, case in cases.items():
            assert send(client, SENDER, recipient, f"{case} {token}")[0] == 250, stack.logs()
    wait_for_subjects(stack, "alice@example.org", token, {
        f"{case} {token}" for case in ("mailbox", "extension", "alias", "catch-all")
    })
    wait_for_subjects(stack, "bob@example.org", token, {
        f"{case} {token}" for case in ("alias", "alias domain")
    })
    log = stack.postfix.log_text()
    assert "relay=" in log and "dovecot-lmtp" in log and "status=sent" in log, log


def test_unknown_user_refused_at_rcpt_to(stack: Stack) -> None:
    with inbound(stack) as client:
        for unknown in ("nobody@example.org", "nobody@example.net"):
            client.mail(SENDER)
            code, reply = client.rcpt(unknown)
            assert (code, reply[:5]) == (550, b"5.1.1"), (unknown, reply, stack.logs())
            client.rset()
        client.mail(SENDER)
        assert client.rcpt("bob@example.org")[0] == 250  # the same session accepts a mailbox


# --- submission ----------------------------------------------------------------------------------


def test_submission_refuses_a_sender_the_login_does_not_own(stack: Stack) -> None:
    token = uuid.uuid4().hex[:8]
    with submission(stack, "bob@example.org") as client:
        # reject_sender_login_mismatch, answered at RCPT TO (smtpd_delay_reject).
        code, reply = send(client, "alice@example.org", "alice@example.org", f"forged {token}")
        assert code == 553, (reply, stack.logs())
        assert reply.startswith("5.7.1") and "not owned by user bob@example.org" in reply
        # The senders map: bob owns his mailbox and the alias that delivers to him.
        for sender in ("bob@example.org", "team@example.org"):
            code, reply = send(client, sender, "alice@example.org", f"from {sender} {token}")
            assert code == 250, (sender, reply, stack.logs())
    wait_for_subjects(stack, "alice@example.org", token, {
        f"from {sender} {token}" for sender in ("bob@example.org", "team@example.org")
    })
    assert "sasl_method=PLAIN, sasl_username=bob@example.org" in stack.postfix.log_text()


def test_submission_needs_the_right_password(stack: Stack) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        # From an address of its own: Dovecot delays further logins after a failure, per client.
        submission(stack, "bob@example.org", "not-the-password", source="127.0.0.4").close()
    assert refused.value.smtp_code == 535, stack.logs()


def test_sending_limit_defers_the_message_after_the_limit(stack: Stack) -> None:
    token = uuid.uuid4().hex[:8]
    with submission(stack, LIMITED) as client:
        for number in range(MESSAGES_PER_HOUR):
            code, reply = send(client, LIMITED, "alice@example.org", f"limited {number} {token}")
            assert code == 250, (number, reply, stack.logs())
        # Deferred at RCPT TO already, before the client sends the message.
        client.mail(LIMITED)
        code, reply = client.rcpt("alice@example.org")
        assert (code, reply[:5]) == (450, b"4.7.1"), (reply, stack.logs())
    with submission(stack, "bob@example.org") as client:  # another sender is not limited
        assert send(client, "bob@example.org", "alice@example.org", f"bob {token}")[0] == 250
    wait_for_subjects(stack, "alice@example.org", token, {
        *(f"limited {number} {token}" for number in range(MESSAGES_PER_HOUR)), f"bob {token}"
    })


# --- full mailboxes ------------------------------------------------------------------------------


def stored_usage(stack: Stack, email: str) -> int:
    async def usage(store: Store) -> int:
        async with store.read() as conn:
            row = await mailboxes.get_by_email(conn, EVERYTHING, email)
        return int(row["quota_used_bytes"])

    return stack.lookupd.call(usage)


def rcpt_reply(stack: Stack, recipient: str) -> tuple[int, str]:
    with inbound(stack) as client:
        client.mail(SENDER)
        code, reply = client.rcpt(recipient)
    return code, reply.decode()


def test_full_mailbox_refuses_mail(stack: Stack) -> None:
    # One message a little over the quota fills the mailbox: Dovecot stores it (quota_grace,
    # 10 % by default, lets the last message of a mailbox under its quota pass), quota_clone
    # reports the usage, the lookup daemon writes it and reads it back for the recipient_access
    # map that port 25 asks.
    token = uuid.uuid4().hex[:8]
    line = "x" * 76 + "\r\n"
    body = line * (SMALL_QUOTA // len(line) + 1)
    assert rcpt_reply(stack, SMALL)[0] == 250, stack.logs()
    with inbound(stack) as client:
        assert send(client, SENDER, SMALL, f"filler {token}", body)[0] == 250
    wait_for_subjects(stack, SMALL, token, {f"filler {token}"})
    wait_for(lambda: stored_usage(stack, SMALL) >= SMALL_QUOTA, "the usage in the database",
             stack)
    wait_for(lambda: rcpt_reply(stack, SMALL)[0] != 250, "the refusal at RCPT TO", stack)
    for recipient in (SMALL, "Dora+tag@example.org", "dora@example.net"):
        code, reply = rcpt_reply(stack, recipient)
        assert (code, reply[:5]) == (552, "5.2.2"), (recipient, reply, stack.logs())
    assert rcpt_reply(stack, "bob@example.org")[0] == 250  # the others still get mail


# --- failed logins -------------------------------------------------------------------------------


def auth_policy_blocked_clients(stack: Stack) -> str:
    daemon = stack.lookupd.daemon
    assert daemon is not None
    text = daemon.metrics.exposition().decode()
    return next(line for line in text.splitlines()
                if line.startswith('dinomail_lookupd_auth_policy_blocked{kind="client"}'))


def test_wrong_imap_passwords_block_the_client_while_another_logs_in(stack: Stack) -> None:
    login = "alice@example.org"
    imap_login(stack, login, PASSWORD, source=GUESSER)  # not blocked to begin with
    for number in range(BLOCK_AFTER):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap_login(stack, login, f"guess-{number}", source=GUESSER)
    assert auth_policy_blocked_clients(stack).endswith(" 1.0"), stack.logs()
    # Another client logs in to the same mailbox meanwhile...
    imap_login(stack, login, PASSWORD, source=OTHER_CLIENT)
    # ...and the guesser stays blocked: even the right password is refused from there now.
    with pytest.raises(imaplib.IMAP4.error) as refused:
        imap_login(stack, login, PASSWORD, source=GUESSER)
    assert "Too many failed logins" in str(refused.value), stack.logs()
    assert "Authentication failure due to policy server refusal" in stack.dovecot.log_text()
