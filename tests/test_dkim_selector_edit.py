"""A domain's DKIM selector changed by hand (the API's PATCH and PUT of the domain, the domain
page's form) keeps the old selector and its record as retiring, as a rotation does: mail signed
with the old key before the change still verifies against DNS until an admin retires it, and an
export carries the retiring selector to the import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dkim as dkimpy
import httpx
import pytest

from dinomail import dkim, migrate, schema
from dinomail.store import EVERYTHING, Store
from dinomail.store import dns as dns_store
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import import_document
from tests.support.admin_pages import log_in, pages_client, snapshot
from tests.support.adminapi import Account, add_admin, add_domain, api_client, fast_admin_hashing
from tests.support.dkim_signing import served_record, shown, sign
from tests.support.dns import running_dns, txt, txt_lookup

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: signed before the selector changed\r\n"
    b"Date: Sun, 06 Dec 2026 06:00:00 +0000\r\n"
    b"Message-ID: <selector-edit@example.test>\r\n"
    b"\r\n"
    b"Still on its way.\r\n"
)
TABLES = (schema.virtualdomain, schema.dkimkey, schema.dkimretiring)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def root(store: Store) -> Account:
    return await add_admin(store, "root", superadmin=True)


@pytest.fixture
async def client(store: Store) -> httpx.AsyncClient:
    async with api_client(store) as client:
        yield client  # type: ignore[misc]


def served(*keys: dict[str, Any]) -> list[str]:
    return [txt(key["record_name"], *key["txt_strings"]) for key in keys]


async def exported_retiring(store: Store, name: str) -> list[tuple[str, str, str]]:
    doc = json.loads("".join([piece async for piece in export_document(store)]))
    [domain] = [row for row in doc["domains"] if row["name"] == name]
    return [(key["selector"], key["algorithm"], key["public_key"])
            for key in domain.get("dkim_retiring", [])]


async def round_trip(store: Store, tmp_path: Path) -> Store:
    """The store exported and imported into a new SQLite database."""
    doc = json.loads("".join([piece async for piece in export_document(store)]))
    target = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    await migrate.upgrade(target.engine)
    await import_document(target, doc)
    return target


async def dkim_of(client: httpx.AsyncClient, root: Account, domain_id: int) -> dict[str, Any]:
    answer = await client.get(f"/api/virtualdomain/{domain_id}/dkim/", headers=root.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def make_key(client: httpx.AsyncClient, root: Account, domain_id: int,
                   **body: str) -> dict[str, Any]:
    """A key made for the domain (a rotation if it has one), as the API answers it."""
    answer = await client.post(f"/api/virtualdomain/{domain_id}/dkim/", json=body,
                               headers=root.headers)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_patched_selector_stays_published_until_retired_and_is_exported(
    client: httpx.AsyncClient, root: Account, store: Store, tmp_path: Path,
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/"
    old = await make_key(client, root, domain["id"], selector="old1")
    private = (await client.get(f"{url}dkim/private/", headers=root.headers)).json()
    before = sign(MESSAGE, "old1", "example.test", private["private_key"])

    # The admin moves to a key made elsewhere, under a selector of their own.
    outside = dkim.generate_key(dkim.ED25519, dkim.ED25519_KEY_BITS)
    patched = await client.patch(url, json={"dkim_key_name": "ext1",
                                            "dkim_key": outside.public_value},
                                 headers=root.headers)
    assert patched.status_code == 202, patched.text
    now = await dkim_of(client, root, domain["id"])
    assert now["selector"] == "ext1" and now["txt_record"].startswith("v=DKIM1; k=ed25519;")
    [retiring] = now["retiring"]
    assert (retiring["selector"], retiring["algorithm"], retiring["key_bits"]) == (
        "old1", "rsa", 2048)
    assert retiring["txt_record"] == old["txt_record"]
    assert retiring["zone_line"] == old["zone_line"]
    with running_dns(served(now, retiring), local=["example.test"]) as server:
        assert dkimpy.verify(before, dnsfunc=txt_lookup(server))
    # Without the retiring record, the mail on its way would fail: what this keeps.
    with running_dns(served(now), local=["example.test"]) as server:
        assert not dkimpy.verify(before, dnsfunc=txt_lookup(server))

    assert await exported_retiring(store, "example.test") == [
        ("old1", "rsa", old["dkim_key"])]
    target = await round_trip(store, tmp_path)
    try:
        async with target.read() as conn:
            [copied] = await dns_store.retiring_keys(conn, EVERYTHING, domain["id"])
        assert (copied["selector"], copied["public_key"]) == ("old1", old["dkim_key"])
    finally:
        await target.close()

    retired = await client.post(f"{url}dkim/retire/", json={"selector": "old1"},
                                headers=root.headers)
    assert retired.status_code == 200 and retired.json()["retiring"] == []
    assert await exported_retiring(store, "example.test") == []


async def test_a_put_selector_is_kept_as_retiring_too(
    client: httpx.AsyncClient, root: Account, store: Store,
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/"
    old = await make_key(client, root, domain["id"], selector="old1", algorithm="ed25519")
    # Only the selector's name changes: the same key, published under a new name.
    replaced = await client.put(url, json={"name": "example.test", "dkim_key_name": "Mail2"},
                                headers=root.headers)
    assert replaced.status_code == 204, replaced.text
    now = await dkim_of(client, root, domain["id"])
    assert now["selector"] == "Mail2" and now["dkim_key"] == old["dkim_key"]
    assert [(key["selector"], key["algorithm"], key["txt_record"])
            for key in now["retiring"]] == [("old1", "ed25519", old["txt_record"])]


async def test_a_selector_typed_back_in_is_current_again_and_the_export_imports(
    client: httpx.AsyncClient, root: Account, store: Store, tmp_path: Path,
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/"
    old = await make_key(client, root, domain["id"], selector="old1")
    new = await make_key(client, root, domain["id"], selector="new1")
    assert [key["selector"] for key in new["retiring"]] == ["old1"]
    # Back to the old key by hand: the rotated-to selector is the one to keep published now.
    back = await client.patch(url, json={"dkim_key_name": "OLD1", "dkim_key": old["dkim_key"]},
                              headers=root.headers)
    assert back.status_code == 202, back.text
    now = await dkim_of(client, root, domain["id"])
    assert [(key["selector"], key["txt_record"]) for key in now["retiring"]] == [
        ("new1", new["txt_record"])]
    assert await exported_retiring(store, "example.test") == [
        ("new1", "rsa", new["dkim_key"])]
    # The import refuses a retiring selector that is the current one: there is none.
    target = await round_trip(store, tmp_path)
    try:
        async with target.read() as conn:
            assert [row["selector"] for row in await dns_store.retiring_keys(
                conn, EVERYTHING, domain["id"])] == ["new1"]
    finally:
        await target.close()


async def test_what_is_no_selector_change_keeps_nothing(
    client: httpx.AsyncClient, root: Account, store: Store,
) -> None:
    bare = await add_domain(store, "bare.test")
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/"
    await make_key(client, root, domain["id"], selector="old1")
    other = dkim.generate_key(dkim.RSA, dkim.DEFAULT_RSA_BITS).public_value
    before = await snapshot(store, (schema.dkimretiring,))
    for body in (
        {"display_name": "Example"},  # no selector at all
        {"dkim_key_name": "old1"},  # the same selector
        {"dkim_key_name": "Old1 "},  # the same DNS name
        {"dkim_key": other},  # another key under the same selector: one record there
    ):
        answer = await client.patch(url, json=body, headers=root.headers)
        assert answer.status_code == 202, (body, answer.text)
    # A domain that published no key has no record to keep.
    assert (await client.patch(f"/api/virtualdomain/{bare['id']}/",
                               json={"dkim_key_name": "sel1"}, headers=root.headers)
            ).status_code == 202
    assert await snapshot(store, (schema.dkimretiring,)) == before
    # A key that is none (typed by hand) verifies nothing, so it is not kept either.
    assert (await client.patch(url, json={"dkim_key": "not a key"}, headers=root.headers)
            ).status_code == 202
    assert (await client.patch(url, json={"dkim_key_name": "sel2"}, headers=root.headers)
            ).status_code == 202
    assert await snapshot(store, (schema.dkimretiring,)) == before


async def test_a_refused_edit_keeps_nothing_and_a_tenant_edits_only_their_domain(
    client: httpx.AsyncClient, root: Account, store: Store,
) -> None:
    mine = await add_domain(store, "mine.test")
    theirs = await add_domain(store, "theirs.test")
    for domain in (mine, theirs):
        await make_key(client, root, domain["id"], selector="old1")
    admin = await add_admin(store, "domainadmin", domain_ids=(mine["id"],))
    before = await snapshot(store, TABLES)
    refused = [
        (root, mine, {"dkim_key_name": "new1", "max_mailboxes": -1}, 400),
        (root, mine, {"dkim_key_name": "x" * 201}, 400),
        (admin, mine, {"dkim_key_name": "new1", "name": "renamed.test"}, 403),
        (admin, theirs, {"dkim_key_name": "new1"}, 404),
    ]
    for account, domain, body, status in refused:
        answer = await client.patch(f"/api/virtualdomain/{domain['id']}/", json=body,
                                    headers=account.headers)
        assert answer.status_code == status, (body, answer.text)
    assert await snapshot(store, TABLES) == before
    assert (await client.patch(f"/api/virtualdomain/{mine['id']}/",
                               json={"dkim_key_name": "new1"}, headers=admin.headers)
            ).status_code == 202
    assert [key["selector"] for key in (await dkim_of(client, admin, mine["id"]))[
        "retiring"]] == ["old1"]
    assert (await dkim_of(client, root, theirs["id"]))["retiring"] == []


async def test_the_domain_page_keeps_the_old_selector_as_retiring(store: Store) -> None:
    domain = await add_domain(store, "example.test")
    await add_admin(store, "root", superadmin=True)
    async with pages_client(store) as client:
        root = await log_in(client, "root")
        dkim_url = f"/virtual-domains/{domain['id']}/dkim"
        assert (await root.post(dkim_url, {"algorithm": "rsa", "selector": "old1"})
                ).status_code == 303
        async with store.write() as conn:
            old_key = await dns_store.dkim_private_key(conn, "test", EVERYTHING, domain["id"])
        before = sign(MESSAGE, "old1", "example.test", old_key["dkim_private_key"])
        outside = dkim.generate_key(dkim.ED25519, dkim.ED25519_KEY_BITS)
        edited = await root.post(f"/virtual-domains/{domain['id']}/edit", {
            "name": "example.test", "active": "on", "dkim_key_name": "ext1",
            "dkim_key": outside.public_value})
        assert edited.status_code == 303, edited.text
        page = (await root.get(dkim_url)).text
    assert shown(page, "dkim-record-name") == "ext1._domainkey.example.test"
    assert shown(page, "retiring-name-old1") == "old1._domainkey.example.test"
    assert "Retire the selector old1" in page
    records = [served_record(page, "dkim-record-name", "dkim-record-value"),
               served_record(page, "retiring-name-old1", "retiring-value-old1")]
    with running_dns(records, local=["example.test"]) as server:
        assert dkimpy.verify(before, dnsfunc=txt_lookup(server))

