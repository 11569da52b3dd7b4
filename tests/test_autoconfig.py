"""Mail client autoconfiguration: Thunderbird's config-v1.1.xml, Outlook's Autodiscover (POX),
Apple's .mobileconfig, each checked against its published format; the per-domain client
settings (`/api/clientconfig/`); and the admin's download."""

from __future__ import annotations

import plistlib
import uuid
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from adminapi.autoconfig import download
from adminapi.autoconfig.endpoints import MAX_AUTODISCOVER_BODY
from dinomail.store import EVERYTHING, NotFound, Store, aliasdomains
from tests.support.adminapi import (
    Account,
    add_admin,
    add_domain,
    api_client,
    api_settings,
    fast_admin_hashing,
)

SOCKET_TYPES = {"plain", "SSL", "STARTTLS"}
AUTH_METHODS = {"password-cleartext", "password-encrypted", "NTLM", "GSSAPI",
                "client-IP-address", "TLS-client-cert", "OAuth2", "none"}
AD_RESPONSE = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
AD_OUTLOOK = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
OUTLOOK_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>
"""


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def client(store: Store) -> Any:
    # The admin API answers only its own name; autoconfig answers at every domain's names.
    async with api_client(store, api_settings(ALLOWED_HOSTS=("admin.example.net",))) as client:
        yield client


@pytest.fixture
async def root(store: Store) -> Account:
    return await add_admin(store, "root", superadmin=True)


ADMIN = {"Host": "admin.example.net"}


def servers(document: bytes) -> list[tuple[str, str, str, int, str]]:
    """(element, type, hostname, port, socketType) of each server, after checking the format."""
    root = ElementTree.fromstring(document)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    (provider,) = root
    assert provider.tag == "emailProvider"
    tags = [child.tag for child in provider]
    # The format's order: domains, names, then incoming before outgoing servers.
    assert tags[:3] == ["domain", "displayName", "displayShortName"]
    assert tags[3:] == sorted(tags[3:], key=lambda tag: tag != "incomingServer")
    found = []
    for server in provider[3:]:
        assert [child.tag for child in server] == [
            "hostname", "port", "socketType", "authentication", "username"]
        assert server.findtext("socketType") in SOCKET_TYPES
        assert server.findtext("authentication") in AUTH_METHODS
        assert server.findtext("username") == "%EMAILADDRESS%"
        kind = server.get("type")
        assert kind in ({"imap", "pop3"} if server.tag == "incomingServer" else {"smtp"})
        found.append((server.tag, kind, server.findtext("hostname"),
                      int(server.findtext("port") or 0), server.findtext("socketType")))
    return found


# --- Thunderbird ----------------------------------------------------------------------------------


async def test_thunderbird_defaults(client: httpx.AsyncClient, store: Store) -> None:
    await add_domain(store, "example.org")
    answer = await client.get("/mail/config-v1.1.xml",
                              params={"emailaddress": "Alice@Example.org"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/xml"
    root = ElementTree.fromstring(answer.content)
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.org"
    assert provider.findtext("domain") == "example.org"
    assert provider.findtext("displayName") == "example.org"
    # Implicit TLS first, STARTTLS as the alternative; no POP3 without a POP address.
    assert servers(answer.content) == [
        ("incomingServer", "imap", "imap.example.org", 993, "SSL"),
        ("incomingServer", "imap", "imap.example.org", 143, "STARTTLS"),
        ("outgoingServer", "smtp", "smtp.example.org", 465, "SSL"),
        ("outgoingServer", "smtp", "smtp.example.org", 587, "STARTTLS"),
    ]


async def test_thunderbird_custom_hosts_pop_and_ports(
    client: httpx.AsyncClient, store: Store, root: Account
) -> None:
    await add_domain(store, "example.org", imap_address="mail.example.net",
                     smtp_address="smtp.example.net", pop_address="pop.example.net",
                     display_name='Example <"Mail"> & Co', short_display_name="Ex")
    changed = await client.patch(
        "/api/clientconfig/1/", headers=root.headers | ADMIN,
        json={"imap_starttls_port": 0, "smtp_ssl_port": 0, "pop3_ssl_port": 1995},
    )
    assert changed.status_code == 202, changed.text
    answer = await client.get("/.well-known/autoconfig/mail/config-v1.1.xml",
                              params={"emailaddress": "bob@example.org"})
    assert servers(answer.content) == [
        ("incomingServer", "imap", "mail.example.net", 993, "SSL"),
        ("incomingServer", "pop3", "pop.example.net", 1995, "SSL"),
        ("incomingServer", "pop3", "pop.example.net", 110, "STARTTLS"),
        ("outgoingServer", "smtp", "smtp.example.net", 587, "STARTTLS"),
    ]
    provider = ElementTree.fromstring(answer.content).find("emailProvider")
    assert provider is not None
    # Escaped by the XML library: the name comes back exactly.
    assert provider.findtext("displayName") == 'Example <"Mail"> & Co'
    assert provider.findtext("displayShortName") == "Ex"
    assert b"&lt;" in answer.content and b"&amp;" in answer.content


async def test_thunderbird_finds_the_domain_from_the_host(
    client: httpx.AsyncClient, store: Store
) -> None:
    await add_domain(store, "example.org")
    # Neither host is in ALLOWED_HOSTS: the autoconfig paths answer at every domain's names.
    for host, path in (("autoconfig.example.org", "/mail/config-v1.1.xml"),
                       ("example.org:443", "/.well-known/autoconfig/mail/config-v1.1.xml")):
        answer = await client.get(path, headers={"Host": host})
        assert answer.status_code == 200, host
        assert servers(answer.content)[0][2] == "imap.example.org"
    # ...and only those paths: the API keeps its host check.
    assert (await client.get("/healthz", headers={"Host": "autoconfig.example.org"})
            ).status_code == 400
    assert (await client.get("/healthz", headers=ADMIN)).status_code == 200


async def test_unknown_domains_and_bad_addresses(client: httpx.AsyncClient, store: Store) -> None:
    target = await add_domain(store, "example.org")
    await add_domain(store, "off.example", active=False)
    async with store.write() as conn:
        await aliasdomains.create(conn, "test", EVERYTHING,
                                  {"name": "alias.example", "target_domain_id": target["id"]})
    for address in ("x@unknown.example", "x@off.example", "x@alias.example"):
        for path in ("/mail/config-v1.1.xml", "/mail/apple.mobileconfig"):
            answer = await client.get(path, params={"emailaddress": address})
            assert answer.status_code == 404, (path, address)
        answer = await client.post("/autodiscover/autodiscover.xml",
                                   content=OUTLOOK_REQUEST % address.encode())
        assert answer.status_code == 404, address
    assert (await client.get("/mail/config-v1.1.xml", headers={"Host": "autoconfig.nope.example"})
            ).status_code == 404
    for bad in ("no-at-sign", "a@b", "two@@example.org", "x y@example.org", ""):
        answer = await client.get("/mail/config-v1.1.xml", params={"emailaddress": bad})
        assert answer.status_code == 400, bad
        assert "not a valid email address" in answer.text
    assert (await client.get("/mail/apple.mobileconfig")).status_code == 400


# --- Outlook Autodiscover -------------------------------------------------------------------------


async def test_autodiscover_answers_a_real_request(
    client: httpx.AsyncClient, store: Store
) -> None:
    await add_domain(store, "example.org", display_name="Example")
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml",
                 "/AUTODISCOVER/AUTODISCOVER.XML"):
        answer = await client.post(
            path, content=OUTLOOK_REQUEST % b"Alice@Example.org",
            headers={"Host": "autodiscover.example.org", "Content-Type": "text/xml"},
        )
        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == "application/xml"
    root = ElementTree.fromstring(answer.content)
    assert root.tag == f"{AD_RESPONSE}Autodiscover"
    account = root.find(f"{AD_OUTLOOK}Response/{AD_OUTLOOK}Account")
    assert account is not None
    assert account.findtext(f"{AD_OUTLOOK}AccountType") == "email"
    assert account.findtext(f"{AD_OUTLOOK}Action") == "settings"
    protocols = {
        protocol.findtext(f"{AD_OUTLOOK}Type"): {
            child.tag.removeprefix(AD_OUTLOOK): child.text for child in protocol
        }
        for protocol in account.findall(f"{AD_OUTLOOK}Protocol")
    }
    assert set(protocols) == {"IMAP", "SMTP"}
    assert protocols["IMAP"] == {
        "Type": "IMAP", "Server": "imap.example.org", "Port": "993", "DomainRequired": "off",
        "LoginName": "alice@example.org", "SPA": "off", "SSL": "on", "Encryption": "SSL",
        "AuthRequired": "on",
    }
    assert protocols["SMTP"]["Port"] == "465" and protocols["SMTP"]["UsePOPAuth"] == "off"
    assert protocols["SMTP"]["SMTPLast"] == "off"


async def test_autodiscover_starttls_and_pop(
    client: httpx.AsyncClient, store: Store, root: Account
) -> None:
    await add_domain(store, "example.org", pop_address="pop.example.org")
    await client.put("/api/clientconfig/1/", headers=root.headers | ADMIN,
                     json={"imap_ssl_port": 0, "smtp_ssl_port": 0})
    answer = await client.post("/autodiscover/autodiscover.xml",
                               content=OUTLOOK_REQUEST % b"a@example.org")
    account = ElementTree.fromstring(answer.content).find(
        f"{AD_OUTLOOK}Response/{AD_OUTLOOK}Account")
    assert account is not None
    shown = [(protocol.findtext(f"{AD_OUTLOOK}Type"), protocol.findtext(f"{AD_OUTLOOK}Port"),
              protocol.findtext(f"{AD_OUTLOOK}Encryption"))
             for protocol in account.findall(f"{AD_OUTLOOK}Protocol")]
    assert shown == [("IMAP", "143", "TLS"), ("POP3", "995", "SSL"), ("SMTP", "587", "TLS")]


async def test_autodiscover_refuses_what_is_not_a_request(
    client: httpx.AsyncClient, store: Store
) -> None:
    await add_domain(store, "example.org")
    url = "/autodiscover/autodiscover.xml"
    entity_bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Autodiscover><Request><EMailAddress>&lol2;@example.org</EMailAddress></Request></Autodiscover>"""
    external = b"""<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Autodiscover><Request><EMailAddress>&e;</EMailAddress></Request></Autodiscover>"""
    for body, message in (
        (entity_bomb, "DTDs and entities are not accepted"),
        (external, "DTDs and entities are not accepted"),
        (b"<Autodiscover><Request>", "not well-formed"),
        (b"<Autodiscover><Request><LegacyDN>/o=x</LegacyDN></Request></Autodiscover>",
         "no Request/EMailAddress"),
        (b"<Autodiscover><EMailAddress>a@example.org</EMailAddress></Autodiscover>",
         "no Request/EMailAddress"),
        (OUTLOOK_REQUEST % b"not an address", "not a valid email address"),
        (b"<a>" * 20 + b"</a>" * 20, "nested too deep"),
    ):
        answer = await client.post(url, content=body)
        assert answer.status_code == 400, body
        assert message in answer.text
    too_large = b"<Autodiscover>" + b" " * MAX_AUTODISCOVER_BODY + b"</Autodiscover>"
    assert (await client.post(url, content=too_large)).status_code == 413

    async def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(20):
            yield b" " * 1024

    assert (await client.post(url, content=chunks())).status_code == 413
    assert (await client.get(url)).status_code == 405


