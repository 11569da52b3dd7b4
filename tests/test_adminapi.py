"""The admin REST API on SQLite and PostgreSQL: the original API's behaviours (one test each),
then what DinoMail adds: validation, paging, filters, new resources, audit, documents."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from adminapi.api import RESOURCES, routes
from adminapi.api.body import MAX_BODY_BYTES
from adminapi.api.keys import LOGIN_KEY_NAME
from dinomail.store import EVERYTHING, Store, mailboxes
from tests.support.adminapi import (
    Account,
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    api_settings,
    basic_header,
    fast_admin_hashing,
    key_header,
)

ORIGINAL_DOMAIN_KEYS = {
    "id", "name", "dkim_key_name", "dkim_key", "dkim_status", "dkim_last_update", "display_name",
    "short_display_name", "imap_address", "pop_address", "smtp_address", "dmarc_status",
    "dmarc_last_update", "spf_status", "spf_last_update", "resource_uri",
}
DOMAIN_EXTRA_KEYS = {"active", "catchall_senders", "require_app_passwords", "created_at"}
ORIGINAL_USER_KEYS = {"id", "email", "quota", "domain", "resource_uri"}
USER_EXTRA_KEYS = {
    "active", "created_at", "quota_used_bytes", "quota_used_messages", "quota_updated_at",
}
ORIGINAL_ALIAS_KEYS = {"id", "source", "destination", "domain", "resource_uri"}
META_KEYS = {"limit", "next", "offset", "previous", "total_count", "total_count_exact"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def root(store: Store) -> Account:
    return await add_admin(store, "root", superadmin=True)


@pytest.fixture
async def client(store: Store) -> Any:
    async with api_client(store) as client:
        yield client


async def stored_hash(store: Store, mailbox_id: int) -> str:
    async with store.read() as conn:
        return await mailboxes.password_hash(conn, EVERYTHING, mailbox_id)


# --- the original API's behaviours ----------------------------------------------------------------


async def test_virtualdomain_crud_flow_and_shapes(client: httpx.AsyncClient, root: Account) -> None:
    created = await client.post("/api/virtualdomain/", json={"name": "nanoy.fr"},
                                headers=root.headers)
    assert created.status_code == 201
    assert created.headers["location"] == "/api/virtualdomain/1/"
    body = created.json()
    assert set(body) == ORIGINAL_DOMAIN_KEYS | DOMAIN_EXTRA_KEYS
    assert body["name"] == "nanoy.fr" and body["resource_uri"] == "/api/virtualdomain/1/"
    assert (body["dkim_status"], body["dmarc_status"], body["spf_status"]) == (0, 0, 0)
    assert ISO_UTC.match(body["dkim_last_update"])

    detail = await client.get("/api/virtualdomain/1/", headers=root.headers)
    assert detail.status_code == 200 and detail.json() == body

    listing = (await client.get("/api/virtualdomain/", headers=root.headers)).json()
    assert set(listing) == {"meta", "objects"}
    assert listing["meta"] == {
        "limit": 20, "next": None, "offset": 0, "previous": None, "total_count": 1,
        "total_count_exact": True,
    }
    assert listing["objects"] == [body]

    patched = await client.patch("/api/virtualdomain/1/", json={"display_name": "Nanoy"},
                                 headers=root.headers)
    assert patched.status_code == 202 and patched.json()["display_name"] == "Nanoy"
    replaced = await client.put("/api/virtualdomain/1/", json={"name": "nanoy.fr"},
                                headers=root.headers)
    assert replaced.status_code == 204 and replaced.content == b""
    # As tastypie: the display name the PUT left out keeps its stored value.
    assert (await client.get("/api/virtualdomain/1/", headers=root.headers)).json()[
        "display_name"] == "Nanoy"
    deleted = await client.delete("/api/virtualdomain/1/", headers=root.headers)
    assert deleted.status_code == 204
    assert (await client.get("/api/virtualdomain/1/", headers=root.headers)).status_code == 404


async def test_virtualuser_crud_flow_and_shapes(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    created = await client.post(
        "/api/virtualuser/",
        json={"email": "Test@nanoy.fr", "quota": 1000, "domain": "/api/virtualdomain/1/",
              "password": "s3cret-pass"},
        headers=root.headers,
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/virtualuser/1/"
    body = created.json()
    assert set(body) == ORIGINAL_USER_KEYS | USER_EXTRA_KEYS
    assert {key: body[key] for key in ORIGINAL_USER_KEYS} == {
        "id": 1, "email": "test@nanoy.fr", "quota": 1000, "domain": "/api/virtualdomain/1/",
        "resource_uri": "/api/virtualuser/1/",
    }
    password_hash = await stored_hash(store, 1)
    assert "s3cret-pass" not in password_hash
    detail = await client.get("/api/virtualuser/1/", headers=root.headers)
    assert detail.json() == body
    assert "password" not in detail.text and password_hash not in detail.text

    listing = (await client.get("/api/virtualuser/", headers=root.headers)).json()
    assert listing["objects"] == [body]

    patched = await client.patch("/api/virtualuser/1/", json={"quota": 2000},
                                 headers=root.headers)
    assert patched.status_code == 202 and patched.json()["quota"] == 2000
    replaced = await client.put(
        "/api/virtualuser/1/",
        json={"email": "test@nanoy.fr", "quota": 5, "domain": "/api/virtualdomain/1/"},
        headers=root.headers,
    )
    assert replaced.status_code == 204
    assert (await client.get("/api/virtualuser/1/", headers=root.headers)).json()["quota"] == 5
    # Editing a mailbox never touches its password.
    assert await stored_hash(store, 1) == password_hash
    assert (await client.delete("/api/virtualuser/1/", headers=root.headers)).status_code == 204
    assert (await client.get("/api/virtualuser/1/", headers=root.headers)).status_code == 404


async def test_virtualuser_without_password_gets_an_unknown_one(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    first = await client.post("/api/virtualuser/", json={"email": "a@nanoy.fr"},
                              headers=root.headers)
    second = await client.post("/api/virtualuser/", json={"email": "b@nanoy.fr"},
                               headers=root.headers)
    assert first.status_code == second.status_code == 201
    # The domain was taken from the address.
    assert first.json()["domain"] == "/api/virtualdomain/1/"
    hashes = {await stored_hash(store, 1), await stored_hash(store, 2)}
    assert len(hashes) == 2 and "" not in hashes


async def test_virtualalias_crud_flow_and_shapes(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    created = await client.post(
        "/api/virtualalias/",
        json={"source": "info@nanoy.fr", "destination": "someone@example.net",
              "domain": "/api/virtualdomain/1/"},
        headers=root.headers,
    )
    assert created.status_code == 201
    assert created.headers["location"] == "/api/virtualalias/1/"
    body = created.json()
    assert set(body) == ORIGINAL_ALIAS_KEYS | {"created_at"}
    assert {key: body[key] for key in ORIGINAL_ALIAS_KEYS} == {
        "id": 1, "source": "info@nanoy.fr", "destination": "someone@example.net",
        "domain": "/api/virtualdomain/1/", "resource_uri": "/api/virtualalias/1/",
    }
    assert (await client.get("/api/virtualalias/1/", headers=root.headers)).json() == body
    patched = await client.patch("/api/virtualalias/1/", json={"destination": "x@example.net"},
                                 headers=root.headers)
    assert patched.status_code == 202 and patched.json()["destination"] == "x@example.net"
    replaced = await client.put(
        "/api/virtualalias/1/", json={"source": "contact@nanoy.fr", "destination": "y@a.net"},
        headers=root.headers,
    )
    assert replaced.status_code == 204
    assert (await client.get("/api/virtualalias/1/", headers=root.headers)).json()[
        "source"] == "contact@nanoy.fr"
    assert (await client.delete("/api/virtualalias/1/", headers=root.headers)).status_code == 204
    listing = (await client.get("/api/virtualalias/", headers=root.headers)).json()
    assert listing["objects"] == [] and listing["meta"]["total_count"] == 0


async def test_domain_mismatch_is_a_400(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    message = "The domain of test@plop.fr (plop.fr) is not the same as the domain nanoy.fr"
    user = await client.post(
        "/api/virtualuser/", json={"email": "test@plop.fr", "domain": "/api/virtualdomain/1/"},
        headers=root.headers,
    )
    assert user.status_code == 400
    assert user.json() == {"error": message, "field": "email", "code": "address_in_other_domain"}
    alias = await client.post(
        "/api/virtualalias/",
        json={"source": "test@plop.fr", "destination": "a@b.org",
              "domain": "/api/virtualdomain/1/"},
        headers=root.headers,
    )
    assert alias.status_code == 400
    assert alias.json() == {"error": message, "field": "source", "code": "address_in_other_domain"}


async def test_change_user_password_flow(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    from dinomail.passwords import verify_password

    await add_domain(store, "nanoy.fr")
    box = await add_mailbox(store, "test@nanoy.fr")
    url = f"/api/changeuserpassword/{box['id']}/"
    patched = await client.patch(url, json={"password": "plopiplop-2026"}, headers=root.headers)
    assert patched.status_code == 202 and patched.content == b""
    first = await stored_hash(store, box["id"])
    assert verify_password("plopiplop-2026", first)
    assert (await client.put(url, json={"password": "second-one-2026"},
                             headers=root.headers)).status_code == 204
    assert (await client.post(url, json={"password": "third-one-2026"},
                              headers=root.headers)).status_code == 204
    third = await stored_hash(store, box["id"])
    assert verify_password("third-one-2026", third)

    # The original re-hashed the old hash when the password was missing (its own test sent
    # "paswword"); every such request is refused and the hash stays.
    for body in ({}, {"password": ""}, {"password": None}):
        refused = await client.patch(url, json=body, headers=root.headers)
        assert refused.status_code == 400 and refused.json()["field"] == "password"
    misspelt = await client.patch(url, json={"paswword": "x"}, headers=root.headers)
    assert misspelt.status_code == 400 and misspelt.json()["field"] == "paswword"
    assert await stored_hash(store, box["id"]) == third
    assert (await client.get(url, headers=root.headers)).status_code == 405
    missing = await client.patch("/api/changeuserpassword/99/", json={"password": "x"},
                                 headers=root.headers)
    assert missing.status_code == 404


async def test_apikey_with_basic_auth(client: httpx.AsyncClient, root: Account) -> None:
    # What the Android client does: log in with Basic and keep objects[0].key.
    answer = await client.get("/api/apikey/", headers=basic_header("root"))
    assert answer.status_code == 200
    first = answer.json()["objects"][0]
    assert {"created", "id", "key", "resource_uri"} <= set(first)
    assert re.fullmatch(r"[0-9a-f]{40}", first["key"])
    assert first["resource_uri"] == f"/api/apikey/{first['id']}/"
    works = await client.get("/api/virtualdomain/", headers=key_header("root", first["key"]))
    assert works.status_code == 200

    # Logging in again (another device, or the settings saved twice) gives the same key, as
    # the original did; it is stored hashed, and only the login key is shown in full.
    again = (await client.get("/api/apikey/", headers=basic_header("root"))).json()["objects"]
    assert again[0]["key"] == first["key"] and again[0]["id"] == first["id"]
    assert again[0]["name"] == LOGIN_KEY_NAME
    assert all(obj["key"].endswith("...") for obj in again[1:])

    wrong = await client.get("/api/apikey/", headers=basic_header("root", "wrong password"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert (await client.get("/api/apikey/")).status_code == 401


# --- keys -----------------------------------------------------------------------------------------


async def test_login_key_is_regenerated_by_revoking_it(
    client: httpx.AsyncClient, root: Account
) -> None:
    first = (await client.get("/api/apikey/", headers=basic_header("root"))).json()["objects"][0]
    assert (await client.delete(first["resource_uri"], headers=root.headers)).status_code == 204
    listing = (await client.get("/api/apikey/?limit=50", headers=basic_header("root"))).json()
    second = listing["objects"][0]
    assert second["key"] != first["key"] and second["name"] == LOGIN_KEY_NAME
    assert sum(key["name"] == LOGIN_KEY_NAME for key in listing["objects"]) == 2
    old = await client.get("/api/virtualdomain/", headers=key_header("root", first["key"]))
    new = await client.get("/api/virtualdomain/", headers=key_header("root", second["key"]))
    assert (old.status_code, new.status_code) == (401, 200)
    # The key made by hand beside them is not a login key and is untouched.
    assert (await client.get("/api/virtualdomain/", headers=root.headers)).status_code == 200


async def test_login_key_follows_secret_key(store: Store, root: Account) -> None:
    async with api_client(store, api_settings(SECRET_KEY="one")) as client:
        one = (await client.get("/api/apikey/", headers=basic_header("root"))).json()
    async with api_client(store, api_settings(SECRET_KEY="two")) as client:
        two = (await client.get("/api/apikey/", headers=basic_header("root"))).json()
        # The key derived from the old SECRET_KEY cannot be shown again: it is revoked.
        old = await client.get("/api/virtualdomain/",
                               headers=key_header("root", one["objects"][0]["key"]))
    assert two["objects"][0]["key"] != one["objects"][0]["key"] and old.status_code == 401
    async with api_client(store, api_settings(SECRET_KEY="")) as client:
        unset = await client.get("/api/apikey/", headers=basic_header("root"))
    assert unset.status_code == 503 and "SECRET_KEY" in unset.json()["error"]


async def test_apikey_create_list_revoke(client: httpx.AsyncClient, root: Account) -> None:
    made = await client.post("/api/apikey/", json={"name": "backup script", "read_only": True},
                             headers=basic_header("root"))
    assert made.status_code == 201
    key = made.json()
    assert key["name"] == "backup script" and key["read_only"] is True
    assert made.headers["location"] == key["resource_uri"]
    read_only = key_header("root", key["key"])
    assert (await client.get("/api/virtualdomain/", headers=read_only)).status_code == 200
    refused = await client.post("/api/virtualdomain/", json={"name": "x.org"}, headers=read_only)
    assert refused.status_code == 403 and refused.json()["code"] == "read_only"

    # Listing with a key shows prefixes, never a secret, and makes no key.
    listing = (await client.get("/api/apikey/", headers=root.headers)).json()
    assert listing["meta"]["total_count"] == 2
    assert all(obj["key"].endswith("...") for obj in listing["objects"])
    assert listing["objects"][0]["prefix"] == key["prefix"]
    detail = (await client.get(key["resource_uri"], headers=root.headers)).json()
    assert detail["key"] == key["prefix"] + "..." and detail["last_used_at"] is not None

    # A key cannot make keys; a read-only key cannot revoke.
    assert (await client.post("/api/apikey/", json={}, headers=root.headers)).status_code == 403
    assert (await client.delete(key["resource_uri"], headers=read_only)).status_code == 403
    assert (await client.delete(key["resource_uri"], headers=root.headers)).status_code == 204
    assert (await client.get("/api/virtualdomain/", headers=read_only)).status_code == 401
    revoked = (await client.get(key["resource_uri"], headers=root.headers)).json()
    assert revoked["revoked_at"] is not None


async def test_credentials_in_the_url_unless_turned_off(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    # tastypie's ApiKeyAuthentication took ?username=&api_key= when no header was sent.
    good = await client.get(f"/api/virtualdomain/?username=root&api_key={root.secret}")
    assert good.status_code == 200
    for query in (f"?username=other&api_key={root.secret}", "?username=root&api_key=wrong",
                  f"?api_key={root.secret}"):
        answer = await client.get(f"/api/virtualdomain/{query}")
        assert answer.status_code == 401, query
    token = await client.get(f"/api/virtualdomain/?access_token={root.secret}")
    assert token.status_code == 400 and token.json()["field"] == "access_token"
    async with api_client(store, api_settings(API_KEY_IN_QUERY=False)) as strict:
        refused = await strict.get(f"/api/virtualdomain/?username=root&api_key={root.secret}")
    assert refused.status_code == 400 and refused.json()["field"] == "api_key"
    assert "API_KEY_IN_QUERY" in refused.json()["error"]
    bearer = {"Authorization": f"Bearer {root.secret}"}
    assert (await client.get("/api/virtualdomain/", headers=bearer)).status_code == 200
    other_user = key_header("someone", root.secret)
    assert (await client.get("/api/virtualdomain/", headers=other_user)).status_code == 401
    basic = await client.get("/api/virtualdomain/", headers=basic_header("root"))
    assert basic.status_code == 401 and "apikey" in basic.json()["error"]


# --- validation and errors ------------------------------------------------------------------------


async def test_bad_bodies_are_400_or_413(client: httpx.AsyncClient, root: Account) -> None:
    url = "/api/virtualdomain/"
    json_type = {**root.headers, "Content-Type": "application/json"}
    cases: list[tuple[dict[str, str], bytes, int]] = [
        (json_type, b"{not json", 400),
        (json_type, b"[1, 2]", 400),
        (json_type, b"", 400),
        (json_type, b'{"name": NaN}', 400),
        (json_type, b"\xff\xfe", 400),
        (json_type, b"[" * 100_000, 413),
        (json_type, b"[" * 50_000, 400),
        ({**root.headers, "Content-Type": "text/plain"}, b'{"name": "a.org"}', 400),
        (root.headers, b'{"name": "a.org"}', 400),
        (json_type, json.dumps({"name": "a.org", "dkim_key": "k" * MAX_BODY_BYTES}).encode(),
         413),
    ]
    for headers, body, status in cases:
        answer = await client.post(url, content=body, headers=headers)
        assert answer.status_code == status, (body[:30], answer.text)
        assert set(answer.json()) == {"error", "field", "code"}
    surrogate = await client.post(url, content=b'{"name": "\\ud800.org"}', headers=json_type)
    assert surrogate.status_code == 400 and surrogate.json()["field"] == "name"
    charset = {**root.headers, "Content-Type": "application/json; CHARSET=UTF-8"}
    assert (await client.post(url, content=b'{"name": "a.org"}', headers=charset)).status_code \
        == 201


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"name": "a.org", "colour": "red"}, "colour", "invalid"),
        ({"name": 12}, "name", "invalid"),
        ({"name": "not a domain"}, "name", "domain_not_full"),
        ({"name": "a.org", "display_name": "x" * 201}, "display_name", "invalid"),
        ({"name": "a.org", "active": "yes"}, "active", "invalid"),
        ({"name": "a\x00.org"}, "name", "invalid"),
        ({"name": "a.org", "imap_address": "not a host!"}, "imap_address", "domain_not_full"),
        ({}, "name", "invalid"),
    ],
)
async def test_bad_values_name_their_field(
    client: httpx.AsyncClient, root: Account, body: dict[str, Any], field: str, code: str
) -> None:
    answer = await client.post("/api/virtualdomain/", json=body, headers=root.headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and answer.json()["code"] == code


async def test_duplicates_are_409_and_limits_400(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr", max_mailboxes=1, max_aliases=1)
    assert (await client.post("/api/virtualdomain/", json={"name": "NANOY.fr"},
                              headers=root.headers)).status_code == 409
    await add_mailbox(store, "a@nanoy.fr")
    duplicate = await client.post("/api/virtualuser/", json={"email": "A@nanoy.fr"},
                                  headers=root.headers)
    assert duplicate.status_code == 409 and duplicate.json()["field"] == "email"
    over = await client.post("/api/virtualuser/", json={"email": "b@nanoy.fr"},
                             headers=root.headers)
    assert over.status_code == 400
    assert over.json()["code"] == "too_many_mailboxes" and over.json()["field"] == "domain"
    assert "maximum of 1 mailboxes" in over.json()["error"]
    alias = {"source": "x@nanoy.fr", "destination": "a@nanoy.fr"}
    assert (await client.post("/api/virtualalias/", json=alias,
                              headers=root.headers)).status_code == 201
    assert (await client.post("/api/virtualalias/", json=alias,
                              headers=root.headers)).status_code == 409
    other = {"source": "y@nanoy.fr", "destination": "a@nanoy.fr"}
    limited = await client.post("/api/virtualalias/", json=other, headers=root.headers)
    assert limited.status_code == 400 and limited.json()["code"] == "too_many_aliases"


async def test_ids_out_of_range_never_reach_the_database(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    for url in ("/api/virtualdomain/99999999999999999999/", "/api/virtualdomain/0/",
                "/api/virtualuser/2147483648/"):
        assert (await client.get(url, headers=root.headers)).status_code == 404
    answer = await client.post(
        "/api/virtualuser/",
        json={"email": "a@nanoy.fr", "domain": "/api/virtualdomain/9999999999/"},
        headers=root.headers,
    )
    assert answer.status_code == 400 and answer.json()["field"] == "domain"
    huge_quota = await client.post(
        "/api/virtualuser/", json={"email": "a@nanoy.fr", "quota": 2**70}, headers=root.headers
    )
    assert huge_quota.status_code == 400 and huge_quota.json()["field"] == "quota"


async def test_read_only_fields_are_ignored_and_put_keeps_added_fields(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr", active=False)
    read = (await client.get("/api/virtualdomain/1/", headers=root.headers)).json()
    # A client of the original PUTs back what it read, statuses and id included; it does not
    # know `active`, and must not turn the domain back on.
    original = {key: value for key, value in read.items() if key in ORIGINAL_DOMAIN_KEYS}
    original.update(dkim_status=4, spf_status=1, id=99, display_name="Nanoy")
    assert (await client.put("/api/virtualdomain/1/", json=original,
                             headers=root.headers)).status_code == 204
    after = (await client.get("/api/virtualdomain/1/", headers=root.headers)).json()
    assert (after["dkim_status"], after["spf_status"], after["id"]) == (0, 0, 1)
    assert after["display_name"] == "Nanoy" and after["active"] is False
    # As tastypie: a PUT that leaves out a field, required or not, keeps its stored value.
    partial = await client.put("/api/virtualdomain/1/", json={"smtp_address": "smtp.nanoy.fr"},
                               headers=root.headers)
    assert partial.status_code == 204
    kept = (await client.get("/api/virtualdomain/1/", headers=root.headers)).json()
    assert (kept["name"], kept["display_name"], kept["smtp_address"]) == (
        "nanoy.fr", "Nanoy", "smtp.nanoy.fr")


async def test_virtualuser_password_only_through_changeuserpassword(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "nanoy.fr")
    box = await add_mailbox(store, "a@nanoy.fr")
    answer = await client.patch(f"/api/virtualuser/{box['id']}/", json={"password": "x"},
                                headers=root.headers)
    assert answer.status_code == 400 and answer.json()["field"] == "password"
    assert "changeuserpassword" in answer.json()["error"]


async def test_list_level_writes_are_405(client: httpx.AsyncClient, root: Account) -> None:
    for resource in ("virtualdomain", "virtualuser", "virtualalias", "aliasdomain"):
        for method in ("PUT", "PATCH", "DELETE"):
            answer = await client.request(method, f"/api/{resource}/", json=[],
                                          headers=root.headers)
            assert answer.status_code == 405
            assert answer.json()["code"] == "method_not_allowed"
            assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_trailing_slash_is_optional(client: httpx.AsyncClient, root: Account) -> None:
    created = await client.post("/api/virtualdomain", json={"name": "a.org"},
                                headers=root.headers)
    assert created.status_code == 201
    assert (await client.get("/api/virtualdomain/1", headers=root.headers)).status_code == 200
    assert (await client.get("/api/openapi.json")).status_code == 200


async def test_unknown_host_is_refused(store: Store) -> None:
    async with api_client(store, api_settings(ALLOWED_HOSTS=("mail.example.org",))) as client:
        assert (await client.get("/healthz")).status_code == 400
        good = await client.get("/healthz", headers={"Host": "mail.example.org"})
        assert good.status_code == 200


# --- lists ----------------------------------------------------------------------------------------


async def test_paging_follows_the_original_and_next_is_a_cursor(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    for number in range(25):
        await add_domain(store, f"d{number:02}.org")
    first = (await client.get("/api/virtualdomain/?limit=10", headers=root.headers)).json()
    assert first["meta"]["total_count"] == 25 and first["meta"]["previous"] is None
    assert "offset=10" in first["meta"]["next"] and "after=" in first["meta"]["next"]
    names = [obj["name"] for obj in first["objects"]]
    page = first
    while page["meta"]["next"]:
        page = (await client.get(page["meta"]["next"], headers=root.headers)).json()
        names += [obj["name"] for obj in page["objects"]]
    assert names == [f"d{number:02}.org" for number in range(25)]
    assert page["meta"]["offset"] == 20 and "offset=10" in page["meta"]["previous"]
    # Offsets work without the cursor, as in the original.
    by_offset = (await client.get("/api/virtualdomain/?limit=10&offset=20",
                                  headers=root.headers)).json()
    assert [obj["name"] for obj in by_offset["objects"]] == names[20:]
    # limit=0 is the largest page (1000), as tastypie did; the default is API_LIMIT_PER_PAGE.
    assert (await client.get("/api/virtualdomain/?limit=0", headers=root.headers)).json()[
        "meta"]["limit"] == 1000
    assert (await client.get("/api/virtualdomain/?limit=5000", headers=root.headers)).json()[
        "meta"]["limit"] == 1000
    assert (await client.get("/api/virtualdomain/", headers=root.headers)).json()["meta"][
        "limit"] == 20
    for bad in ("limit=-1", "limit=x", "offset=-5", "after=nonsense", "order_by=password",
                "limit=1&limit=2", "name=d01.org", "display_name__startswith=x"):
        answer = await client.get(f"/api/virtualdomain/?{bad}", headers=root.headers)
        assert answer.status_code == 400, bad
        assert answer.json()["field"] in bad
    # tastypie's answer to a filter on a field that is not filterable, word for word.
    refused = await client.get("/api/virtualdomain/?name=d01.org", headers=root.headers)
    assert refused.json()["error"] == "The 'name' field does not allow filtering."
    # Parameters the list does not know are ignored, as tastypie did (jQuery's cache buster).
    for ignored in ("colour=red", "_=1733450000000", "format=json&_=1"):
        answer = await client.get(f"/api/virtualdomain/?{ignored}", headers=root.headers)
        assert answer.status_code == 200 and answer.json()["meta"]["total_count"] == 25, ignored


async def test_zero_page_limit_setting_means_1000(store: Store, root: Account) -> None:
    async with api_client(store, api_settings(API_LIMIT_PER_PAGE=0)) as client:
        answer = await client.get("/api/virtualdomain/", headers=root.headers)
    assert answer.json()["meta"]["limit"] == 1000


async def test_filters_search_and_ordering(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "alpha.org")
    await add_domain(store, "beta.org")
    for quota, email in enumerate(("zed@alpha.org", "amy@alpha.org", "bob@beta.org",
                                   "amos@beta.org")):
        await add_mailbox(store, email, quota=10 - quota)

    async def emails(query: str) -> list[str]:
        answer = await client.get(f"/api/virtualuser/?{query}", headers=root.headers)
        assert answer.status_code == 200, answer.text
        return [obj["email"] for obj in answer.json()["objects"]]

    assert await emails("domain=alpha.org") == ["zed@alpha.org", "amy@alpha.org"]
    assert await emails("domain=/api/virtualdomain/2/") == ["bob@beta.org", "amos@beta.org"]
    assert await emails("domain=ALPHA.org&order_by=email") == ["amy@alpha.org", "zed@alpha.org"]
    assert await emails("domain=unknown.org") == []
    assert await emails("q=AM") == ["amy@alpha.org", "amos@beta.org"]
    assert await emails("q=%25") == []  # LIKE wildcards are searched for as themselves
    assert await emails("order_by=-email") == [
        "zed@alpha.org", "bob@beta.org", "amy@alpha.org", "amos@beta.org"]
    assert await emails("order_by=quota&limit=2") == ["amos@beta.org", "bob@beta.org"]
    # A cursor continues a descending, filtered list.
    page = (await client.get("/api/virtualuser/?order_by=-email&limit=1&q=a",
                             headers=root.headers)).json()
    seen = [obj["email"] for obj in page["objects"]]
    while page["meta"]["next"]:
        page = (await client.get(page["meta"]["next"], headers=root.headers)).json()
        seen += [obj["email"] for obj in page["objects"]]
    assert seen == ["zed@alpha.org", "bob@beta.org", "amy@alpha.org", "amos@beta.org"]
    domains_found = await client.get("/api/virtualdomain/?q=alp", headers=root.headers)
    assert [obj["name"] for obj in domains_found.json()["objects"]] == ["alpha.org"]
    bad_domain = await client.get("/api/virtualuser/?domain=not a domain", headers=root.headers)
    assert bad_domain.status_code == 400 and bad_domain.json()["field"] == "domain"


async def test_large_totals_are_estimated_on_postgresql(
    client: httpx.AsyncClient, root: Account, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dinomail.store import common

    for number in range(8):
        await add_domain(store, f"d{number}.org")
    monkeypatch.setattr(common, "EXACT_COUNT_LIMIT", 5)
    meta = (await client.get("/api/virtualdomain/?limit=3", headers=root.headers)).json()["meta"]
    if store.dialect == "postgresql":
        assert meta["total_count_exact"] is False and meta["total_count"] >= 6
    else:
        assert meta == {**meta, "total_count_exact": True, "total_count": 8}
    small = (await client.get("/api/virtualdomain/?q=d1", headers=root.headers)).json()["meta"]
    assert (small["total_count"], small["total_count_exact"]) == (1, True)


# --- new resources --------------------------------------------------------------------------------


async def test_admins_and_their_scopes(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    created = await client.post(
        "/api/admin/",
        json={"username": "alice", "password": "long enough", "domains": ["/api/virtualdomain/1/"]},
        headers=root.headers,
    )
    assert created.status_code == 201, created.text
    alice = created.json()
    assert alice["domains"] == ["/api/virtualdomain/1/"] and alice["is_superadmin"] is False
    assert "password" not in alice
    answer = await client.get("/api/apikey/", headers=basic_header("alice", "long enough"))
    alice_key = key_header("alice", answer.json()["objects"][0]["key"])
    names = await client.get("/api/virtualdomain/", headers=alice_key)
    assert [obj["name"] for obj in names.json()["objects"]] == ["a.org"]

    patched = await client.patch(alice["resource_uri"], json={"domains": [1, 2]},
                                 headers=root.headers)
    assert patched.status_code == 202
    assert patched.json()["domains"] == ["/api/virtualdomain/1/", "/api/virtualdomain/2/"]
    renamed = await client.patch(alice["resource_uri"], json={"username": "bob"},
                                 headers=root.headers)
    assert renamed.status_code == 400 and renamed.json()["field"] == "username"
    short = await client.post("/api/admin/", json={"username": "x", "password": "short"},
                              headers=root.headers)
    assert short.status_code == 400 and short.json()["field"] == "password"
    duplicate = await client.post("/api/admin/", json={"username": "alice", "password": "p" * 9},
                                  headers=root.headers)
    assert duplicate.status_code == 409

    me = f"/api/admin/{root.id}/"
    for body in ({"is_superadmin": False}, {"is_active": False}):
        refused = await client.patch(me, json=body, headers=root.headers)
        assert refused.status_code == 403 and refused.json()["field"] in body
    assert (await client.delete(me, headers=root.headers)).status_code == 403
    assert (await client.delete(alice["resource_uri"], headers=root.headers)).status_code == 204
    assert (await client.get("/api/virtualdomain/", headers=alice_key)).status_code == 401


async def test_alias_domains(client: httpx.AsyncClient, root: Account, store: Store) -> None:
    await add_domain(store, "example.org")
    created = await client.post(
        "/api/aliasdomain/", json={"name": "example.net", "target_domain": "/api/virtualdomain/1/"},
        headers=root.headers,
    )
    assert created.status_code == 201
    body = created.json()
    assert body["target_domain"] == "/api/virtualdomain/1/" and body["active"] is True
    shadow = await client.post("/api/aliasdomain/",
                               json={"name": "example.org", "target_domain": 1},
                               headers=root.headers)
    assert shadow.status_code == 409
    nowhere = await client.post("/api/aliasdomain/", json={"name": "x.net", "target_domain": 7},
                                headers=root.headers)
    assert nowhere.status_code == 400 and nowhere.json()["field"] == "target_domain"
    assert (await client.patch(body["resource_uri"], json={"active": False},
                               headers=root.headers)).json()["active"] is False
    filtered = await client.get("/api/aliasdomain/?domain=example.org", headers=root.headers)
    assert filtered.json()["meta"]["total_count"] == 1
    assert (await client.delete(body["resource_uri"], headers=root.headers)).status_code == 204


async def test_domain_limits_and_usage(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "nanoy.fr")
    await add_mailbox(store, "a@nanoy.fr", quota=100)
    await add_mailbox(store, "b@nanoy.fr", quota=50)
    async with store.write() as conn:
        await mailboxes.record_usage(conn, {"a@nanoy.fr": (30, 3), "b@nanoy.fr": (5, 1)})
    url = f"/api/domainlimit/{domain['id']}/"
    limits = (await client.get(url, headers=root.headers)).json()
    assert limits["domain"] == "/api/virtualdomain/1/" and limits["name"] == "nanoy.fr"
    assert (limits["mailboxes"], limits["aliases"], limits["quota_allocated"]) == (2, 0, 150)
    assert (limits["quota_used_bytes"], limits["quota_used_messages"]) == (35, 4)
    patched = await client.patch(url, json={"max_mailboxes": 2, "total_quota": 1000},
                                 headers=root.headers)
    assert patched.status_code == 202 and patched.json()["max_mailboxes"] == 2
    over = await client.post("/api/virtualuser/", json={"email": "c@nanoy.fr", "quota": 1},
                             headers=root.headers)
    assert over.status_code == 400 and over.json()["code"] == "too_many_mailboxes"
    box = (await client.get("/api/virtualuser/?q=a%40", headers=root.headers)).json()["objects"]
    assert (box[0]["quota_used_bytes"], box[0]["quota_used_messages"]) == (30, 3)
    # A PUT changes only what it names.
    assert (await client.put(url, json={"max_aliases": 7}, headers=root.headers)).status_code \
        == 204
    after = (await client.get(url, headers=root.headers)).json()
    assert (after["max_mailboxes"], after["max_aliases"], after["total_quota"]) == (2, 7, 1000)
    assert (await client.post("/api/domainlimit/", json={},
                              headers=root.headers)).status_code == 405


async def test_every_change_is_audited_with_its_actor(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await client.post("/api/virtualdomain/", json={"name": "a.org"}, headers=root.headers)
    await client.patch("/api/virtualdomain/1/", json={"display_name": "A"}, headers=root.headers)
    await client.get("/api/apikey/", headers=basic_header("root"))
    entries = (await client.get("/api/auditlog/", headers=root.headers)).json()["objects"]
    prefix = root.secret[:8]
    assert [(e["action"], e["object_type"], e["actor"]) for e in entries[:3]] == [
        ("create", "api_key", "admin:root"),
        ("update", "domain", f"apikey:{prefix}(root)"),
        ("create", "domain", f"apikey:{prefix}(root)"),
    ]
    assert entries[1]["old_values"] == {"display_name": ""}
    assert entries[1]["new_values"] == {"display_name": "A"}
    one = await client.get(entries[0]["resource_uri"], headers=root.headers)
    assert one.json() == entries[0]
    assert all(root.secret not in json.dumps(entry) for entry in entries)


# --- documents, metrics, health -------------------------------------------------------------------


async def test_openapi_documents_every_route_and_method(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    served = set()
    for route in routes():
        path = route.path.replace("{pk:int}", "{id}")  # type: ignore[attr-defined]
        path = path.replace("{pw_id:int}", "{pw_id}")
        # OPTIONS is tastypie's answer on every API URL, described once in the document.
        for method in route.methods - {"HEAD", "OPTIONS"}:  # type: ignore[attr-defined]
            served.add((path, method))
    served |= {("/healthz", "GET"), ("/metrics", "GET")}
    assert documented == served
    assert {resource.name for resource in RESOURCES} <= set(document["components"]["schemas"])


async def test_docs_page(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for words in ("API_LIMIT_PER_PAGE = 0", "objects[0].key", "/api/changeuserpassword/",
                  "<code>/api/virtualuser/{id}/</code>"):
        assert words in page.text


async def test_metrics_label_routes_by_template(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "a.org")
    await client.get("/api/virtualdomain/1/", headers=root.headers)
    await client.get("/api/virtualdomain/12345/", headers=root.headers)
    await client.get("/no/such/page")
    text = (await client.get("/metrics")).text
    assert ('dinomail_http_requests_total{method="GET",route="/api/virtualdomain/{pk:int}/",'
            'status="200"} 1.0') in text
    assert 'route="/api/virtualdomain/{pk:int}/",status="404"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "12345" not in text
    assert "dinomail_http_request_duration_seconds_bucket" in text


async def test_healthz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


async def test_index_lists_resources(client: httpx.AsyncClient) -> None:
    index = (await client.get("/api/")).json()
    assert index["virtualuser"]["list_endpoint"] == "/api/virtualuser/"
    assert set(index) == {resource.name for resource in RESOURCES} | {"changeuserpassword"}
    # As tastypie: each entry names its schema/ URL, and the schema itself on request.
    assert index["changeuserpassword"] == {
        "list_endpoint": "/api/changeuserpassword/", "schema": "/api/changeuserpassword/schema/"}
    full = (await client.get("/api/?fullschema=true")).json()
    assert full["virtualuser"]["schema"]["fields"]["domain"]["related_type"] == "to_one"
