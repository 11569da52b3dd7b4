"""A domain's DKIM key in the pages: the key made there signs a message that dkimpy verifies
with the record the page shows, served by a real DNS server; the DNS check finds it; rotation
gets a new selector; bad input changes nothing; a domain admin sees only their domains'."""

from __future__ import annotations

import html
import re

import dkim as dkimpy
import httpx
import pytest

from dinomail import schema
from dinomail.dnscheck import run_now
from dinomail.store import EVERYTHING, Store, admins, audit
from dinomail.store import dns as dns_store
from tests.support.admin_pages import log_in, page_settings, pages_client, snapshot
from tests.support.adminapi import PASSWORD, add_domain, fast_admin_hashing
from tests.support.dkim_signing import served_record, shown, sign
from tests.support.dns import running_dns, txt, txt_lookup

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: signed with the key made in the pages\r\n"
    b"Date: Sun, 06 Dec 2026 06:00:00 +0000\r\n"
    b"Message-ID: <pages-key@example.test>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def ids(store: Store) -> dict[str, int]:
    mine = await add_domain(store, "example.test")
    theirs = await add_domain(store, "other.test")
    # A name so long that a selector of the longest kind makes its record's name too long.
    long = await add_domain(store, ".".join(letter * 60 for letter in "abc") + ".test")
    async with store.write() as conn:
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
        await admins.create(conn, "test", username="alice", password=PASSWORD,
                            domain_ids=[mine["id"]])
    return {"mine": mine["id"], "theirs": theirs["id"], "long": long["id"]}


@pytest.fixture
async def client(store: Store, ids: dict[str, int]) -> httpx.AsyncClient:
    async with pages_client(store) as client:
        yield client  # type: ignore[misc]


async def test_the_key_made_in_the_pages_signs_mail_that_verifies_with_the_record_shown(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    url = f"/virtual-domains/{ids['mine']}/dkim"
    empty = await root.get(url)
    assert empty.status_code == 200 and "no DKIM key yet" in empty.text
    made = await root.post(url, {"algorithm": "rsa", "key_bits": "2048", "selector": ""})
    assert (made.status_code, made.headers["location"]) == (303, url)
    page = (await root.get(url)).text
    name, value = shown(page, "dkim-record-name"), shown(page, "dkim-record-value")
    selector = name.split("._domainkey.")[0]
    assert name == f"{selector}._domainkey.example.test" and selector.startswith("dm")
    assert value.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert "PRIVATE KEY" not in page

    async with store.write() as conn:
        private = await dns_store.dkim_private_key(conn, "test", EVERYTHING, ids["mine"])
    strings = [value[i:i + 255] for i in range(0, len(value), 255)]
    with running_dns([txt(name, *strings)], local=["example.test"]) as server:
        dnsfunc = txt_lookup(server)
        signature = dkimpy.sign(MESSAGE, selector.encode(), b"example.test",
                                private["dkim_private_key"].encode(),
                                include_headers=[b"from", b"to", b"subject", b"date"])
        assert dkimpy.verify(signature + MESSAGE, dnsfunc=dnsfunc)
        assert not dkimpy.verify(signature + MESSAGE.replace(b"Hello", b"Bye"), dnsfunc=dnsfunc)

        # The DNS check of the pages (the background checker's code) finds the record.
        checking = await root.post(f"/virtual-domains/{ids['mine']}/update-status",
                                   {"next": url})
        assert (checking.status_code, checking.headers["location"]) == (303, url)
        await run_now(store, page_settings(DNS_RESOLVERS=(server.nameserver,),
                                           DNS_TIMEOUT=2.0), EVERYTHING, ids["mine"])
    checked = (await root.get(url)).text
    assert 'badge badge--ok">OK</span>' in checked


async def test_rotation_gets_a_new_selector_and_says_to_keep_the_old_record(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    url = f"/virtual-domains/{ids['mine']}/dkim"
    assert (await root.post(url, {"algorithm": "rsa", "key_bits": "2048"})).status_code == 303
    first = shown((await root.get(url)).text, "dkim-record-name").split(".")[0]
    rotated = await root.post(url, {"algorithm": "ed25519", "key_bits": "2048",
                                    "selector": "Next1"})
    assert rotated.status_code == 303
    page = (await root.get(url)).text
    assert shown(page, "dkim-record-name") == "next1._domainkey.example.test"
    assert shown(page, "dkim-record-value").startswith("v=DKIM1; k=ed25519; p=")
    assert f"keep the record of the old selector {first}" in html.unescape(page)
    async with store.read() as conn:
        logged = (await audit.list_window(conn, EVERYTHING, limit=10)).rows
    actions = [(row["action"], row["domain_id"], row["address"]) for row in logged
               if row["object_type"] == "dkimkey"]
    assert actions == [("rotate_dkim", ids["mine"], "198.51.100.7"),
                       ("generate_dkim", ids["mine"], "198.51.100.7")]
    # In French too.
    french = await root.post("/language", {"language": "fr", "next": url})
    assert french.status_code == 303
    assert "L’enregistrement à publier" in (await root.get(url)).text


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"algorithm": "dsa"}, "algorithm", "Choose RSA or Ed25519."),
    ({"algorithm": "rsa", "key_bits": "1024"}, "key_bits", "Choose 2048, 3072 or 4096 bits."),
    ({"algorithm": "rsa", "selector": "bad_selector"}, "selector", "A selector holds letters"),
    ({"algorithm": "rsa", "selector": "x" * 64}, "selector", "A selector is at most 63"),
    ({"algorithm": "rsa", "selector": "s" * 63}, "selector",
     "The selector is too long for this domain"),
])
async def test_bad_dkim_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int], form: dict[str, str],
    field: str, message: str,
) -> None:
    root = await log_in(client, "root")
    tables = (schema.virtualdomain, schema.dkimkey, schema.auditlog)
    before = await snapshot(store, tables)
    domain_id = ids["long"] if "too long" in message else ids["mine"]
    answer = await root.post(f"/virtual-domains/{domain_id}/dkim", form)
    assert answer.status_code == 400
    error = re.search(rf'id="error-{field}">.*?</svg>(.*?)</p>', answer.text, re.S)
    assert error and message in html.unescape(error.group(1))
    assert await snapshot(store, tables) == before