# --- Apple .mobileconfig --------------------------------------------------------------------------


async def test_mobileconfig(client: httpx.AsyncClient, store: Store) -> None:
    await add_domain(store, "example.org", display_name="Example Mail")
    answer = await client.get("/mail/apple.mobileconfig",
                              params={"emailaddress": "Alice@example.org"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-apple-aspen-config"
    assert answer.headers["content-disposition"] == (
        'attachment; filename="example.org.mobileconfig"')
    assert answer.content.startswith(b"<?xml") and b"<!DOCTYPE plist" in answer.content
    profile = plistlib.loads(answer.content)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    assert profile["PayloadIdentifier"].startswith("org.example.dinomail.mail.")
    assert isinstance(profile["PayloadDisplayName"], str)
    (account,) = profile["PayloadContent"]
    expected = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "EmailAccountType": "EmailTypeIMAP", "EmailAddress": "alice@example.org",
        "EmailAccountDescription": "Example Mail",
        "IncomingMailServerHostName": "imap.example.org", "IncomingMailServerPortNumber": 993,
        "IncomingMailServerUseSSL": True, "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerUsername": "alice@example.org",
        "OutgoingMailServerHostName": "smtp.example.org", "OutgoingMailServerPortNumber": 465,
        "OutgoingMailServerUseSSL": True, "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerUsername": "alice@example.org",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    assert {key: account[key] for key in expected} == expected
    # Booleans and numbers have their plist types (<true/>, <integer>), not strings.
    assert b"<key>IncomingMailServerPortNumber</key>\n\t\t\t<integer>993</integer>" in (
        answer.content)
    # No password: the device asks for it.
    assert not {"IncomingPassword", "OutgoingPassword"} & set(account)
    assert account["PayloadIdentifier"].startswith(profile["PayloadIdentifier"])
    for value in (profile["PayloadUUID"], account["PayloadUUID"]):
        assert str(uuid.UUID(value)).upper() == value
    assert profile["PayloadUUID"] != account["PayloadUUID"]

    # Downloaded again: the same identifier (it replaces the installed profile), new UUIDs.
    again = plistlib.loads((await client.get(
        "/mail/apple.mobileconfig", params={"emailaddress": "alice@example.org"})).content)
    assert again["PayloadIdentifier"] == profile["PayloadIdentifier"]
    assert again["PayloadUUID"] != profile["PayloadUUID"]
    other = plistlib.loads((await client.get(
        "/mail/apple.mobileconfig", params={"emailaddress": "bob@example.org"})).content)
    assert other["PayloadIdentifier"] != profile["PayloadIdentifier"]


# --- the admin's download -------------------------------------------------------------------------


async def test_admin_download(store: Store) -> None:
    domain = await add_domain(store, "example.org", active=False)
    document, filename = await download(store, EVERYTHING, domain["id"])
    assert filename == "autoconfig.xml"
    # Inactive domains too: the admin prepares a domain before turning it on.
    assert servers(document)[0] == ("incomingServer", "imap", "imap.example.org", 993, "SSL")
    with pytest.raises(NotFound):
        await download(store, EVERYTHING, domain["id"] + 1)


# --- /api/clientconfig/ ---------------------------------------------------------------------------


async def test_client_settings_api(client: httpx.AsyncClient, store: Store, root: Account) -> None:
    mine = await add_domain(store, "example.org", pop_address="pop.example.org")
    await add_domain(store, "other.org")
    admin = await add_admin(store, "admin", domain_ids=(mine["id"],))
    url = "/api/clientconfig/1/"
    shown = (await client.get(url, headers=root.headers | ADMIN)).json()
    assert shown == {
        "id": 1, "domain": "/api/virtualdomain/1/", "name": "example.org",
        "imap_host": "imap.example.org", "pop3_host": "pop.example.org",
        "smtp_host": "smtp.example.org", "imap_ssl_port": 993, "imap_starttls_port": 143,
        "pop3_ssl_port": 995, "pop3_starttls_port": 110, "smtp_ssl_port": 465,
        "smtp_starttls_port": 587, "mx_host": "", "updated_at": None,
        "resource_uri": "/api/clientconfig/1/",
    }
    patched = await client.patch(url, headers=admin.headers | ADMIN,
                                 json={"mx_host": "MX.Example.NET", "smtp_ssl_port": 0})
    assert patched.status_code == 202
    assert patched.json()["mx_host"] == "mx.example.net" and patched.json()["updated_at"]
    # PUT changes what it names and keeps what it leaves out, as the original's API did.
    assert (await client.put(url, headers=admin.headers | ADMIN, json={"imap_ssl_port": 9993})
            ).status_code == 204
    shown = (await client.get(url, headers=admin.headers | ADMIN)).json()
    assert (shown["imap_ssl_port"], shown["smtp_ssl_port"], shown["mx_host"]) == (
        9993, 0, "mx.example.net")

    for body, field in (({"imap_ssl_port": 0, "imap_starttls_port": 0}, "imap_ssl_port"),
                        ({"smtp_starttls_port": 65536}, "smtp_starttls_port"),
                        ({"mx_host": "not a host"}, "mx_host"), ({"port": 1}, "port")):
        answer = await client.patch(url, headers=root.headers | ADMIN, json=body)
        assert (answer.status_code, answer.json()["field"]) == (400, field), body
    # POP3 may be turned off entirely.
    assert (await client.patch(url, headers=root.headers | ADMIN,
                               json={"pop3_ssl_port": 0, "pop3_starttls_port": 0})
            ).status_code == 202
    # A domain admin sees and changes only their domains.
    listing = (await client.get("/api/clientconfig/", headers=admin.headers | ADMIN)).json()
    assert [item["name"] for item in listing["objects"]] == ["example.org"]
    assert (await client.patch("/api/clientconfig/2/", headers=admin.headers | ADMIN,
                               json={"mx_host": ""})).status_code == 404
    entries = (await client.get("/api/auditlog/", headers=root.headers | ADMIN)).json()["objects"]
    assert any(entry["object_type"] == "clientconfig" for entry in entries)
