"""DKIM key rotation in the API: the replaced selector stays listed (and checked) with its record
until retired, so mail signed with the old key before the rotation still verifies against DNS;
retiring is audited, scoped, and refuses what is not a retiring selector."""

from __future__ import annotations

from datetime import UTC, datetime

import dkim as dkimpy
import httpx
import pytest

from dinomail import dkim, schema
from dinomail.dnscheck import run_now
from dinomail.store import EVERYTHING, Store
from tests.support.admin_pages import page_settings, snapshot
from tests.support.adminapi import Account, add_admin, add_domain, api_client, fast_admin_hashing
from tests.support.dkim_signing import sign
from tests.support.dns import running_dns, txt, txt_lookup

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: signed before the rotation\r\n"
    b"Date: Sun, 06 Dec 2026 06:00:00 +0000\r\n"
    b"Message-ID: <rotation@example.test>\r\n"
    b"\r\n"
    b"Still on its way.\r\n"
)
TABLES = (schema.virtualdomain, schema.dkimkey, schema.dkimretiring, schema.auditlog)


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


def served(*keys: dict) -> list[str]:
    """The TXT records of the given records (the API's shape), as a zone would publish them."""
    return [txt(key["record_name"], *key["txt_strings"]) for key in keys]


async def test_rotate_keeps_the_old_selector_verifying_until_retired(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/dkim/"
    old = (await client.post(url, json={"selector": "old1"}, headers=root.headers)).json()
    assert old["retiring"] == []
    private = (await client.get(f"{url}private/", headers=root.headers)).json()["private_key"]
    # Signed with the old key BEFORE the rotation: this mail may still be on its way after it.
    before = sign(MESSAGE, "old1", "example.test", private)

    rotated = await client.post(url, json={"selector": "new1", "algorithm": "ed25519"},
                                headers=root.headers)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["selector"] == "new1" and new["txt_record"].startswith("v=DKIM1; k=ed25519; p=")
    [retiring] = new["retiring"]
    assert retiring["selector"] == "old1" and retiring["algorithm"] == "rsa"
    assert retiring["key_bits"] == 2048
    assert retiring["record_name"] == "old1._domainkey.example.test"
    assert retiring["txt_record"] == old["txt_record"]
    assert retiring["zone_line"] == old["zone_line"]
    assert datetime.fromisoformat(retiring["replaced_at"]) <= datetime.now(UTC)
    assert (await client.get(url, headers=root.headers)).json()["retiring"] == [retiring]
    # The signer gets the new key only: the old private key is gone.
    exported = (await client.get(f"{url}private/", headers=root.headers)).json()
    assert exported["selector"] == "new1"
    assert dkim.public_value_of_private(exported["private_key"]) == new["dkim_key"]

    with running_dns(served(new, retiring), local=["example.test"]) as server:
        dnsfunc = txt_lookup(server)
        assert dkimpy.verify(before, dnsfunc=dnsfunc)
        after = sign(MESSAGE, "new1", "example.test", exported["private_key"])
        assert b"a=ed25519-sha256" in after
        assert dkimpy.verify(after, dnsfunc=dnsfunc)
        assert not dkimpy.verify(after.replace(b"Still", b"Not"), dnsfunc=dnsfunc)
        # The DNS check checks both records: both published, all is well.
        report = await run_now(store, page_settings(DNS_RESOLVERS=(server.nameserver,),
                                                    DNS_TIMEOUT=2.0), EVERYTHING, domain["id"])
    check = report.check("dkim")
    assert check is not None and str(check.status) == "ok", check
    assert [query.name for query in check.queries] == [
        "new1._domainkey.example.test", "old1._domainkey.example.test"]
    assert check.data["retiring"] == ["old1"]

    retired = await client.post(f"{url}retire/", json={"selector": "OLD1"},
                                headers=root.headers)
    assert retired.status_code == 200, retired.text
    assert retired.json()["retiring"] == [] and retired.json()["selector"] == "new1"
    assert (await client.get(url, headers=root.headers)).json()["retiring"] == []
    entries = (await client.get("/api/auditlog/", headers=root.headers)).json()["objects"]
    assert [(entry["action"], entry["old_values"]) for entry in entries
            if entry["action"] == "retire_dkim"] == [("retire_dkim", {"selector": "old1"})]
    # Once retired, the old selector's name is free again.
    again = await client.post(url, json={"selector": "old1"}, headers=root.headers)
    assert again.status_code == 201
    assert [old["selector"] for old in again.json()["retiring"]] == ["new1"]


async def test_the_dns_check_warns_when_a_retiring_record_is_gone_too_early(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/dkim/"
    assert (await client.post(url, json={"selector": "old1"}, headers=root.headers)
            ).status_code == 201
    new = (await client.post(url, json={"selector": "new1"}, headers=root.headers)).json()
    with running_dns(served(new), local=["example.test"]) as server:
        report = await run_now(store, page_settings(DNS_RESOLVERS=(server.nameserver,),
                                                    DNS_TIMEOUT=2.0), EVERYTHING, domain["id"])
    check = report.check("dkim")
    assert check is not None and str(check.status) == "warning", check
    assert any("no TXT record at old1._domainkey.example.test for the retiring selector old1"
               in problem for problem in check.problems), check.problems


async def test_bad_rotation_and_retire_input_changes_nothing(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "example.test")
    url = f"/api/virtualdomain/{domain['id']}/dkim/"
    assert (await client.post(url, json={"selector": "old1"}, headers=root.headers)
            ).status_code == 201
    assert (await client.post(url, json={"selector": "new1"}, headers=root.headers)
            ).status_code == 201
    before = await snapshot(store, TABLES)
    refusals = [
        (f"{url}retire/", {"selector": "new1"}, 409),  # the current selector
        (f"{url}retire/", {"selector": "nope"}, 400),  # not a retiring one
        (f"{url}retire/", {"selector": "bad_selector"}, 400),
        (f"{url}retire/", {"selector": 7}, 400),
        (f"{url}retire/", {}, 400),
        (url, {"selector": "new1"}, 409),  # a new key under the current selector
        (url, {"selector": "old1"}, 409),  # ... or under a retiring one
    ]
    for path, body, status in refusals:
        answer = await client.post(path, json=body, headers=root.headers)
        assert (answer.status_code, answer.json()["field"]) == (status, "selector"), (path, body)
    extra = await client.post(f"{url}retire/", json={"selector": "old1", "x": 1},
                              headers=root.headers)
    assert (extra.status_code, extra.json()["field"]) == (400, "x")
    assert await snapshot(store, TABLES) == before


async def test_retiring_is_scoped_and_needs_write_rights(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    mine = await add_domain(store, "mine.test")
    theirs = await add_domain(store, "theirs.test")
    for domain in (mine, theirs):
        for selector in ("old1", "new1"):
            assert (await client.post(f"/api/virtualdomain/{domain['id']}/dkim/",
                                      json={"selector": selector}, headers=root.headers)
                    ).status_code == 201
    admin = await add_admin(store, "domainadmin", domain_ids=(mine["id"],))
    reader = await add_admin(store, "reader", domain_ids=(mine["id"],), read_only=True)
    before = await snapshot(store, TABLES)
    body = {"selector": "old1"}
    other = await client.post(f"/api/virtualdomain/{theirs['id']}/dkim/retire/", json=body,
                              headers=admin.headers)
    missing = await client.post("/api/virtualdomain/999999/dkim/retire/", json=body,
                                headers=admin.headers)
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    assert (await client.post(f"/api/virtualdomain/{mine['id']}/dkim/retire/", json=body,
                              headers=reader.headers)).status_code == 403
    assert await snapshot(store, TABLES) == before
    mine_retired = await client.post(f"/api/virtualdomain/{mine['id']}/dkim/retire/",
                                     json=body, headers=admin.headers)
    assert mine_retired.status_code == 200 and mine_retired.json()["retiring"] == []


def test_default_selectors_avoid_every_published_one() -> None:
    moment = datetime(2026, 11, 25, 6, 30, 15, tzinfo=UTC)
    assert dkim.default_selector(moment, ["dm20261124"]) == "dm20261125"
    assert dkim.default_selector(moment, ["dm20261125"]) == "dm20261125063015"
    taken = ["dm20261125", "dm20261125063015", "dm20261125063015-2"]
    assert dkim.default_selector(moment, taken) == "dm20261125063015-3"
