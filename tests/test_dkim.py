"""DKIM keys: generation, the record to publish, reading published keys, the signer's files, and
the API (`/api/virtualdomain/<id>/dkim/`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import dkim as dkimpy
import dns.resolver
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dinomail import dkim
from dinomail.dnscheck.resolver import parse_nameserver
from dinomail.store import Store
from dinomail.validation import ValidationError
from tests.support.adminapi import (
    Account,
    add_admin,
    add_domain,
    api_client,
    fast_admin_hashing,
)
from tests.support.dns import running_dns, txt

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: key check\r\n"
    b"Date: Wed, 25 Nov 2026 06:00:00 +0000\r\n"
    b"Message-ID: <key-check@example.test>\r\n"
    b"\r\n"
    b"The key pair belongs together.\r\n"
)


@pytest.fixture(scope="module")
def rsa_pair() -> dkim.KeyPair:
    return dkim.generate_key()


# --- keys and records -----------------------------------------------------------------------------


def test_rsa_key_and_its_record(rsa_pair: dkim.KeyPair) -> None:
    assert (rsa_pair.algorithm, rsa_pair.key_bits) == ("rsa", 2048)
    assert rsa_pair.private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert dkim.public_value_of_private(rsa_pair.private_pem) == rsa_pair.public_value
    public = dkim.public_key_of(rsa_pair.public_value, "rsa")
    assert (public.algorithm, public.key_bits) == ("rsa", 2048)

    text = dkim.record_text("rsa", rsa_pair.public_value)
    assert text.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
    strings = dkim.split_txt(text)
    assert len(strings) == 2 and "".join(strings) == text
    assert all(len(part.encode()) <= 255 for part in strings) and len(strings[0]) == 255
    line = dkim.zone_line("dm1", "example.test", text)
    assert line == (f'dm1._domainkey.example.test. IN TXT ( "{strings[0]}" "{strings[1]}" )')


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_rsa_keys_split_into_more_strings(bits: int) -> None:
    pair = dkim.generate_key("rsa", bits)
    strings = dkim.split_txt(dkim.record_text("rsa", pair.public_value))
    assert dkim.public_key_of(pair.public_value).key_bits == bits
    assert len(strings) == 3 and all(len(part) <= 255 for part in strings)


def test_ed25519_key_pair_belongs_together() -> None:
    pair = dkim.generate_key("ed25519")
    assert (pair.algorithm, pair.key_bits) == ("ed25519", 256)
    raw = base64.b64decode(pair.public_value)
    assert len(raw) == 32  # RFC 8463: the bare key, not SubjectPublicKeyInfo
    text = dkim.record_text("ed25519", pair.public_value)
    assert text == f"v=DKIM1; k=ed25519; p={pair.public_value}"
    private = serialization.load_pem_private_key(pair.private_pem.encode(), password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    signature = private.sign(MESSAGE)
    # Verified with the key rebuilt from the published p= value alone.
    published = dkim.public_key_of(pair.public_value, "ed25519")
    ed25519.Ed25519PublicKey.from_public_bytes(published.material).verify(signature, MESSAGE)


def test_unknown_algorithms_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        dkim.generate_key("rsa", 1024)
    with pytest.raises(ValueError):
        dkim.generate_key("dsa")


async def test_rsa_signature_verifies_with_the_record_served_by_dns(
    rsa_pair: dkim.KeyPair,
) -> None:
    """dkimpy signs with the private key and verifies with the key it reads from a real DNS
    server publishing the split record: the pair belongs together, and the split is right."""
    text = dkim.record_text("rsa", rsa_pair.public_value)
    records = [txt("dm1._domainkey.example.test", *dkim.split_txt(text))]
    with running_dns(records, local=["example.test"]) as server:
        host, port = parse_nameserver(server.nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [host], port

        def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
            qname = name.decode() if isinstance(name, bytes) else name
            answer = resolver.resolve(qname, "TXT", lifetime=timeout, search=False)
            return b"".join(next(iter(answer)).strings)

        signature = dkimpy.sign(MESSAGE, b"dm1", b"example.test",
                                rsa_pair.private_pem.encode(),
                                include_headers=[b"from", b"to", b"subject", b"date"])
        signed = signature + MESSAGE
        assert dkimpy.verify(signed, dnsfunc=dnsfunc)
        tampered = signed.replace(b"belongs together", b"belongs elsewhere")
        assert not dkimpy.verify(tampered, dnsfunc=dnsfunc)
        # Signed with another key, the published record does not verify it.
        other = dkim.generate_key()
        forged = dkimpy.sign(MESSAGE, b"dm1", b"example.test", other.private_pem.encode())
        assert not dkimpy.verify(forged + MESSAGE, dnsfunc=dnsfunc)


def test_keys_compare_as_key_material(rsa_pair: dkim.KeyPair) -> None:
    key = dkim.public_key_of(rsa_pair.public_value)
    folded = " ".join(rsa_pair.public_value[i:i + 64]
                      for i in range(0, len(rsa_pair.public_value), 64))
    assert dkim.public_key_of(folded, "rsa") == key
    # The same key as a bare PKCS#1 RSAPublicKey, as some tools publish it.
    loaded = serialization.load_der_public_key(base64.b64decode(rsa_pair.public_value))
    assert isinstance(loaded, rsa.RSAPublicKey)
    pkcs1 = base64.b64encode(loaded.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).decode()
    assert pkcs1 != rsa_pair.public_value and dkim.public_key_of(pkcs1, "rsa") == key
    assert dkim.public_key_of(dkim.generate_key().public_value) != key
    for bad, algorithm, message in (
        ("not base64!", "rsa", "not valid base64"),
        ("", "rsa", "empty"),
        (base64.b64encode(b"x" * 40).decode(), "rsa", "not a valid RSA public key"),
        (base64.b64encode(b"x" * 31).decode(), "ed25519", "32 bytes"),
        (rsa_pair.public_value, "dsa", "not a key type"),
    ):
        with pytest.raises(dkim.DkimError, match=message):
            dkim.public_key_of(bad, algorithm)


def test_tag_lists() -> None:
    assert dkim.parse_tag_list(" v=DKIM1 ; k=rsa;p=AB CD ; ") == {
        "v": "DKIM1", "k": "rsa", "p": "AB CD"}
    for bad, message in (("v=DKIM1; v=DKIM1", "twice"), ("v=DKIM1; novalue", "tag=value"),
                         ("1v=x", "not a valid tag name")):
        with pytest.raises(dkim.DkimError, match=message):
            dkim.parse_tag_list(bad)


def test_selectors() -> None:
    assert dkim.normalize_selector(" Mail-2026 ") == "mail-2026"
    assert dkim.normalize_selector("a.b") == "a.b"
    for bad in ("", "-x", "a_b", "a..b", "x" * 64, None):
        with pytest.raises(ValidationError):
            dkim.normalize_selector(bad)
    moment = datetime(2026, 11, 25, 6, 30, 15, tzinfo=UTC)
    assert dkim.default_selector(moment) == "dm20261125"
    # A rotation on the same day still gets a new selector.
    assert dkim.default_selector(moment, "dm20261125") == "dm20261125063015"


def test_signer_files(tmp_path: Path, rsa_pair: dkim.KeyPair) -> None:
    keys = [dkim.SignerKey("example.test", "dm1", rsa_pair.private_pem),
            dkim.SignerKey("other.test", "s2", "-----BEGIN PRIVATE KEY-----\n...\n")]
    written = dkim.write_signer_files(tmp_path / "out", keys, key_dir="/etc/dkim")
    assert {path.name for path in written} == {
        "example.test.dm1.key", "other.test.s2.key", *dkim.SIGNER_FILES}
    out = tmp_path / "out"
    assert (out / "example.test.dm1.key").read_text() == rsa_pair.private_pem
    assert (out / "example.test.dm1.key").stat().st_mode & 0o777 == 0o600
    assert (out / "KeyTable").read_text() == (
        "dm1._domainkey.example.test example.test:dm1:/etc/dkim/example.test.dm1.key\n"
        "s2._domainkey.other.test other.test:s2:/etc/dkim/other.test.s2.key\n")
    assert (out / "SigningTable").read_text() == (
        "*@example.test dm1._domainkey.example.test\n*@other.test s2._domainkey.other.test\n")
    assert (out / "dkim_selectors.map").read_text() == "example.test dm1\nother.test s2\n"
    assert (out / "dkim_paths.map").read_text() == (
        "example.test /etc/dkim/example.test.dm1.key\nother.test /etc/dkim/other.test.s2.key\n")
    assert sorted(path.name for path in out.iterdir()) == sorted(path.name for path in written)


# --- the API --------------------------------------------------------------------------------------


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


async def test_generate_read_rotate_and_export(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    await add_domain(store, "example.test")
    before = (await client.get("/api/virtualdomain/1/dkim/", headers=root.headers)).json()
    assert before["selector"] is None and before["generated"] is False
    assert before["txt_record"] is None and before["check"] is None

    created = await client.post("/api/virtualdomain/1/dkim/", headers=root.headers)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/virtualdomain/1/dkim/"
    key = created.json()
    assert key["selector"].startswith("dm") and key["algorithm"] == "rsa"
    assert key["key_bits"] == 2048 and key["generated"] is True
    assert key["record_name"] == f"{key['selector']}._domainkey.example.test"
    assert key["txt_record"] == f"v=DKIM1; k=rsa; p={key['dkim_key']}"
    assert "".join(key["txt_strings"]) == key["txt_record"] and len(key["txt_strings"]) == 2
    # The original columns carry the new key: selector and p= value.
    domain = (await client.get("/api/virtualdomain/1/", headers=root.headers)).json()
    assert (domain["dkim_key_name"], domain["dkim_key"]) == (key["selector"], key["dkim_key"])

    private = await client.get("/api/virtualdomain/1/dkim/private/", headers=root.headers)
    assert private.status_code == 200 and private.headers["cache-control"] == "no-store"
    exported = private.json()
    assert dkim.public_value_of_private(exported["private_key"]) == key["dkim_key"]
    selector = key["selector"]
    assert exported["key_file"] == f"/var/lib/dinomail/dkim/example.test.{selector}.key"
    assert exported["opendkim_key_table"] == (
        f"{selector}._domainkey.example.test example.test:{selector}:{exported['key_file']}\n")
    assert exported["opendkim_signing_table"] == (
        f"*@example.test {selector}._domainkey.example.test\n")
    assert exported["rspamd_selector_map"] == f"example.test {selector}\n"

    rotated = await client.post("/api/virtualdomain/1/dkim/", headers=root.headers,
                                json={"selector": "Ed2026", "algorithm": "ed25519"})
    assert rotated.status_code == 201, rotated.text
    assert (rotated.json()["selector"], rotated.json()["algorithm"]) == ("ed2026", "ed25519")
    assert rotated.json()["txt_record"].startswith("v=DKIM1; k=ed25519; p=")

    # The private key appears nowhere else: lists, details, the audit log.
    for path in ("/api/virtualdomain/", "/api/virtualdomain/1/", "/api/virtualdomain/1/dkim/",
                 "/api/auditlog/", "/api/clientconfig/1/", "/api/virtualdomain/1/dnscheck/"):
        answer = await client.get(path, headers=root.headers)
        assert answer.status_code == 200 and "PRIVATE KEY" not in answer.text, path
    actions = [entry["action"] for entry in
               (await client.get("/api/auditlog/", headers=root.headers)).json()["objects"]]
    assert {"generate_dkim", "rotate_dkim", "export_dkim"} <= set(actions)


async def test_dkim_rights_and_bad_input(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    mine = await add_domain(store, "mine.test")
    await add_domain(store, "theirs.test")
    admin = await add_admin(store, "domainadmin", domain_ids=(mine["id"],))
    reader = await add_admin(store, "reader", domain_ids=(mine["id"],), read_only=True)
    url = "/api/virtualdomain/1/dkim/"
    assert (await client.post(url, headers=admin.headers)).status_code == 201
    assert (await client.post("/api/virtualdomain/2/dkim/", headers=admin.headers)
            ).status_code == 404
    assert (await client.post(url, headers=reader.headers)).status_code == 403
    assert (await client.get(url, headers=reader.headers)).status_code == 200
    # The private key is for the server's signer: superadmins only.
    assert (await client.get(f"{url}private/", headers=admin.headers)).status_code == 403
    assert (await client.get("/api/virtualdomain/2/dkim/private/", headers=root.headers)
            ).status_code == 404
    for body, field in (({"key_bits": 1024}, "key_bits"), ({"algorithm": "dsa"}, "algorithm"),
                        ({"algorithm": "ed25519", "key_bits": 2048}, "key_bits"),
                        ({"selector": "bad_selector"}, "selector"), ({"size": 1}, "size"),
                        ({"selector": "x" * 64}, "selector")):
        answer = await client.post(url, json=body, headers=root.headers)
        assert (answer.status_code, answer.json()["field"]) == (400, field), body

    # A selector or key typed in by hand on the domain leaves the stored private key behind.
    patched = await client.patch("/api/virtualdomain/1/", json={"dkim_key_name": "manual"},
                                 headers=root.headers)
    assert patched.status_code == 202
    shown = (await client.get(url, headers=root.headers)).json()
    assert shown["generated"] is False and shown["selector"] == "manual"
    assert shown["algorithm"] == "rsa" and shown["key_bits"] == 2048
    assert (await client.get(f"{url}private/", headers=root.headers)).status_code == 404
