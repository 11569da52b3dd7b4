"""A real Postfix, configured with the shipped conf/postfix/main.cf lines, refuses a full
mailbox at RCPT TO with 552 5.2.2 (also through an extension, an alias or a catch-all) and
accepts every other recipient, asking lookupd's `recipient_access` socketmap once per
recipient. Mail from outside does not reach the policy service: that is the submission
service's (tests/test_mail_path.py: sending limits, counted at the end of data)."""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dinomail.store import Store, mailboxes
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import fill_mail_data
from tests.support.ports import free_port
from tests.support.postfix import PostfixInstance, have_postfix, postfix_folder

pytestmark = [
    pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix needs root"),
    pytest.mark.parametrize("store", ["sqlite"], indirect=True),
]


@pytest.fixture
def ports() -> dict[str, int]:
    return {"socketmap": free_port(), "policy": free_port()}


@pytest.fixture
def postfix(ports: dict[str, int]) -> Iterator[PostfixInstance]:
    with postfix_folder() as root:
        instance = PostfixInstance(
            root, smtp_port=free_port(),
            socketmap=f"inet:127.0.0.1:{ports['socketmap']}",
            policy=f"inet:127.0.0.1:{ports['policy']}",
        )
        instance.start()
        try:
            yield instance
        finally:
            instance.stop()


def smtp_session(port: int, recipients: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """The reply to RCPT TO for each recipient, each in its own transaction; then one message
    to the accepted ones, and the reply to its end of DATA."""
    replies = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        for recipient in recipients:
            client.mail("sender@elsewhere.net")
            code, message = client.rcpt(recipient)
            replies[recipient] = (code, message.decode())
            client.rset()
        accepted = [rcpt for rcpt, (code, _) in replies.items() if code == 250]
        client.mail("sender@elsewhere.net")
        for recipient in accepted:
            client.rcpt(recipient)
        code, _ = client.data(b"Subject: test\r\n\r\nHello.\r\n")
    return replies, code


async def test_full_mailbox_refused_at_rcpt_to(
    store: Store, tmp_path: Path, postfix: PostfixInstance, ports: dict[str, int]
) -> None:
    await fill_mail_data(store)  # alice's quota: 1,000,000 bytes; a catch-all goes to alice
    async with store.write() as conn:
        await mailboxes.record_usage(conn, {"alice@example.org": (1_000_500, 42)})
    async with running_lookupd(
        store, tmp_path,
        SOCKETMAP_LISTEN=f"127.0.0.1:{ports['socketmap']}",
        POLICY_LISTEN=f"127.0.0.1:{ports['policy']}",
    ) as (daemon, _):
        await wait_until(lambda: daemon.policy.tables.current is not None,
                         what="the full mailboxes")
        replies, data_code = await asyncio.to_thread(
            smtp_session, postfix.smtp_port,
            [
                "alice@example.org",  # full
                "Alice+tag@example.org",  # full, through an extension
                "alice@example.net",  # full, through the alias domain
                "nobody@example.org",  # full, through the catch-all
                "bob@example.org",  # room to spare
                "info@example.org",  # alice and bob@elsewhere.net: not refused for alice
                "eve@xn--bcher-kva.example",
            ],
        )
        daemon.metrics.flush()
        asked: Counter[tuple[str, str]] = Counter()
        for metric in daemon.metrics.registry.collect():
            if metric.name == "dinomail_lookupd_lookups":
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        asked[(sample.labels["protocol"], sample.labels["map"])] += sample.value
    log = postfix.log_text()
    # Once per RCPT TO (7, then the 3 accepted again in one message): DUNNO is found, so
    # Postfix asks neither the domain nor `user@` after it.
    assert asked[("socketmap", "recipient_access")] == 10, asked
    assert sum(value for (protocol, _), value in asked.items() if protocol == "policy") == 0
    for full in ("alice@example.org", "Alice+tag@example.org", "alice@example.net",
                 "nobody@example.org"):
        code, message = replies[full]
        assert (code, message[:5]) == (552, "5.2.2"), (full, replies[full], log)
        assert "Mailbox full" in message
    for accepted in ("bob@example.org", "info@example.org", "eve@xn--bcher-kva.example"):
        assert replies[accepted][0] == 250, (accepted, replies[accepted], log)
    assert data_code == 250, log
    assert "problem talking to server" not in log
