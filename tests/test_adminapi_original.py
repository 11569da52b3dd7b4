"""The original product's own API tests (`src/api/tests.py` of DinoMail 1.1.1), replayed over
HTTP against a running admin API on SQLite and PostgreSQL.

Each test follows the original's steps, data and expected answers. Where DinoMail answers
otherwise on purpose, the test says so and asserts DinoMail's answer:
- the original made a key when a user was created; DinoMail makes the login key at the first
  `GET /api/apikey/` with Basic credentials (the way the original's clients obtain it);
- a validation error is `{"error": "<message>", "field": ..., "code": ...}`, the message word
  for word but not wrapped in Python's list syntax (`"['...']"`);
- `PATCH /api/changeuserpassword/<id>/` with the misspelt `"paswword"` is a 400 naming it; the
  original answered 202 and re-hashed the stored hash, leaving a password nobody knew;
- the original's new password `plopiplop` is shorter than the mailbox password policy allows
  (`MAILBOX_PASSWORD_MIN_LENGTH`, 10 by default): a 400 naming `password`, then a longer one.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from dinomail.schema import virtualalias, virtualdomain, virtualuser
from dinomail.store import Store, admins
from tests.support.adminapi import add_domain, add_mailbox, fast_admin_hashing
from tests.support.live_adminapi import live_adminapi

USERNAME = "testuser"
PASSWORD = "thisisatestpassword"
BASIC = {
    "Authorization": "Basic " + base64.b64encode(b"testuser:thisisatestpassword").decode("ascii")
}
MISMATCH = "The domain of test@plop.fr (plop.fr) is not the same as the domain nanoy.fr"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with live_adminapi(store) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def _create_user(store: Store, *, superuser: bool) -> None:
    async with store.write() as conn:
        await admins.create(conn, "test", username=USERNAME, password=PASSWORD,
                            is_superadmin=superuser)


async def _auth_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """setUp of ApiTestCase: the user's key, sent as `ApiKey testuser:<key>`."""
    key = (await client.get("/api/apikey/", headers=BASIC)).json()["objects"][0]["key"]
    return {"Authorization": f"ApiKey {USERNAME}:{key}"}


async def _exists(store: Store, table: sa.Table, **values: object) -> bool:
    query = sa.select(sa.func.count()).select_from(table).where(
        *(table.c[name] == value for name, value in values.items())
    )
    async with store.read() as conn:
        return bool((await conn.execute(query)).scalar_one())


# --- ApiKeyTestCase -------------------------------------------------------------------------------


async def test_key_creation(client: httpx.AsyncClient, store: Store) -> None:
    await _create_user(store, superuser=False)
    # The original made the key with the user; here the first Basic login makes it, and it is
    # the user's only key.
    listing = (await client.get("/api/apikey/", headers=BASIC)).json()
    assert listing["meta"]["total_count"] == 1 and len(listing["objects"][0]["key"]) == 40


async def test_api_key(client: httpx.AsyncClient, store: Store) -> None:
    await _create_user(store, superuser=False)
    response = await client.get("/api/apikey/", headers=BASIC)
    assert response.status_code == 200
    assert response.json()["objects"][0]["key"] != ""


# --- ApiTestCase ----------------------------------------------------------------------------------


async def test_virtualdomains(client: httpx.AsyncClient, store: Store) -> None:
    await _create_user(store, superuser=True)
    auth_headers = await _auth_headers(client)
    await add_domain(store, "nanoy.fr")
    response = await client.get("/api/virtualdomain/", headers=auth_headers)
    assert response.status_code == 200
    expected = {
        "display_name": "",
        "dkim_key": "",
        "dkim_key_name": "",
        "dkim_status": 0,
        "id": 1,
        "imap_address": "",
        "name": "nanoy.fr",
        "pop_address": "",
        "resource_uri": "/api/virtualdomain/1/",
        "short_display_name": "",
        "smtp_address": "",
    }
    assert expected.items() <= response.json()["objects"][0].items()

    response = await client.post("/api/virtualdomain/", json={"name": "example.com"},
                                 headers=auth_headers)
    assert response.status_code == 201
    assert await _exists(store, virtualdomain, name="example.com")

    response = await client.get("/api/virtualdomain/2/", headers=auth_headers)
    assert response.status_code == 200
    response = await client.patch("/api/virtualdomain/2/", json={"display_name": "display name"},
                                  headers=auth_headers)
    assert response.status_code == 202
    assert await _exists(store, virtualdomain, name="example.com", display_name="display name")

    response = await client.patch("/api/virtualdomain/2/", json={"name": "example.fr"},
                                  headers=auth_headers)
    assert response.status_code == 202
    assert await _exists(store, virtualdomain, name="example.fr")

    response = await client.delete("/api/virtualdomain/2/", headers=auth_headers)
    assert response.status_code == 204
    assert not await _exists(store, virtualdomain, name="example.fr")


