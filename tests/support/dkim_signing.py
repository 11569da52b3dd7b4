"""Signing test messages with dkimpy using the PKCS#8 PEM keys DinoMail stores, and reading the
DKIM records a domain's DNS page shows (to serve them from a test DNS server).

dkimpy reads an RSA key as PEM but an Ed25519 key only as the base64 of its raw 32-byte seed
(what PyNaCl takes), so the Ed25519 PEM is converted first.
"""

from __future__ import annotations

import base64
import html
import re

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.dns import txt

HEADERS = [b"from", b"to", b"subject", b"date"]


def sign(message: bytes, selector: str, domain: str, private_pem: str) -> bytes:
    """The message with a DKIM-Signature header made with the stored key, whatever its kind."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        signature = dkimpy.sign(message, selector.encode(), domain.encode(),
                                base64.b64encode(seed), signature_algorithm=b"ed25519-sha256",
                                include_headers=HEADERS)
    else:
        signature = dkimpy.sign(message, selector.encode(), domain.encode(),
                                private_pem.encode("ascii"), include_headers=HEADERS)
    return signature + message


def shown(page: str, element_id: str) -> str:
    """The text of the page's element with this id."""
    match = re.search(rf'id="{element_id}">([^<]*)<', page)
    assert match, f"no {element_id} on the page"
    return html.unescape(match.group(1))


def served_record(page: str, name_id: str, value_id: str) -> str:
    """The TXT record a page shows, as the zone publishes it (strings of 255 bytes)."""
    value = shown(page, value_id)
    return txt(shown(page, name_id), *[value[i:i + 255] for i in range(0, len(value), 255)])
