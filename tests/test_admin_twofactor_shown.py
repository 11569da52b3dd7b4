"""`/api/admin/` says which second factors each admin logs in with (an authenticator app, how
many passkeys), read-only and without any secret; the OpenAPI document describes it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from dinomail import migrate, totp
from dinomail.store import EVERYTHING, Store, admins, apikeys, domains, twofactor
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.page_client import pages_client


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path / 'dinomail.sqlite3'}")
    await migrate.upgrade(store.engine)
    yield store
    await store.close()


async def test_admin_objects_show_their_second_factors(store: Store) -> None:
    async with store.write() as conn:
        nanoy = await domains.create(conn, "test", EVERYTHING, {"name": "nanoy.fr"})
        root = await admins.create(conn, "test", username="root", password=PASSWORD,
                                   is_superadmin=True)
        alice = await admins.create(conn, "test", username="alice", password=PASSWORD,
                                    domain_ids=[nanoy["id"]])
        bob = await admins.create(conn, "test", username="bob", password=PASSWORD,
                                  domain_ids=[nanoy["id"]])
        carol = await admins.create(conn, "test", username="carol", password=PASSWORD)
        _, key = await apikeys.create(conn, "test", root["id"], name="script")
        # Alice: a confirmed app and two passkeys; bob: one passkey; carol: an app whose first
        # code never came (not a second factor yet); root: nothing.
        secret = await twofactor.start_totp(conn, alice["id"])
        await twofactor.confirm_totp(conn, "test", alice["id"],
                                     totp.code_at(secret, totp.time_step(time.time())))
        for index, owner in enumerate((alice, alice, bob)):
            await twofactor.add_passkey(
                conn, "test", owner["id"], name=f"key {index}",
                credential_id=f"Y3JlZGVudGlhbC0{index}", public_key="pQECAyYgASFYIGNvc2U",
                sign_count=0)
        await twofactor.start_totp(conn, carol["id"])
    headers = {"Authorization": f"ApiKey root:{key}"}
    expected = {"root": (False, 0), "alice": (True, 2), "bob": (False, 1), "carol": (False, 0)}
    async with pages_client(store) as client:
        listed = await client.get("/api/admin/", headers=headers)
        assert listed.status_code == 200
        shown = {item["username"]: (item["totp_enabled"], item["passkey_count"])
                 for item in listed.json()["objects"]}
        assert shown == expected
        one = await client.get(f"/api/admin/{alice['id']}/", headers=headers)
        assert (one.json()["totp_enabled"], one.json()["passkey_count"]) == (True, 2)
        assert secret not in one.text

        # Read-only: given on a write, they change nothing.
        patched = await client.patch(f"/api/admin/{bob['id']}/", headers=headers,
                                     json={"totp_enabled": True, "passkey_count": 7,
                                           "email": "bob@nanoy.fr"})
        assert patched.status_code in (200, 202), patched.text
        again = (await client.get(f"/api/admin/{bob['id']}/", headers=headers)).json()
        assert (again["email"], again["totp_enabled"], again["passkey_count"]) == (
            "bob@nanoy.fr", False, 1)
        created = await client.post("/api/admin/", headers=headers, json={
            "username": "dave", "password": PASSWORD, "totp_enabled": True})
        assert created.status_code == 201, created.text
        dave = (await client.get("/api/admin/", headers=headers)).json()["objects"]
        assert [(item["totp_enabled"], item["passkey_count"]) for item in dave
                if item["username"] == "dave"] == [(False, 0)]

        document = (await client.get("/api/openapi.json")).json()
        properties = document["components"]["schemas"]["admin"]["properties"]
        assert properties["totp_enabled"]["type"] == "boolean"
        assert properties["passkey_count"]["type"] == "integer"
        assert properties["totp_enabled"]["readOnly"] and properties["passkey_count"]["readOnly"]
        for name in ("admin_create", "admin_update"):
            written = document["components"]["schemas"][name]["properties"]
            assert written["totp_enabled"] == written["passkey_count"] == {
                "description": "Read-only: accepted and ignored."}
    # Removing the factors shows at once.
    async with store.write() as conn:
        await twofactor.remove_all(conn, "test", EVERYTHING, alice["id"])
    async with pages_client(store) as client:
        one = await client.get(f"/api/admin/{alice['id']}/", headers=headers)
        assert (one.json()["totp_enabled"], one.json()["passkey_count"]) == (False, 0)
