"""A change made in the admin pages is answered by the socketmap at once, without restarting
anything (pages and lookup daemon in one process, as `dinomail serve` runs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomail.store import Store, admins
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.lookupd import running_lookupd
from tests.support.pages import log_in, pages_client
from tests.support.socketmap_client import answer_becomes


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def test_page_changes_reach_the_socketmap(store: Store, tmp_path: Path) -> None:
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
    async with running_lookupd(store, tmp_path) as (_, settings), pages_client(store) as client:
        listen = settings.SOCKETMAP_LISTEN
        browser = await log_in(client, "root")
        for url, form in (
            ("/virtual-domains/new", {"name": "shop.example", "active": "on"}),
            ("/virtual-users/new", {
                "domain": "shop.example", "email": "anna@shop.example", "quota": "1 GB",
                "active": "on", "password": "a password", "password_confirm": "a password"}),
            ("/virtual-aliases/new", {
                "source": "sales@shop.example", "destination": "anna@shop.example"}),
        ):
            answer = await browser.post(url, form)
            assert answer.status_code == 303, answer.text[:500]
        await answer_becomes(listen, "domains", "shop.example", "OK shop.example")
        await answer_becomes(listen, "mailboxes", "anna@shop.example", "OK shop.example/anna/")
        await answer_becomes(listen, "aliases", "sales@shop.example", "OK anna@shop.example")
