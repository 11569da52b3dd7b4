"""A change made through the admin API is answered by the socketmap at once, without
restarting anything (the API and the lookup daemon share one process, as in `serve`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomail.store import Store
from tests.support.adminapi import add_admin, api_client, fast_admin_hashing
from tests.support.lookupd import running_lookupd
from tests.support.socketmap_client import answer_becomes


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def test_api_changes_reach_the_socketmap(store: Store, tmp_path: Path) -> None:
    root = await add_admin(store, "root", superadmin=True)
    async with running_lookupd(store, tmp_path) as (_, settings), api_client(store) as api:
        listen = settings.SOCKETMAP_LISTEN
        domain = await api.post(
            "/api/virtualdomain/", json={"name": "nanoy.fr"}, headers=root.headers
        )
        assert domain.status_code == 201
        user = await api.post(
            "/api/virtualuser/",
            json={"email": "test@nanoy.fr", "domain": domain.headers["location"],
                  "password": "s3cret passphrase", "quota": 1000},
            headers=root.headers,
        )
        assert user.status_code == 201, user.text
        alias = await api.post(
            "/api/virtualalias/",
            json={"source": "postmaster@nanoy.fr", "destination": "test@nanoy.fr",
                  "domain": domain.headers["location"]},
            headers=root.headers,
        )
        assert alias.status_code == 201, alias.text
        await answer_becomes(listen, "domains", "nanoy.fr", "OK nanoy.fr")
        await answer_becomes(listen, "mailboxes", "test@nanoy.fr", "OK nanoy.fr/test/")
        await answer_becomes(listen, "aliases", "postmaster@nanoy.fr", "OK test@nanoy.fr")

        deleted = await api.delete(alias.headers["location"], headers=root.headers)
        assert deleted.status_code == 204
        await answer_becomes(listen, "aliases", "postmaster@nanoy.fr", "NOTFOUND ")
