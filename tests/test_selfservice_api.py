"""The admin's side of self-service, on SQLite and PostgreSQL: a mailbox's forwarding in the API
(`/api/mailbox/<id>/forwarding/`) and on the admin's pages, a domain's switches
(`/api/virtualdomain/<id>/self-service/`, `/virtual-domains/<id>/self-service`), all through
the same store functions, audited, scoped to the admin's domains."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dinomail import schema
from dinomail.store import EVERYTHING, Store, mailboxes
from tests.support.adminapi import (
    PASSWORD,
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    fast_admin_hashing,
)
from tests.support.selfservice import csrf_token, me_client


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def alias_rows(store: Store) -> list[tuple[str, str]]:
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(schema.virtualalias.c.source, schema.virtualalias.c.destination)
            .order_by(schema.virtualalias.c.source, schema.virtualalias.c.destination))
        return [(row.source, row.destination) for row in rows]


@pytest.fixture
async def world(store: Store) -> dict[str, Any]:
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    anna = await add_mailbox(store, "anna@a.org")
    bob = await add_mailbox(store, "bob@b.org")
    root = await add_admin(store, "root", superadmin=True)
    alice = await add_admin(store, "alice", domain_ids=(b["id"],))
    return {"a": a["id"], "b": b["id"], "anna": anna["id"], "bob": bob["id"], "root": root,
            "alice": alice}


async def test_forwarding_in_the_api(store: Store, world: dict[str, Any]) -> None:
    url = f"/api/mailbox/{world['bob']}/forwarding/"
    headers = world["alice"].headers
    async with api_client(store) as client:
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 200
        assert answer.json() == {
            "mailbox": f"/api/virtualuser/{world['bob']}/", "email": "bob@b.org",
            "destinations": [], "keep_copy": False, "external_allowed": True}
        answer = await client.put(url, headers=headers, json={
            "destinations": ["Out@Elsewhere.example", "anna@a.org"], "keep_copy": True})
        assert answer.status_code == 200, answer.text
        assert answer.json()["destinations"] == ["out@elsewhere.example", "anna@a.org"]
        assert answer.json()["keep_copy"] is True
        assert await alias_rows(store) == [
            ("bob@b.org", "anna@a.org"), ("bob@b.org", "bob@b.org"),
            ("bob@b.org", "out@elsewhere.example")]
        # Without the slash, as every API path.
        assert (await client.get(url.rstrip("/"), headers=headers)).json()["keep_copy"] is True

        for body, field, code in (
            ({"destinations": ["no-at-sign"]}, "destinations", "address_without_at"),
            ({"destinations": "x@y.example", "extra": 1}, "extra", "field_unknown"),
            ({"keep_copy": True}, "destinations", "field_required"),
            ({"destinations": ["bob@b.org"]}, "destinations", "forwarding_to_itself"),
            ({"destinations": [f"n{i}@y.example" for i in range(11)]}, "destinations",
             "forwarding_too_many"),
            ({"destinations": [1]}, "destinations", "addresses_invalid"),
            ({"destinations": ["x@y.example"], "keep_copy": "yes"}, "keep_copy", "not_boolean"),
        ):
            answer = await client.put(url, headers=headers, json=body)
            assert answer.status_code == 400, body
            assert (answer.json()["field"], answer.json()["code"]) == (field, code), body
        assert len(await alias_rows(store)) == 3

        # Another tenant's mailbox and no mailbox look the same.
        for pk in (world["anna"], 999_999):
            answer = await client.get(f"/api/mailbox/{pk}/forwarding/", headers=headers)
            assert answer.status_code == 404
            answer = await client.put(f"/api/mailbox/{pk}/forwarding/", headers=headers,
                                      json={"destinations": []})
            assert answer.status_code == 404
        assert (await client.get(url)).status_code == 401

        answer = await client.put(url, headers=headers, json={"destinations": []})
        assert answer.json()["destinations"] == [] and await alias_rows(store) == []
    async with store.read() as conn:
        actors = list(await conn.scalars(sa.select(schema.auditlog.c.actor).where(
            schema.auditlog.c.object_type == "forwarding")))
    assert len(actors) == 2 and all("alice" in actor for actor in actors)


async def test_read_only_key_cannot_change_forwarding(store: Store,
                                                      world: dict[str, Any]) -> None:
    reader = await add_admin(store, "reader", domain_ids=(world["b"],), read_only=True)
    async with api_client(store) as client:
        answer = await client.put(f"/api/mailbox/{world['bob']}/forwarding/",
                                  headers=reader.headers, json={"destinations": ["x@y.example"]})
        assert answer.status_code == 403
    assert await alias_rows(store) == []


async def test_domain_switches_in_the_api(store: Store, world: dict[str, Any]) -> None:
    url = f"/api/virtualdomain/{world['b']}/self-service/"
    headers = world["alice"].headers
    async with api_client(store) as client:
        assert (await client.get(url, headers=headers)).json() == {
            "domain": f"/api/virtualdomain/{world['b']}/", "name": "b.org",
            "self_service": True, "external_forwarding": True}
        answer = await client.patch(url, headers=headers, json={"external_forwarding": False})
        assert answer.status_code == 200 and answer.json()["external_forwarding"] is False
        assert answer.json()["self_service"] is True
        answer = await client.put(f"/api/mailbox/{world['bob']}/forwarding/", headers=headers,
                                  json={"destinations": ["x@elsewhere.example"]})
        assert answer.status_code == 400 and answer.json()["field"] == "destinations"
        assert "does not allow forwarding outside" in answer.json()["error"]
        answer = await client.put(url, headers=headers, json={"self_service": "no"})
        assert (answer.status_code, answer.json()["field"]) == (400, "self_service")
        answer = await client.get(f"/api/virtualdomain/{world['a']}/self-service/",
                                  headers=headers)
        assert answer.status_code == 404
        document = (await client.get("/api/openapi.json")).json()
        assert {"get", "put"} <= set(document["paths"]["/api/mailbox/{id}/forwarding/"])
        assert "patch" in document["paths"]["/api/virtualdomain/{id}/self-service/"]


async def test_forwarding_on_the_admin_pages(store: Store, world: dict[str, Any]) -> None:
    async with me_client(store) as client:
        token = csrf_token(await client.get("/login"))
        await client.post("/login", data={"username": "alice", "password": PASSWORD,
                                          "csrf_token": token})
        url = f"/virtual-users/{world['bob']}/forwarding"
        page = await client.get(url)
        assert page.status_code == 200 and "Forwarding of bob@b.org" in page.text
        assert url in (await client.get(f"/virtual-users/{world['bob']}/edit")).text
        token = csrf_token(page)
        answer = await client.post(url, data={"destinations": "x@elsewhere.example",
                                              "keep_copy": "on", "csrf_token": token})
        assert answer.status_code == 303
        assert await alias_rows(store) == [("bob@b.org", "bob@b.org"),
                                           ("bob@b.org", "x@elsewhere.example")]
        answer = await client.post(url, data={"destinations": "bob@b.org",
                                              "csrf_token": token})
        assert answer.status_code == 400 and "cannot forward to itself" in answer.text
        assert len(await alias_rows(store)) == 2
        # Another tenant's mailbox: not found.
        answer = await client.get(f"/virtual-users/{world['anna']}/forwarding")
        assert answer.status_code == 404
        answer = await client.post(f"/virtual-users/{world['anna']}/forwarding",
                                   data={"destinations": "", "csrf_token": token})
        assert answer.status_code == 404

        # The domain's switches.
        url = f"/virtual-domains/{world['b']}/self-service"
        assert "Self-service of b.org" in (await client.get(url)).text
        answer = await client.post(url, data={"external_forwarding": "on",
                                              "csrf_token": token})
        assert answer.status_code == 303
        assert (await client.get(f"/virtual-domains/{world['a']}/self-service")
                ).status_code == 404
    async with store.read() as conn:
        row = (await conn.execute(sa.select(schema.domainselfservice))).mappings().one()
    assert (row["self_service"], row["external_forwarding"]) == (False, True)


async def test_deleting_a_mailbox_ends_its_forwarding(store: Store,
                                                      world: dict[str, Any]) -> None:
    async with api_client(store) as client:
        answer = await client.put(f"/api/mailbox/{world['bob']}/forwarding/",
                                  headers=world["root"].headers,
                                  json={"destinations": ["x@elsewhere.example"]})
        assert answer.status_code == 200
    async with store.write() as conn:
        await mailboxes.delete(conn, "test", EVERYTHING, world["bob"])
    assert await alias_rows(store) == []


async def test_renaming_a_mailbox_keeps_its_forwarding(store: Store,
                                                       world: dict[str, Any]) -> None:
    async with api_client(store) as client:
        answer = await client.put(f"/api/mailbox/{world['bob']}/forwarding/",
                                  headers=world["root"].headers,
                                  json={"destinations": ["x@elsewhere.example"],
                                        "keep_copy": True})
        assert answer.status_code == 200
    async with store.write() as conn:
        await mailboxes.update(conn, "test", EVERYTHING, world["bob"],
                               {"email": "robert@b.org"})
    assert await alias_rows(store) == [("robert@b.org", "robert@b.org"),
                                       ("robert@b.org", "x@elsewhere.example")]
    async with api_client(store) as client:
        answer = await client.get(f"/api/mailbox/{world['bob']}/forwarding/",
                                  headers=world["root"].headers)
        assert answer.json()["keep_copy"] is True
        assert answer.json()["destinations"] == ["x@elsewhere.example"]
