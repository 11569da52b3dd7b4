"""`DELETE /api/mailbox/<id>/twofactor/`: an admin removes a mailbox owner's authenticator app
(the owner lost their phone), on SQLite and PostgreSQL. A superadmin and the mailbox's domain
admin may; another tenant's mailbox answers exactly as a missing one; read-only admins and keys
are refused; the removal is audited as the mailbox page's button is, and the owner then logs in
to `/me/` with the password alone."""

from __future__ import annotations

from dataclasses import dataclass

import pyotp
import pytest
import sqlalchemy as sa

from dinomail.schema import auditlog
from dinomail.store import EVERYTHING, Store, admins, apikeys, ownerlogin
from tests.support.adminapi import (
    PASSWORD,
    add_admin,
    add_domain,
    api_client,
    fast_admin_hashing,
    key_header,
)
from tests.support.selfservice import add_owner, me_client, try_owner_login

MISSING_ID = 999_999


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@dataclass
class Setup:
    mine: int  # bob@mine.org, with an app
    theirs: int  # carol@theirs.org, with an app
    root: dict[str, str]
    tenant: dict[str, str]  # the domain admin of mine.org
    read_only_key: dict[str, str]  # the tenant's, read-only
    read_only_admin: dict[str, str]  # a read-only superadmin


async def _enrol(store: Store, mailbox_id: int) -> None:
    async with store.write() as conn:
        app = pyotp.TOTP(await ownerlogin.start_totp(conn, EVERYTHING, mailbox_id))
        await ownerlogin.confirm_totp(conn, "owner", EVERYTHING, mailbox_id, app.now())


@pytest.fixture
async def setup(store: Store) -> Setup:
    mine = await add_domain(store, "mine.org")
    await add_domain(store, "theirs.org")
    bob = int((await add_owner(store, "bob@mine.org"))["id"])
    carol = int((await add_owner(store, "carol@theirs.org"))["id"])
    for mailbox_id in (bob, carol):
        await _enrol(store, mailbox_id)
    root = await add_admin(store, "root", superadmin=True)
    tenant = await add_admin(store, "tenant", domain_ids=(mine["id"],))
    read_only_key = await add_admin(store, "viewer", domain_ids=(mine["id"],), read_only=True)
    async with store.write() as conn:
        reader = await admins.create(conn, "test", username="reader", password=PASSWORD,
                                     is_superadmin=True, read_only=True)
        _, secret = await apikeys.create(conn, "test", reader["id"])
    return Setup(bob, carol, root.headers, tenant.headers, read_only_key.headers,
                 key_header("reader", secret))


def url(mailbox_id: int) -> str:
    return f"/api/mailbox/{mailbox_id}/twofactor/"


async def enabled(store: Store, *mailbox_ids: int) -> list[bool]:
    async with store.read() as conn:
        return [await ownerlogin.totp_enabled(conn, mailbox_id) for mailbox_id in mailbox_ids]


async def removals(store: Store) -> list[tuple[str, str, str]]:
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(auditlog.c.actor, auditlog.c.object_type, auditlog.c.object_repr)
            .where(auditlog.c.action == "remove_totp").order_by(auditlog.c.id))
        return [(row.actor, row.object_type, row.object_repr) for row in rows]


async def login_asks_for_a_code(store: Store, email: str) -> bool:
    async with me_client(store) as client:
        answer = await try_owner_login(client, email)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location in ("/me/", "/me/login/code")
        if location == "/me/":
            assert (await client.get("/me/")).status_code == 200
        return location == "/me/login/code"


async def test_another_tenants_mailbox_answers_as_a_missing_one(
    store: Store, setup: Setup
) -> None:
    async with api_client(store) as client:
        theirs = await client.delete(url(setup.theirs), headers=setup.tenant)
        missing = await client.delete(url(MISSING_ID), headers=setup.tenant)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.json()["code"] == "not_found"
    assert dict(theirs.headers) == dict(missing.headers)
    assert await enabled(store, setup.mine, setup.theirs) == [True, True]
    assert await removals(store) == []
    assert await login_asks_for_a_code(store, "carol@theirs.org")


async def test_read_only_admins_and_keys_are_refused(store: Store, setup: Setup) -> None:
    async with api_client(store) as client:
        for headers, who in ((setup.read_only_key, "API key"),
                             (setup.read_only_admin, "admin")):
            for mailbox_id in (setup.mine, setup.theirs, MISSING_ID):
                refused = await client.delete(url(mailbox_id), headers=headers)
                assert refused.status_code == 403, refused.text
                assert refused.json() == {"error": f"this {who} is read-only",
                                          "field": None, "code": "read_only"}
        unknown = await client.delete(url(setup.mine))
        assert unknown.status_code == 401
    assert await enabled(store, setup.mine, setup.theirs) == [True, True]
    assert await removals(store) == []


async def test_the_domain_admin_removes_their_owners_app(store: Store, setup: Setup) -> None:
    assert await login_asks_for_a_code(store, "bob@mine.org")
    async with api_client(store) as client:
        done = await client.delete(url(setup.mine), headers=setup.tenant)
        assert (done.status_code, done.content) == (204, b"")
        # Nothing left to remove: the same answer, and nothing more in the audit log.
        again = await client.delete(url(setup.mine), headers=setup.tenant)
        assert again.status_code == 204
    assert await enabled(store, setup.mine, setup.theirs) == [False, True]
    (entry,) = await removals(store)
    assert entry[1:] == ("mailbox", "bob@mine.org")
    assert entry[0].startswith("apikey:") and entry[0].endswith("(tenant)")
    assert not await login_asks_for_a_code(store, "bob@mine.org")
    assert await login_asks_for_a_code(store, "carol@theirs.org")


async def test_a_superadmin_removes_any_owners_app(store: Store, setup: Setup) -> None:
    async with api_client(store) as client:
        done = await client.delete(url(setup.theirs), headers=setup.root)
        assert done.status_code == 204
        missing = await client.delete(url(MISSING_ID), headers=setup.root)
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        not_an_id = await client.delete("/api/mailbox/0/twofactor/", headers=setup.root)
        assert not_an_id.status_code == 404
        document = (await client.get("/api/openapi.json")).json()
    operation = document["paths"]["/api/mailbox/{id}/twofactor/"]["delete"]
    assert operation["operationId"] == "mailbox_twofactor_remove"
    assert await enabled(store, setup.mine, setup.theirs) == [True, False]
    assert [(actor.endswith("(root)"), name) for actor, _, name in await removals(store)] == [
        (True, "carol@theirs.org")]
    assert not await login_asks_for_a_code(store, "carol@theirs.org")
    assert await login_asks_for_a_code(store, "bob@mine.org")

