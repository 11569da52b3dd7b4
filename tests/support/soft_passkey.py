"""A software authenticator for the passkey forms without a browser: the registration answer a
browser would post (`none` attestation, a P-256 key), checked by the pages' py_webauthn as any
other."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import struct

import cbor2
from cryptography.hazmat.primitives.asymmetric import ec

_OPTIONS = re.compile(r'data-options="([^"]*)"')
# User present, user verified, attested credential data included.
_FLAGS = 0x01 | 0x04 | 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge_of(page_text: str) -> str:
    """The challenge of the registration options a passkey page carries."""
    found = _OPTIONS.search(page_text)
    assert found, "no WebAuthn options on the page"
    return str(json.loads(html.unescape(found.group(1)))["challenge"])


def registration_answer(challenge: str, *, rp_id: str, origin: str) -> str:
    """The JSON a browser posts as `credential` after creating a new passkey."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    cose_key = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: key.x.to_bytes(32, "big"),
                            -3: key.y.to_bytes(32, "big")})
    credential_id = os.urandom(16)
    auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([_FLAGS])
                 + struct.pack(">I", 0) + bytes(16)
                 + struct.pack(">H", len(credential_id)) + credential_id + cose_key)
    client_data = json.dumps({"type": "webauthn.create", "challenge": challenge,
                              "origin": origin, "crossOrigin": False}).encode()
    return json.dumps({
        "id": b64url(credential_id), "rawId": b64url(credential_id), "type": "public-key",
        "response": {
            "clientDataJSON": b64url(client_data),
            "attestationObject": b64url(cbor2.dumps(
                {"fmt": "none", "attStmt": {}, "authData": auth_data})),
        },
    })
