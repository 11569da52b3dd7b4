"""A real Postfix, configured with the shipped conf/postfix/main.cf lines, asks the lookup daemon
at RCPT TO: existing mailboxes, extensions, aliases, catch-alls and alias domains are accepted,
unknown users refused with 550, and a daemon without data makes Postfix say "try later"."""

from __future__ import annotations

import asyncio
import os
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from dinomail.store import EVERYTHING, Store, domains, mailboxes
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import PASSWORD_HASH, fill_mail_data
from tests.support.ports import free_port
from tests.support.postfix import PostfixInstance, have_postfix, postfix_folder

pytestmark = [
    pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starting Postfix needs root"),
]


@pytest.fixture
def socketmap_port() -> int:
    return free_port()


@pytest.fixture
def postfix(socketmap_port: int) -> Iterator[PostfixInstance]:
    with postfix_folder() as root:
        instance = PostfixInstance(
            root, smtp_port=free_port(), socketmap=f"inet:127.0.0.1:{socketmap_port}"
        )
        instance.start()
        try:
            yield instance
        finally:
            instance.stop()


def rcpt_replies(port: int, recipients: list[str]) -> dict[str, tuple[int, str]]:
    """The reply to RCPT TO for each recipient, in one SMTP session."""
    replies = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        for recipient in recipients:
            code, message = client.mail("sender@elsewhere.net")
            assert code == 250, message
            code, message = client.rcpt(recipient)
            replies[recipient] = (code, message.decode())
            client.rset()
    return replies


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_recipients_at_rcpt_to(
    store: Store, tmp_path: Path, postfix: PostfixInstance, socketmap_port: int
) -> None:
    await fill_mail_data(store)
    async with store.write() as conn:
        await domains.create(conn, "test", EVERYTHING, {"name": "plain.org"})
        await mailboxes.create(
            conn, "test", EVERYTHING, {"email": "frank@plain.org"}, password_hash=PASSWORD_HASH
        )
    async with running_lookupd(
        store, tmp_path, SOCKETMAP_LISTEN=f"127.0.0.1:{socketmap_port}"
    ):
        replies = await asyncio.to_thread(
            rcpt_replies, postfix.smtp_port,
            [
                "alice@example.org",  # a mailbox
                "Alice+tag@example.org",  # with an extension, in another case
                "info@example.org",  # a multi-destination alias
                "nobody@example.org",  # caught by the catch-all
                "alice@example.net",  # an alias domain
                "frank@plain.org",
                "ghost@plain.org",  # no such user, no catch-all
                "someone@not-ours.org",  # not our domain: no relaying
            ],
        )
    for accepted in ("alice@example.org", "Alice+tag@example.org", "info@example.org",
                     "nobody@example.org", "alice@example.net", "frank@plain.org"):
        assert replies[accepted][0] == 250, (accepted, replies[accepted], postfix.log_text())
    code, message = replies["ghost@plain.org"]
    assert code == 550 and message.startswith("5.1.1"), message
    assert "User unknown in virtual mailbox table" in message
    code, message = replies["someone@not-ours.org"]
    assert code == 554 and "Relay access denied" in message, message


async def test_no_snapshot_is_a_temporary_failure(
    tmp_path: Path, postfix: PostfixInstance, socketmap_port: int
) -> None:
    # The daemon listens, but its database never answers: it has no data to answer from.
    store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    try:
        async with running_lookupd(
            store, tmp_path, wait_loaded=False, SOCKETMAP_LISTEN=f"127.0.0.1:{socketmap_port}"
        ) as (daemon, _):
            replies = await asyncio.to_thread(
                rcpt_replies, postfix.smtp_port, ["alice@example.org"]
            )
            assert daemon.holder.current is None
    finally:
        await store.close()
    code, message = replies["alice@example.org"]
    assert code == 451 and message.startswith("4.3.0"), (code, message)
    assert "Temporary lookup failure" in message
