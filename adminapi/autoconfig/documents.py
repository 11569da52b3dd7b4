"""The documents mail clients read: Thunderbird's `config-v1.1.xml`, Microsoft's Autodiscover
(POX) answer, Apple's `.mobileconfig`; and the Autodiscover request.

Built with ElementTree and plistlib, so text from the database (a display name with `<` or `&`)
is escaped by the library, never by hand. The Autodiscover request comes from anyone on the
internet: it is read with expat directly, refusing any DTD or entity declaration (no entity
expansion, no external fetch) and anything but the elements it needs.
"""

from __future__ import annotations

import hashlib
import plistlib
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn
from xml.etree import ElementTree
from xml.parsers import expat

from adminapi.autoconfig.servers import SSL, ClientSettings, Server

AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
# Elements deeper than this in an Autodiscover request are not a request.
MAX_REQUEST_DEPTH = 8
# Mail clients send the password as typed, inside TLS.
THUNDERBIRD_AUTH = "password-cleartext"
APPLE_AUTH = "EmailAuthPassword"


def _tree_bytes(root: ElementTree.Element) -> bytes:
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _text(parent: ElementTree.Element, tag: str, text: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag)
    element.text = text
    return element


# --- Thunderbird ----------------------------------------------------------------------------------


def thunderbird_config(settings: ClientSettings) -> bytes:
    """`clientConfig` 1.1: every offer of each server, in order of preference."""
    root = ElementTree.Element("clientConfig", version="1.1")
    provider = ElementTree.SubElement(root, "emailProvider", id=settings.domain)
    _text(provider, "domain", settings.domain)
    _text(provider, "displayName", settings.display_name)
    _text(provider, "displayShortName", settings.short_name)
    for tag, servers in (("incomingServer", settings.incoming),
                         ("outgoingServer", settings.outgoing)):
        for server in servers:
            element = ElementTree.SubElement(provider, tag, type=server.protocol)
            _text(element, "hostname", server.host)
            _text(element, "port", str(server.port))
            _text(element, "socketType", server.socket_type)
            _text(element, "authentication", THUNDERBIRD_AUTH)
            _text(element, "username", "%EMAILADDRESS%")
    return _tree_bytes(root)


# --- Microsoft Autodiscover (POX) -----------------------------------------------------------------


class AutodiscoverRequestError(ValueError):
    """The request body is not an Autodiscover request DinoMail can answer."""


@dataclass(frozen=True, slots=True)
class AutodiscoverRequest:
    email: str
    response_schema: str | None


def parse_autodiscover_request(body: bytes) -> AutodiscoverRequest:
    fields: dict[str, list[str]] = {"EMailAddress": [], "AcceptableResponseSchema": []}
    path: list[str] = []

    def refuse(*_args: Any) -> NoReturn:
        raise AutodiscoverRequestError("DTDs and entities are not accepted")

    def start(name: str, _attributes: dict[str, str]) -> None:
        path.append(name.rpartition(" ")[2])  # "namespace Local" → "Local"
        if len(path) > MAX_REQUEST_DEPTH:
            raise AutodiscoverRequestError("the request is nested too deep")

    def end(_name: str) -> None:
        path.pop()

    def text(data: str) -> None:
        if path[-3:-1] == ["Autodiscover", "Request"] and path[-1] in fields:
            fields[path[-1]].append(data)

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(body, True)
    except expat.ExpatError as error:
        raise AutodiscoverRequestError(f"the body is not well-formed XML ({error})") from None
    email = "".join(fields["EMailAddress"]).strip()
    if not email:
        raise AutodiscoverRequestError("the request has no Request/EMailAddress")
    schema = "".join(fields["AcceptableResponseSchema"]).strip() or None
    return AutodiscoverRequest(email, schema)


def _protocol(account: ElementTree.Element, server: Server, email: str) -> None:
    protocol = ElementTree.SubElement(account, "Protocol")
    _text(protocol, "Type", server.protocol.upper())
    _text(protocol, "Server", server.host)
    _text(protocol, "Port", str(server.port))
    _text(protocol, "DomainRequired", "off")
    _text(protocol, "LoginName", email)
    # SPA (NTLM) and SSL are on when absent: both are written out.
    _text(protocol, "SPA", "off")
    _text(protocol, "SSL", "on")
    # Outlook 2010 and later: SSL is implicit TLS, TLS is STARTTLS; it overrides <SSL>.
    _text(protocol, "Encryption", "SSL" if server.socket_type == SSL else "TLS")
    _text(protocol, "AuthRequired", "on")
    if server.protocol == "smtp":
        _text(protocol, "UsePOPAuth", "off")
        _text(protocol, "SMTPLast", "off")


def autodiscover_response(settings: ClientSettings, email: str) -> bytes:
    """The preferred offer of each protocol (Outlook takes the first `Protocol` of a type)."""
    root = ElementTree.Element("Autodiscover", xmlns=AUTODISCOVER_RESPONSE_NS)
    response = ElementTree.SubElement(root, "Response", xmlns=OUTLOOK_RESPONSE_NS)
    account = ElementTree.SubElement(response, "Account")
    _text(account, "AccountType", "email")
    _text(account, "Action", "settings")
    for protocol in ("imap", "pop3", "smtp"):
        server = settings.first(protocol)
        if server is not None:
            _protocol(account, server, email)
    return _tree_bytes(root)


# --- Apple .mobileconfig --------------------------------------------------------------------------


def profile_identifier(email: str) -> str:
    """Stable for an address, so installing the profile again replaces the old one; reverse-DNS
    of the domain, then a digest of the address (a local part may hold any character)."""
    domain = email.rpartition("@")[2]
    reverse = ".".join(reversed(domain.split(".")))
    digest = hashlib.sha256(email.encode()).hexdigest()[:16]
    return f"{reverse}.dinomail.mail.{digest}"


def mobileconfig(settings: ClientSettings, email: str) -> bytes:
    """An unsigned configuration profile with one mail account; the device asks for the
    password (none is in the profile)."""
    incoming = settings.first("imap") or settings.incoming[0]
    outgoing = settings.outgoing[0]
    identifier = profile_identifier(email)
    account: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.account",
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": f"{settings.display_name} ({email})",
        "EmailAccountDescription": settings.display_name,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": email,
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        # True means TLS: implicit on 993, STARTTLS on 143 (the device picks by port).
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerAuthentication": APPLE_AUTH,
        "IncomingMailServerUsername": email,
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerAuthentication": APPLE_AUTH,
        "OutgoingMailServerUsername": email,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": str(uuid.uuid4()).upper(),
        "PayloadDisplayName": f"{settings.display_name} mail",
        "PayloadDescription": f"The mail account {email}",
        "PayloadOrganization": settings.display_name,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