async def test_virtualusers(client: httpx.AsyncClient, store: Store) -> None:
    await _create_user(store, superuser=True)
    auth_headers = await _auth_headers(client)
    await add_domain(store, "nanoy.fr")
    # The original model's default quota was 0.
    await add_mailbox(store, "me@nanoy.fr", quota=0)
    response = await client.get("/api/virtualuser/", headers=auth_headers)
    assert response.status_code == 200
    expected = {
        "domain": "/api/virtualdomain/1/",
        "email": "me@nanoy.fr",
        "id": 1,
        "quota": 0,
        "resource_uri": "/api/virtualuser/1/",
    }
    assert expected.items() <= response.json()["objects"][0].items()

    response = await client.post(
        "/api/virtualuser/",
        json={"domain": "/api/virtualdomain/1/", "email": "test@plop.fr", "quota": 0},
        headers=auth_headers,
    )
    assert response.status_code == 400
    assert response.json()["error"] == MISMATCH
    assert not await _exists(store, virtualuser, email="test@plop.fr")

    response = await client.post(
        "/api/virtualuser/",
        json={"domain": "/api/virtualdomain/1/", "email": "test@nanoy.fr", "quota": 0},
        headers=auth_headers,
    )
    assert response.status_code == 201
    assert await _exists(store, virtualuser, email="test@nanoy.fr")

    response = await client.get("/api/virtualuser/2/", headers=auth_headers)
    assert response.status_code == 200
    response = await client.patch("/api/virtualuser/2/", json={"quota": 20},
                                  headers=auth_headers)
    assert response.status_code == 202
    assert await _exists(store, virtualuser, email="test@nanoy.fr", quota=20)

    async def stored_password() -> str:
        async with store.read() as conn:
            query = sa.select(virtualuser.c.password).where(virtualuser.c.email == "test@nanoy.fr")
            return str((await conn.execute(query)).scalar_one())

    password = await stored_password()
    response = await client.patch("/api/changeuserpassword/2/", json={"paswword": "plopiplop"},
                                  headers=auth_headers)
    # The original's 202 here re-hashed the stored hash; the misspelt field is refused instead.
    assert response.status_code == 400 and response.json()["field"] == "paswword"
    assert await stored_password() == password
    response = await client.patch("/api/changeuserpassword/2/", json={"password": "plopiplop"},
                                  headers=auth_headers)
    # Nine characters: refused by the mailbox password policy, nothing changed.
    assert response.status_code == 400 and response.json()["field"] == "password"
    assert await stored_password() == password
    response = await client.patch("/api/changeuserpassword/2/",
                                  json={"password": "plopiplop-plop"}, headers=auth_headers)
    assert response.status_code == 202
    assert await stored_password() != password

    response = await client.delete("/api/virtualuser/2/", headers=auth_headers)
    assert response.status_code == 204
    assert not await _exists(store, virtualuser, email="test@nanoy.fr")


async def test_virtualaliases(client: httpx.AsyncClient, store: Store) -> None:
    await _create_user(store, superuser=True)
    auth_headers = await _auth_headers(client)
    domain = await add_domain(store, "nanoy.fr")
    async with store.write() as conn:
        await conn.execute(virtualalias.insert().values(
            domain_id=domain["id"], source="test@nanoy.fr", destination="me@nanoy.fr"))
    response = await client.get("/api/virtualalias/", headers=auth_headers)
    assert response.status_code == 200
    expected = {
        "destination": "me@nanoy.fr",
        "domain": "/api/virtualdomain/1/",
        "id": 1,
        "resource_uri": "/api/virtualalias/1/",
        "source": "test@nanoy.fr",
    }
    assert expected.items() <= response.json()["objects"][0].items()

    response = await client.post(
        "/api/virtualalias/",
        json={"domain": "/api/virtualdomain/1/", "source": "test@plop.fr",
              "destination": "test@plop.fr"},
        headers=auth_headers,
    )
    assert response.status_code == 400
    assert response.json()["error"] == MISMATCH
    assert not await _exists(store, virtualalias, source="test@plop.fr",
                             destination="test@plop.fr")

    response = await client.post(
        "/api/virtualalias/",
        json={"domain": "/api/virtualdomain/1/", "source": "test@nanoy.fr",
              "destination": "test@plop.fr"},
        headers=auth_headers,
    )
    assert response.status_code == 201
    assert await _exists(store, virtualalias, source="test@nanoy.fr", destination="test@plop.fr")

    response = await client.get("/api/virtualalias/2/", headers=auth_headers)
    assert response.status_code == 200
    response = await client.patch("/api/virtualalias/2/", json={"destination": "me@plop.fr"},
                                  headers=auth_headers)
    assert response.status_code == 202
    assert await _exists(store, virtualalias, source="test@nanoy.fr", destination="me@plop.fr")

    response = await client.delete("/api/virtualalias/2/", headers=auth_headers)
    assert response.status_code == 204
    assert not await _exists(store, virtualalias, source="test@nanoy.fr",
                             destination="me@plop.fr")
