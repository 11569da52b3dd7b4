"""Stored mailbox hashes that no password can match.

The original product's `core.utils.make_password_ssha` stored `{SSHA}` + base64 of
sha1(password + salt) and dropped the salt: 20 bytes where Dovecot expects the digest followed
by its salt. Such a mailbox cannot log in until its password is reset; `dinomail check` and
`dinomail migrate --plan` list them.
"""

from __future__ import annotations

import base64
import binascii

SHA1_DIGEST_BYTES = 20
SALTLESS_SSHA_PREFIX = "{SSHA}"


def is_saltless_ssha(stored: str | None) -> bool:
    if not stored or not stored.startswith(SALTLESS_SSHA_PREFIX):
        return False
    try:
        raw = base64.b64decode(stored[len(SALTLESS_SSHA_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == SHA1_DIGEST_BYTES
