"""The API of a mailbox's vacation reply and app passwords: `/api/mailbox/<id>/vacation/` and
`/api/mailbox/<id>/apppassword/`, with the scope of domain admins, read-only keys, field errors
and the audit log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dinomail.passwords import verify_password
from dinomail.schema import apppassword, auditlog
from dinomail.store import Store
from tests.support.adminapi import (
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    fast_admin_hashing,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _setup(store: Store) -> tuple[dict, dict, dict, dict]:
    mine = await add_domain(store, "mine.example")
    await add_domain(store, "theirs.example")
    box = await add_mailbox(store, "ann@mine.example")
    other = await add_mailbox(store, "bob@theirs.example")
    root = await add_admin(store, "root", superadmin=True)
    tenant = await add_admin(store, "tenant", domain_ids=(mine["id"],))
    return box, other, root.headers, tenant.headers


async def test_vacation_get_put_delete(store: Store) -> None:
    box, _, root, tenant = await _setup(store)
    url = f"/api/mailbox/{box['id']}/vacation/"
    async with api_client(store) as client:
        empty = await client.get(url, headers=tenant)
        assert empty.status_code == 200
        assert empty.json()["enabled"] is False and empty.json()["updated_at"] is None
        put = await client.put(url, headers=tenant, json={
            "enabled": True, "subject": "Away", "body": "Back soon.", "starts": "2026-12-01",
            "ends": "2026-12-31", "interval_days": 3,
        })
        assert put.status_code == 200, put.text
        shown = put.json()
        assert shown["starts"] == "2026-12-01" and shown["ends"] == "2026-12-31"
        assert shown["mailbox"] == f"/api/virtualuser/{box['id']}/"
        # What GET shows can be sent back as it is; left-out fields keep their value.
        again = await client.put(url, headers=root, json={**shown, "subject": "Out"})
        assert again.status_code == 200 and again.json()["interval_days"] == 3
        partial = await client.put(url, headers=root, json={"enabled": False})
        assert partial.json()["subject"] == "Out" and partial.json()["enabled"] is False
        bad = await client.put(url, headers=tenant, json={"starts": "2026-12-10",
                                                          "ends": "2026-12-01"})
        assert bad.status_code == 400
        assert bad.json() == {"error": "must be on or after the first day", "field": "ends",
                              "code": "ends_before_starts"}
        bad_days = await client.put(url, headers=tenant, json={"interval_days": 99})
        assert bad_days.status_code == 400 and bad_days.json()["field"] == "interval_days"
        deleted = await client.delete(url, headers=tenant)
        assert deleted.status_code == 204
        assert (await client.get(url, headers=tenant)).json()["updated_at"] is None
    async with store.read() as conn:
        actions = [row.action for row in await conn.execute(
            sa.select(auditlog.c.action).where(auditlog.c.object_type == "vacation")
            .order_by(auditlog.c.id))]
    assert actions == ["create", "update", "update", "delete"]


async def test_app_password_create_list_revoke(store: Store) -> None:
    box, _, _, tenant = await _setup(store)
    url = f"/api/mailbox/{box['id']}/apppassword/"
    async with api_client(store) as client:
        created = await client.post(url, headers=tenant,
                                    json={"name": "Phone", "protocols": ["imap", "smtp"]})
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body["password"]
        assert body["protocols"] == ["imap", "smtp"] and body["last_used"] is None
        assert body["resource_uri"] == f"{url}{body['id']}/"
        listed = await client.get(url, headers=tenant)
        assert listed.status_code == 200
        (shown,) = listed.json()["objects"]
        assert "password" not in shown and shown["name"] == "Phone"
        assert secret not in listed.text
        duplicate = await client.post(url, headers=tenant,
                                      json={"name": "Phone", "protocols": ["imap"]})
        assert duplicate.status_code == 409
        for bad, field in (
            ({"name": "x", "protocols": ["ftp"]}, "protocols"),
            ({"name": "x", "protocols": "imap"}, "protocols"),
            ({"protocols": ["imap"]}, "name"),
            ({"name": "x", "protocols": ["imap"], "secret": "mine"}, "secret"),
        ):
            refused = await client.post(url, headers=tenant, json=bad)
            assert refused.status_code == 400, refused.text
            assert refused.json()["field"] == field
        revoked = await client.delete(f"{url}{body['id']}/", headers=tenant)
        assert revoked.status_code == 204
        again = await client.delete(f"{url}{body['id']}/", headers=tenant)
        assert again.status_code == 404
        assert (await client.get(url, headers=tenant)).json() == {"objects": []}
    async with store.read() as conn:
        assert (await conn.execute(sa.select(apppassword))).first() is None
        entries = (await conn.execute(
            sa.select(auditlog).where(auditlog.c.object_type == "app_password")
        )).mappings().all()
    assert [entry["action"] for entry in entries] == ["create", "revoke"]
    assert all(secret not in (entry["new_values"] or "") for entry in entries)


async def test_stored_secret_is_a_hash_of_the_shown_one(store: Store) -> None:
    box, _, root, _ = await _setup(store)
    async with api_client(store) as client:
        created = await client.post(f"/api/mailbox/{box['id']}/apppassword/", headers=root,
                                    json={"name": "Laptop", "protocols": ["imap"]})
    async with store.read() as conn:
        stored = (await conn.execute(sa.select(apppassword.c.password))).scalar_one()
    assert stored != created.json()["password"]
    assert verify_password(created.json()["password"], stored)


async def test_another_domain_is_not_found_and_read_only_keys_cannot_write(store: Store) -> None:
    box, other, _, tenant = await _setup(store)
    async with api_client(store) as client:
        for method, path, body in (
            ("GET", "vacation/", None),
            ("PUT", "vacation/", {"enabled": False}),
            ("DELETE", "vacation/", None),
            ("GET", "apppassword/", None),
            ("POST", "apppassword/", {"name": "x", "protocols": ["imap"]}),
            ("DELETE", "apppassword/1/", None),
        ):
            answers = []
            for mailbox_id in (other["id"], 999_999):
                answer = await client.request(method, f"/api/mailbox/{mailbox_id}/{path}",
                                              headers=tenant, json=body)
                assert answer.status_code == 404, (method, path, answer.text)
                answers.append(answer.json())
            # Another domain's mailbox and no mailbox at all: one answer.
            assert answers[0] == answers[1], (method, path)
        anonymous = await client.get(f"/api/mailbox/{box['id']}/vacation/")
        assert anonymous.status_code == 401
    reader = await add_admin(store, "reader", superadmin=True, read_only=True)
    async with api_client(store) as client:
        for method, path, body in (
            ("PUT", "vacation/", {"enabled": False}),
            ("DELETE", "vacation/", None),
            ("POST", "apppassword/", {"name": "x", "protocols": ["imap"]}),
        ):
            answer = await client.request(method, f"/api/mailbox/{box['id']}/{path}",
                                          headers=reader.headers, json=body)
            assert answer.status_code == 403, answer.text
        assert (await client.get(f"/api/mailbox/{box['id']}/vacation/",
                                 headers=reader.headers)).status_code == 200


async def test_domain_flag_and_openapi_document(store: Store) -> None:
    box, _, root, _ = await _setup(store)
    async with api_client(store) as client:
        domain = await client.patch(f"/api/virtualdomain/{box['domain_id']}/", headers=root,
                                    json={"require_app_passwords": True})
        assert domain.status_code in (200, 202, 204), domain.text
        shown = await client.get(f"/api/virtualdomain/{box['domain_id']}/", headers=root)
        assert shown.json()["require_app_passwords"] is True
        document = (await client.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/api/mailbox/{id}/vacation/"]) >= {"get", "put", "delete"}
    assert set(paths["/api/mailbox/{id}/apppassword/"]) >= {"get", "post"}
    assert "delete" in paths["/api/mailbox/{id}/apppassword/{pw_id}/"]
