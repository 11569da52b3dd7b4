"""The socketmap `recipient_access` (Postfix's check_recipient_access on port 25): the quota
reply for a recipient whose one mailbox is full, DUNNO (found, so Postfix asks nothing more)
for every other key, a temporary failure until the full mailboxes are loaded. The same rule as
the policy service's, over a real socketmap connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lookupd.metrics import LookupdMetrics
from lookupd.policy.tables import PolicyTables
from lookupd.recipient_access import RecipientAccess
from lookupd.snapshot import Snapshot
from lookupd.socketmap import SocketmapServer, start_socketmap_server
from tests.support.policy_requests import snapshot
from tests.support.socketmap_client import socketmap_query

FULL = "OK 552 5.2.2 Mailbox full"
DUNNO = "OK DUNNO"


class Tables:
    def __init__(self, current: PolicyTables | None) -> None:
        self.current = current


@pytest.fixture
def tables() -> Tables:
    return Tables(PolicyTables(full_mailboxes={1: 1000, 3: 5000}))


@pytest.fixture
def metrics() -> LookupdMetrics:
    return LookupdMetrics()


@pytest.fixture
async def listen(tables: Tables, metrics: LookupdMetrics) -> AsyncIterator[str]:
    server: SocketmapServer = await start_socketmap_server(
        "127.0.0.1:0", snapshot, metrics=metrics,
        recipient_access=RecipientAccess(lambda: tables.current, metrics=metrics),
    )
    yield str(server.address)
    server.close()
    await server.wait_closed(timeout=1.0)


@pytest.mark.parametrize(
    ("key", "reply"),
    [
        ("alice@example.org", FULL),
        ("Alice+folder@Example.ORG", FULL),  # extension and case
        ("alice@example.net", FULL),  # alias domain
        ("info@example.org", FULL),  # an alias to alice alone
        ("team@example.org", DUNNO),  # alice and bob: bob still wants it
        ("bob@example.org", DUNNO),
        ("carol@other.org", DUNNO),  # no quota
        ("someone@far.example", DUNNO),  # not ours: the search ends here too
        ("nobody@example.org", DUNNO),  # unknown: smtpd_reject_unlisted_recipient refuses it
        ("example.org", DUNNO),  # not an address
    ],
)
async def test_full_mailbox_refused_everything_else_dunno(
        listen: str, metrics: LookupdMetrics, key: str, reply: str) -> None:
    assert await socketmap_query(listen, "recipient_access", key) == reply
    refused = metrics.registry.get_sample_value("dinomail_lookupd_recipient_access_refusals_total")
    assert refused == (1.0 if reply == FULL else 0.0)


async def test_without_full_mailboxes_mail_goes_on_without_snapshot_it_waits(
        tables: Tables, metrics: LookupdMetrics) -> None:
    """Full mailboxes not loaded (the database away since the start): DUNNO, the maps let the
    mail in and Dovecot applies the quota. No snapshot at all: a temporary failure."""
    tables.current = None
    loaded: list[Snapshot | None] = [snapshot()]
    server = await start_socketmap_server(
        "127.0.0.1:0", lambda: loaded[0], metrics=metrics,
        recipient_access=RecipientAccess(lambda: tables.current),
    )
    try:
        listen = str(server.address)
        assert await socketmap_query(listen, "recipient_access", "alice@example.org") == DUNNO
        loaded[0] = None
        reply = await socketmap_query(listen, "recipient_access", "alice@example.org")
        assert reply.startswith("TEMP "), reply
        loaded[0] = snapshot()
        tables.current = PolicyTables(full_mailboxes={1: 1000})
        assert await socketmap_query(listen, "recipient_access", "alice@example.org") == FULL
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)

    def value(result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "dinomail_lookupd_lookups_total",
            {"protocol": "socketmap", "map": "recipient_access", "result": result},
        )

    assert (value("ok"), value("temp")) == (2.0, 1.0)


async def test_quota_switch_and_reply_setting() -> None:
    tables = PolicyTables(full_mailboxes={1: 1000})
    snap = snapshot()
    assert RecipientAccess(lambda: tables, check_quota=False)(snap, "alice@example.org") == (
        "DUNNO")
    assert RecipientAccess(lambda: None, check_quota=False)(snap, "alice@example.org") == (
        "DUNNO")
    custom = RecipientAccess(lambda: tables, quota_reply="452 4.2.2 Mailbox full, try later")
    assert custom(snap, "alice@example.org") == "452 4.2.2 Mailbox full, try later"


async def test_a_server_without_it_names_the_maps_it_has() -> None:
    server = await start_socketmap_server("127.0.0.1:0", snapshot)
    try:
        reply = await socketmap_query(str(server.address), "recipient_access", "a@example.org")
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)
    assert reply.startswith("PERM unknown map name") and "recipient_access" not in reply
