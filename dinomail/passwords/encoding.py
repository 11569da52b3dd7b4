"""How the raw bytes of a hash are written after `{SCHEME}`: as-is, base64 or hex.

Dovecot's rules (src/auth/password-scheme.c, password_decode): a `.b64`/`.base64`/`.hex`
suffix on the scheme name forces an encoding; without one, a fixed-length scheme whose default
is not "as-is" is read as hex when the text is exactly twice the raw length (falling back to
base64 if that text is not hex), otherwise as base64. Both decoders are strict, as Dovecot's are,
except that base64 may carry blanks and line breaks, which Dovecot skips.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re

from dinomail.passwords.errors import PasswordSchemeError


class Encoding(enum.Enum):
    NONE = "none"
    BASE64 = "base64"
    HEX = "hex"


SUFFIXES = {"b64": Encoding.BASE64, "base64": Encoding.BASE64, "hex": Encoding.HEX}

_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_BASE64_BLANKS = str.maketrans("", "", " \t\r\n")


def encode(raw: bytes, encoding: Encoding) -> str:
    if encoding is Encoding.BASE64:
        return base64.b64encode(raw).decode("ascii")
    if encoding is Encoding.HEX:
        return raw.hex()
    # Surrogate escapes carry bytes that are not UTF-8 (a PLAIN password from argv) unchanged.
    return raw.decode("utf-8", "surrogateescape")


def decode_base64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text.translate(_BASE64_BLANKS), strict_mode=True)
    except (binascii.Error, ValueError):
        raise PasswordSchemeError("the hash is not valid base64") from None


def decode_hex(text: str) -> bytes:
    if not _HEX.fullmatch(text):
        raise PasswordSchemeError("the hash is not valid hex")
    return bytes.fromhex(text)


def decode(text: str, encoding: Encoding, *, raw_length: int, suffixed: bool) -> bytes:
    """The raw bytes of the data after `{SCHEME}`; raises PasswordSchemeError if malformed."""
    if encoding is Encoding.NONE:
        return text.encode("utf-8", "surrogateescape")
    if raw_length and not suffixed:
        if len(text) == 2 * raw_length and _HEX.fullmatch(text):
            raw = bytes.fromhex(text)
        else:
            raw = decode_base64(text)
    elif encoding is Encoding.HEX:
        raw = decode_hex(text)
    else:
        raw = decode_base64(text)
    if raw_length and len(raw) != raw_length:
        raise PasswordSchemeError(f"the hash decodes to {len(raw)} bytes instead of {raw_length}")
    return raw
