"""The store's list windows: keyset pages equal offset pages, in every order, on both databases;
totals exact up to the limit; and the small queries the admin API adds (usage, key pruning)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dinomail.schema import virtualuser
from dinomail.store import (
    EVERYTHING,
    Scope,
    Store,
    admins,
    apikeys,
    audit,
    common,
    limits,
    mailboxes,
)
from dinomail.store.common import ListRequest
from tests.support.adminapi import add_admin, add_domain, add_mailbox, fast_admin_hashing


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _fill(store: Store) -> None:
    await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    for number in range(23):
        await add_mailbox(store, f"user{number:02}@{'ab'[number % 2]}.org", quota=number % 3)
    # A NULL quota (allowed by the original), written as an admin would by hand.
    async with store.engine.begin() as conn:
        await conn.execute(sa.update(virtualuser).where(virtualuser.c.id == 5).values(quota=None))


async def _walk(store: Store, **options: Any) -> list[str]:
    """Every email of the list, page after page through the cursor."""
    seen: list[str] = []
    after = None
    while True:
        async with store.read() as conn:
            window = await mailboxes.list_window(
                conn, EVERYTHING, ListRequest(limit=4, after=after, **options))
        seen += [row["email"] for row in window.rows]
        if window.next_after is None:
            return seen
        after = window.next_after


@pytest.mark.parametrize(
    ("order_by", "descending"),
    [("id", False), ("id", True), ("email", True), ("quota", False), ("quota", True)],
)
async def test_keyset_pages_match_one_big_page(
    store: Store, order_by: str, descending: bool
) -> None:
    await _fill(store)
    async with store.read() as conn:
        whole = await mailboxes.list_window(
            conn, EVERYTHING, ListRequest(order_by=order_by, descending=descending, limit=1000)
        )
    expected = [row["email"] for row in whole.rows]
    assert len(expected) == 23 and whole.next_after is None
    assert await _walk(store, order_by=order_by, descending=descending) == expected
    if order_by == "quota":
        quotas = [row["quota"] or 0 for row in whole.rows]
        assert quotas == sorted(quotas, reverse=descending)


async def test_offset_pages_and_filters(store: Store) -> None:
    await _fill(store)
    async with store.read() as conn:
        page = await mailboxes.list_window(conn, EVERYTHING, ListRequest(limit=5, offset=20))
        filtered = await mailboxes.list_window(
            conn, EVERYTHING, ListRequest(domain_id=2, q="user1", limit=9))
        scoped = await mailboxes.list_window(conn, Scope(frozenset({1})), ListRequest(limit=100))
    assert [row["id"] for row in page.rows] == [21, 22, 23] and page.next_after is None
    assert [row["email"] for row in filtered.rows] == [
        "user11@b.org", "user13@b.org", "user15@b.org", "user17@b.org", "user19@b.org"]
    assert filtered.total_count == 5 and filtered.count_is_exact
    assert {row["domain_id"] for row in scoped.rows} == {1} and scoped.total_count == 12


async def test_counts_are_exact_up_to_the_limit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(store)
    monkeypatch.setattr(common, "EXACT_COUNT_LIMIT", 10)
    async with store.read() as conn:
        few = await mailboxes.list_window(conn, EVERYTHING, ListRequest(q="user0", limit=1))
        many = await mailboxes.list_window(conn, EVERYTHING, ListRequest(limit=1))
    assert (few.total_count, few.count_is_exact) == (10, True)
    if store.dialect == "postgresql":
        assert many.count_is_exact is False and many.total_count >= 11
    else:
        assert (many.total_count, many.count_is_exact) == (23, True)


async def test_usage_of_domains(store: Store) -> None:
    await _fill(store)
    async with store.write() as conn:
        await mailboxes.record_usage(conn, {"user00@a.org": (100, 2), "user01@b.org": (7, 1)})
    async with store.read() as conn:
        used = await limits.usage(conn, [1, 2, 99])
    assert used[1] == {"mailboxes": 12, "aliases": 0, "quota_allocated": 11,
                       "quota_used_bytes": 100, "quota_used_messages": 2}
    assert used[2]["mailboxes"] == 11 and used[2]["quota_used_bytes"] == 7
    assert used[99]["mailboxes"] == 0


async def test_login_key_is_derived_stored_hashed_and_regenerated(store: Store) -> None:
    account = await add_admin(store, "root")
    async with store.read() as conn:
        row = await admins.get(conn, account.id)
    async with store.write() as conn:
        first, secret = await apikeys.login_key(conn, "t", row, "secret key")
        again, same = await apikeys.login_key(conn, "t", row, "secret key")
    assert (again["id"], same) == (first["id"], secret)
    assert secret == apikeys.login_secret("secret key", row, 1) and first["generation"] == 1
    async with store.read() as conn:
        stored = (await conn.execute(sa.text("SELECT * FROM dinomail_apikey"))).mappings().all()
    # Only the hash is stored: the database alone does not give the key.
    assert secret not in str([dict(r) for r in stored])
    async with store.write() as conn:
        await apikeys.revoke(conn, "t", account.id, first["id"])
        second, new_secret = await apikeys.login_key(conn, "t", row, "secret key")
        assert await apikeys.authenticate(conn, secret) is None
        assert await apikeys.authenticate(conn, new_secret) is not None
    assert second["generation"] == 2 and new_secret != secret
    async with store.read() as conn:
        window = await apikeys.list_window(conn, account.id, limit=10)
        entry = await audit.get(conn, EVERYTHING, 1)
        with pytest.raises(common.NotFound):
            await audit.get(conn, Scope(frozenset({1})), 1)
    live = {r["id"] for r in window.rows if r["revoked_at"] is None}
    assert live == {account.key_id, second["id"]}
    assert entry["id"] == 1
