"""The Dovecot dict proxy server in the test's event loop, answering from a small snapshot, with
a quota writer that only records what it is given.

`holder`, `quota`, `metrics` and `server` are fixtures of every test module (tests/conftest.py
loads this one as a plugin); a module's own fixture of the same name takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dinomail.records import AliasDomainRow, DomainRow, MailboxRow, MailData
from lookupd.dovecot.auth import UserdbSettings
from lookupd.dovecot.dict import DictServer, start_dict_server
from lookupd.metrics import LookupdMetrics
from lookupd.quota import QuotaWriter, Usage
from lookupd.refresher import SnapshotHolder
from lookupd.snapshot import Snapshot

USERDB = UserdbSettings(home="/var/vmail/%d/%n", uid=5000, gid=5001)


def mail_data() -> MailData:
    return MailData(
        domains=[
            DomainRow(1, "example.com", True),
            DomainRow(2, "off.example", False),
        ],
        alias_domains=[AliasDomainRow(1, "alias.example", 1, True)],
        mailboxes=[
            MailboxRow(1, 1, "alice@example.com", "{SHA512-CRYPT}$6$salt$hash", 1_000_000, True),
            MailboxRow(2, 1, "bob@example.com", "{SSHA512}abc", None, True),
            MailboxRow(3, 1, "carol@example.com", "{SSHA512}def", 0, False),
            MailboxRow(4, 2, "dave@off.example", "{SSHA512}ghi", None, True),
            MailboxRow(5, 1, "a/maildir@example.com", "{SSHA512}jkl", None, True),
        ],
        aliases=[],
    )


class Recorder(QuotaWriter):
    """A quota writer that only keeps what it is given (no database)."""

    def __init__(self) -> None:
        self.accepted: list[tuple[str, Usage]] = []

    def accept(self, email: str, usage: Usage) -> None:
        self.accepted.append((email, usage))


@pytest.fixture
def holder() -> SnapshotHolder:
    return SnapshotHolder(current=Snapshot.build(mail_data()))


@pytest.fixture
def quota() -> Recorder:
    return Recorder()


@pytest.fixture
def metrics() -> LookupdMetrics:
    return LookupdMetrics()


@pytest.fixture
async def server(
    tmp_path: Path, holder: SnapshotHolder, quota: Recorder, metrics: LookupdMetrics
) -> AsyncIterator[DictServer]:
    server = await start_dict_server(
        f"unix:{tmp_path / 'dict.sock'}", lambda: holder.current, userdb=USERDB,
        quota_writer=quota, metrics=metrics,
    )
    yield server
    server.close()
    await server.wait_closed(timeout=1.0)