async def test_a_domain_admin_has_the_dkim_page_of_their_domains_only(
    client: httpx.AsyncClient, ids: dict[str, int],
) -> None:
    alice = await log_in(client, "alice")
    assert (await alice.get(f"/virtual-domains/{ids['mine']}/dkim")).status_code == 200
    theirs = await alice.get(f"/virtual-domains/{ids['theirs']}/dkim")
    missing = await alice.get("/virtual-domains/999999/dkim")
    assert theirs.status_code == missing.status_code == 404
    posted = await alice.post(f"/virtual-domains/{ids['theirs']}/dkim", {"algorithm": "rsa"})
    assert posted.status_code == 404
    made = await alice.post(f"/virtual-domains/{ids['mine']}/dkim",
                            {"algorithm": "ed25519"})
    assert made.status_code == 303


async def test_an_ed25519_key_made_in_the_pages_signs_mail_that_verifies_with_the_record_shown(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    url = f"/virtual-domains/{ids['mine']}/dkim"
    made = await root.post(url, {"algorithm": "ed25519", "key_bits": "2048", "selector": "ed1"})
    assert made.status_code == 303
    page = (await root.get(url)).text
    assert shown(page, "dkim-record-name") == "ed1._domainkey.example.test"
    assert shown(page, "dkim-record-value").startswith("v=DKIM1; k=ed25519; p=")
    async with store.write() as conn:
        private = await dns_store.dkim_private_key(conn, "test", EVERYTHING, ids["mine"])
    assert private["algorithm"] == "ed25519"
    record = served_record(page, "dkim-record-name", "dkim-record-value")
    with running_dns([record], local=["example.test"]) as server:
        dnsfunc = txt_lookup(server)
        signed = sign(MESSAGE, "ed1", "example.test", private["dkim_private_key"])
        assert b"a=ed25519-sha256" in signed
        assert dkimpy.verify(signed, dnsfunc=dnsfunc)
        assert not dkimpy.verify(signed.replace(b"Hello", b"Bye"), dnsfunc=dnsfunc)


async def test_rotation_keeps_the_old_selector_published_until_it_is_retired(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    url = f"/virtual-domains/{ids['mine']}/dkim"
    assert (await root.post(url, {"algorithm": "rsa", "selector": "old1"})).status_code == 303
    async with store.write() as conn:
        old_key = await dns_store.dkim_private_key(conn, "test", EVERYTHING, ids["mine"])
    # Signed with the old key before the rotation, delivered after it.
    before = sign(MESSAGE, "old1", "example.test", old_key["dkim_private_key"])
    assert (await root.post(url, {"algorithm": "ed25519", "selector": "new1"})
            ).status_code == 303
    page = (await root.get(url)).text
    assert shown(page, "dkim-record-name") == "new1._domainkey.example.test"
    assert shown(page, "retiring-name-old1") == "old1._domainkey.example.test"
    assert shown(page, "retiring-value-old1").startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert "Retire the selector old1" in page
    records = [served_record(page, "dkim-record-name", "dkim-record-value"),
               served_record(page, "retiring-name-old1", "retiring-value-old1")]
    with running_dns(records, local=["example.test"]) as server:
        assert dkimpy.verify(before, dnsfunc=txt_lookup(server))

    retired = await root.post(f"{url}/retire", {"selector": "old1"})
    assert (retired.status_code, retired.headers["location"]) == (303, url)
    page = html.unescape((await root.get(url)).text)
    assert "The selector old1 of example.test is retired" in page
    assert "retiring-name-old1" not in page and "old1._domainkey" not in page
    assert shown(page, "dkim-record-name") == "new1._domainkey.example.test"
    async with store.read() as conn:
        logged = (await audit.list_window(conn, EVERYTHING, limit=10)).rows
    assert [(row["action"], row["address"]) for row in logged
            if row["action"] == "retire_dkim"] == [("retire_dkim", "198.51.100.7")]
    # In French too.
    assert (await root.post(url, {"algorithm": "rsa", "selector": "newer"})).status_code == 303
    assert (await root.post("/language", {"language": "fr", "next": url})).status_code == 303
    assert "Retirer le sélecteur new1" in html.unescape((await root.get(url)).text)


@pytest.mark.parametrize(("path", "form", "field", "message"), [
    ("/retire", {"selector": "nope"}, "retire-selector",
     "The domain has no retiring selector nope."),
    ("/retire", {"selector": "new1"}, "retire-selector",
     "new1 is the domain's current selector: only the selector of a replaced key"),
    ("/retire", {"selector": "bad_selector"}, "retire-selector", "A selector holds letters"),
    ("/retire", {"selector": " "}, "retire-selector", "A selector is required"),
    ("", {"algorithm": "rsa", "selector": "old1"}, "selector",
     "The selector old1 still publishes a previous key of the domain"),
    ("", {"algorithm": "rsa", "selector": "new1"}, "selector",
     "The domain publishes its current key under the selector new1"),
])
async def test_bad_retire_and_rotation_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int], path: str,
    form: dict[str, str], field: str, message: str,
) -> None:
    root = await log_in(client, "root")
    url = f"/virtual-domains/{ids['mine']}/dkim"
    for selector in ("old1", "new1"):
        assert (await root.post(url, {"algorithm": "ed25519", "selector": selector})
                ).status_code == 303
    tables = (schema.virtualdomain, schema.dkimkey, schema.dkimretiring, schema.auditlog)
    before = await snapshot(store, tables)
    answer = await root.post(url + path, form)
    assert answer.status_code == 400
    error = re.search(rf'id="error-{field}"[^>]*>.*?</svg>(.*?)</p>', answer.text, re.S)
    assert error and message in html.unescape(error.group(1))
    assert await snapshot(store, tables) == before


