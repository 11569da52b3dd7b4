"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): 30-second steps, 6 digits,
HMAC-SHA1, the parameters every authenticator app uses by default.

Written out (a few lines of `hmac`) rather than taken from a library so the rule that matters
to DinoMail is explicit: a code is accepted for the current step and one step either side (a
phone's clock a little off), and only for a step later than the last one accepted, so a code
seen over a shoulder or replayed cannot be used a second time. Not tied to admins: mailbox
owners can use it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
# Steps accepted either side of the current one: RFC 6238 section 5.2's "one time step" of
# network delay and clock drift.
WINDOW = 1
# 160 bits, the size of an HMAC-SHA1 key (RFC 4226 section 4 recommends it).
SECRET_BYTES = 20


def new_secret() -> str:
    """A random secret in base32 without padding, as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def time_step(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // STEP_SECONDS)


def code_at(secret: str, step: int) -> str:
    """The code of one time step (RFC 4226 section 5.3's dynamic truncation)."""
    digest = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def normalize_code(code: str) -> str | None:
    """The digits of a code as typed (`123 456`, `123-456`), or None if it cannot be one."""
    digits = code.strip().replace(" ", "").replace("-", "")
    if len(digits) != DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def matching_step(
    secret: str, code: str, *, at: float | None = None, after: int | None = None
) -> int | None:
    """The time step `code` belongs to, within the window around now and later than `after`
    (the last step accepted before); None when it matches none of them."""
    digits = normalize_code(code)
    if digits is None:
        return None
    current = time_step(at)
    found = None
    # Every candidate is computed and compared, so the time taken does not say which matched.
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), digits) and (
            after is None or step > after
        ) and found is None:
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://` URI an authenticator app reads from the QR code."""
    label = quote(f"{issuer}:{account}", safe="")
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": STEP_SECONDS})
    return f"otpauth://totp/{label}?{query}"


def grouped(secret: str) -> str:
    """The secret in groups of four, easier to type into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
