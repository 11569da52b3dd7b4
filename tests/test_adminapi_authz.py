"""Who may do what through the admin API: the authorisation matrix.

Callers: a superadmin, the domain admin of a.org (acting on a.org and on b.org), a read-only
key, a revoked key, a wrong key and no key; and Basic credentials of one admin on another's key.
Every row is run for every caller against one database; mismatches are reported together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dinomail.store import EVERYTHING, Store, aliases, apikeys
from tests.support.adminapi import (
    add_admin,
    add_domain,
    add_key,
    add_mailbox,
    api_client,
    basic_header,
    fast_admin_hashing,
    key_header,
)

CALLERS = ("admin_a", "read_only", "revoked", "wrong", "none", "super")
UNAUTHENTICATED = {"revoked": 401, "wrong": 401, "none": 401}
A, B = 1, 2  # the ids of a.org and b.org; mailbox, alias and domain limit ids follow them

Body = dict[str, Any] | Callable[[str], dict[str, Any]] | None


@dataclass(frozen=True)
class Row:
    method: str
    url: str
    body: Body
    super: int
    admin_a: int
    read_only: int
    others: dict[str, int] | None = None

    def expected(self, caller: str) -> int:
        if caller in ("super", "admin_a", "read_only"):
            return int(getattr(self, caller))
        return (self.others or UNAUTHENTICATED)[caller]


def per_caller(make: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    return make


MATRIX = (
    Row("GET", "/api/virtualdomain/", None, 200, 200, 200),
    Row("GET", f"/api/virtualdomain/{A}/", None, 200, 200, 200),
    Row("GET", f"/api/virtualdomain/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/virtualuser/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/virtualalias/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/domainlimit/{B}/", None, 200, 404, 200),
    Row("GET", "/api/aliasdomain/?domain=b.org", None, 200, 200, 200),
    Row("POST", "/api/virtualdomain/", per_caller(lambda c: {"name": f"new-{c}.org"}),
        201, 403, 403),
    Row("POST", "/api/virtualuser/", per_caller(lambda c: {"email": f"new-{c}@a.org"}),
        201, 201, 403),
    Row("POST", "/api/virtualuser/",
        per_caller(lambda c: {"email": f"new-{c}@b.org", "domain": f"/api/virtualdomain/{B}/"}),
        201, 400, 403),
    Row("POST", "/api/virtualuser/", per_caller(lambda c: {"email": f"other-{c}@b.org"}),
        201, 400, 403),
    Row("POST", "/api/virtualalias/",
        per_caller(lambda c: {"source": f"new-{c}@b.org", "destination": "x@example.net"}),
        201, 400, 403),
    Row("POST", "/api/aliasdomain/",
        per_caller(lambda c: {"name": f"alias-{c}.net", "target_domain": B}), 201, 400, 403),
    Row("PATCH", f"/api/virtualuser/{B}/", {"quota": 7}, 202, 404, 403),
    Row("PUT", f"/api/virtualuser/{A}/", {"email": "a1@a.org", "quota": 9}, 204, 204, 403),
    Row("PATCH", f"/api/virtualalias/{B}/", {"destination": "y@example.net"}, 202, 404, 403),
    Row("PATCH", f"/api/virtualdomain/{A}/", {"display_name": "A"}, 202, 202, 403),
    Row("PATCH", f"/api/virtualdomain/{B}/", {"display_name": "B"}, 202, 404, 403),
    Row("PATCH", f"/api/virtualdomain/{A}/", {"name": "renamed.org"}, 409, 403, 403),
    Row("PATCH", f"/api/domainlimit/{A}/", {"max_mailboxes": 50}, 202, 403, 403),
    Row("PATCH", f"/api/domainlimit/{A}/", {"default_quota": 5}, 202, 202, 403),
    Row("PUT", f"/api/changeuserpassword/{A}/", {"password": "new password"}, 204, 204, 403),
    Row("PATCH", f"/api/changeuserpassword/{B}/", {"password": "new password"}, 202, 404, 403),
    Row("GET", "/api/admin/", None, 200, 403, 200),
    Row("POST", "/api/admin/",
        per_caller(lambda c: {"username": f"new-{c}", "password": "long enough"}),
        201, 403, 403),
    Row("GET", "/api/auditlog/", None, 200, 403, 200),
    Row("GET", "/api/apikey/", None, 200, 200, 200),
    # The superadmin's key (id 1): only its owner sees it, through any of their keys.
    Row("GET", "/api/apikey/1/", None, 200, 404, 200),
    # No list-level writes, for anyone (the route refuses the method before any credentials).
    Row("DELETE", "/api/virtualuser/", None, 405, 405, 405,
        {"revoked": 405, "wrong": 405, "none": 405}),
    Row("PUT", "/api/virtualdomain/", [], 405, 405, 405,  # type: ignore[arg-type]
        {"revoked": 405, "wrong": 405, "none": 405}),
    Row("DELETE", f"/api/virtualuser/{B}/", None, 204, 404, 403),
    Row("DELETE", f"/api/virtualalias/{B}/", None, 204, 404, 403),
    Row("DELETE", f"/api/virtualdomain/{A}/", None, 204, 403, 403),
    # Last: the superadmin revokes the key it has been using.
    Row("DELETE", "/api/apikey/1/", None, 204, 404, 403),
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _world(store: Store) -> dict[str, dict[str, str]]:
    """Two domains with a mailbox and an alias each, and one set of credentials per caller."""
    await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    await add_mailbox(store, "a1@a.org")
    await add_mailbox(store, "b1@b.org")
    async with store.write() as conn:
        for source, destination in (("x@a.org", "a1@a.org"), ("x@b.org", "b1@b.org")):
            await aliases.create(
                conn, "test", EVERYTHING, {"source": source, "destination": destination}
            )
    root = await add_admin(store, "root", superadmin=True)
    admin_a = await add_admin(store, "alice", domain_ids=(A,))
    read_only = await add_key(store, root, read_only=True)
    revoked = await add_key(store, root)
    async with store.write() as conn:
        await apikeys.revoke(conn, "test", root.id, revoked.key_id)
    assert root.key_id == 1
    return {
        "super": root.headers,
        "admin_a": admin_a.headers,
        "read_only": read_only.headers,
        "revoked": revoked.headers,
        "wrong": key_header("root", "0" * 40),
        "none": {},
    }


async def test_authorisation_matrix(store: Store) -> None:
    credentials = await _world(store)
    mismatches = []
    async with api_client(store) as client:
        for row in MATRIX:
            for caller in CALLERS:
                body = row.body(caller) if callable(row.body) else row.body
                answer = await client.request(
                    row.method, row.url, json=body, headers=credentials[caller]
                )
                if answer.status_code != row.expected(caller):
                    mismatches.append(
                        f"{caller:9} {row.method:6} {row.url:32} expected "
                        f"{row.expected(caller)}, got {answer.status_code} {answer.text[:120]}"
                    )
    assert not mismatches, "\n" + "\n".join(mismatches)


async def _names(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[str]:
    answer = await client.get(url, headers=headers)
    assert answer.status_code == 200
    return [obj.get("name") or obj.get("email") or obj["source"]
            for obj in answer.json()["objects"]]


async def test_domain_admin_sees_only_their_domains(store: Store) -> None:
    credentials = await _world(store)
    mine = credentials["admin_a"]
    async with api_client(store) as client:
        assert await _names(client, "/api/virtualdomain/", mine) == ["a.org"]
        assert await _names(client, "/api/virtualuser/", mine) == ["a1@a.org"]
        assert await _names(client, "/api/virtualalias/", mine) == ["x@a.org"]
        assert await _names(client, "/api/domainlimit/", mine) == ["a.org"]
        assert await _names(client, "/api/virtualuser/?domain=b.org", mine) == []
        assert await _names(client, "/api/virtualuser/?q=b1", mine) == []
        everything = await _names(client, "/api/virtualuser/", credentials["super"])
        assert everything == ["a1@a.org", "b1@b.org"]


async def test_other_domains_look_like_missing_ones(store: Store) -> None:
    """A domain admin cannot tell another admin's domain from one that does not exist."""
    credentials = await _world(store)
    mine = credentials["admin_a"]
    async with api_client(store) as client:
        theirs = await client.post("/api/virtualuser/", json={"email": "n@b.org"}, headers=mine)
        nowhere = await client.post("/api/virtualuser/", json={"email": "n@nowhere.org"},
                                    headers=mine)
        assert theirs.status_code == nowhere.status_code == 400
        assert theirs.json()["error"].replace("b.org", "X") == \
            nowhere.json()["error"].replace("nowhere.org", "X")
        by_uri = await client.post(
            "/api/virtualuser/", json={"email": "n@b.org", "domain": f"/api/virtualdomain/{B}/"},
            headers=mine,
        )
        missing_uri = await client.post(
            "/api/virtualuser/", json={"email": "n@b.org", "domain": "/api/virtualdomain/77/"},
            headers=mine,
        )
        assert by_uri.json() == missing_uri.json()
        assert (await client.get(f"/api/virtualuser/{B}/", headers=mine)).json() == \
            (await client.get("/api/virtualuser/77/", headers=mine)).json()


async def test_basic_credentials_see_only_their_own_keys(store: Store) -> None:
    credentials = await _world(store)
    async with api_client(store) as client:
        # alice's password on root's key (id 1): as if it did not exist.
        other = await client.get("/api/apikey/1/", headers=basic_header("alice"))
        assert other.status_code == 404
        assert (await client.delete("/api/apikey/1/", headers=basic_header("alice"))
                ).status_code == 404
        own = await client.get("/api/apikey/1/", headers=basic_header("root"))
        assert own.status_code == 200 and own.json()["key"].endswith("...")
        listed = await client.get("/api/apikey/", headers=basic_header("alice"))
        prefixes = {obj["prefix"] for obj in listed.json()["objects"]}
        root_key = credentials["super"]["Authorization"].split(":")[1]
        assert root_key[:8] not in prefixes
        # Basic credentials open /api/apikey/ only.
        assert (await client.get("/api/virtualdomain/", headers=basic_header("root"))
                ).status_code == 401