async def test_retiring_in_the_pages_is_scoped_and_needs_the_security_token(
    client: httpx.AsyncClient, store: Store, ids: dict[str, int],
) -> None:
    root = await log_in(client, "root")
    for domain_id in (ids["mine"], ids["theirs"]):
        for selector in ("old1", "new1"):
            assert (await root.post(f"/virtual-domains/{domain_id}/dkim",
                                    {"algorithm": "ed25519", "selector": selector})
                    ).status_code == 303
    await root.post("/logout")
    tables = (schema.dkimretiring, schema.auditlog)
    before = await snapshot(store, tables)
    alice = await log_in(client, "alice")
    theirs = await alice.post(f"/virtual-domains/{ids['theirs']}/dkim/retire",
                              {"selector": "old1"})
    missing = await alice.post("/virtual-domains/999999/dkim/retire", {"selector": "old1"})
    assert theirs.status_code == missing.status_code == 404
    for token in (None, "forged"):
        data = {"selector": "old1"} if token is None else {"selector": "old1",
                                                           "csrf_token": token}
        answer = await client.post(f"/virtual-domains/{ids['mine']}/dkim/retire", data=data)
        assert answer.status_code == 403 and "without a valid security token" in answer.text
    assert await snapshot(store, tables) == before
    mine = await alice.post(f"/virtual-domains/{ids['mine']}/dkim/retire", {"selector": "old1"})
    assert mine.status_code == 303
