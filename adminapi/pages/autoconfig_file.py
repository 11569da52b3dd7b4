"""The original's autoconfig download (`/virtual-domains/<pk>/autoconfig`): Thunderbird's
`config-v1.1.xml` for one domain, built from the domain's stored fields.

Built with an XML library, never by pasting text into a template, so a display name holding
`<` or `&` cannot break the document. The servers are the original's: IMAP 143 and SMTP 587
with STARTTLS, POP3 110 only when a POP address is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

IMAP_PORT = 143
POP3_PORT = 110
SUBMISSION_PORT = 587


def _server(parent: ElementTree.Element, tag: str, kind: str, host: str, port: int) -> None:
    server = ElementTree.SubElement(parent, tag, type=kind)
    for name, value in (
        ("hostname", host), ("port", str(port)), ("socketType", "STARTTLS"),
        ("authentication", "password-cleartext"), ("username", "%EMAILADDRESS%"),
    ):
        ElementTree.SubElement(server, name).text = value


def build_autoconfig(domain: Mapping[str, Any]) -> bytes:
    name = str(domain["name"])
    root = ElementTree.Element("clientConfig", version="1.1")
    provider = ElementTree.SubElement(root, "emailProvider", id=name)
    ElementTree.SubElement(provider, "domain").text = name
    ElementTree.SubElement(provider, "displayName").text = domain.get("display_name") or ""
    ElementTree.SubElement(provider, "displayShortName").text = (
        domain.get("short_display_name") or ""
    )
    _server(provider, "incomingServer", "imap", domain.get("imap_address") or f"imap.{name}",
            IMAP_PORT)
    if domain.get("pop_address"):
        _server(provider, "incomingServer", "pop3", domain["pop_address"], POP3_PORT)
    _server(provider, "outgoingServer", "smtp", domain.get("smtp_address") or f"smtp.{name}",
            SUBMISSION_PORT)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
