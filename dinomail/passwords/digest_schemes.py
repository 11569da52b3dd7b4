"""Schemes built on one pass of a hash function: the SHA family, the MD5 family, CRAM-MD5.

None of them is slow on purpose, so a leaked database falls to a GPU quickly; the salted ones
(SSHA*, SMD5) at least defeat precomputed tables. Dovecot generates 4-byte salts and accepts
any salt length when checking.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

from dinomail.passwords.digests import BLOCK_SIZE, MD5_INITIAL_STATE, md4, md5_compress
from dinomail.passwords.encoding import Encoding
from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Generate, Scheme, Verify
from dinomail.passwords.salts import salt_bytes

SALT_LENGTH = 4

_UNSALTED = "one unsalted pass of a fast hash"
_MD5 = "MD5 based, refused as weak by Dovecot 2.4"
_MD4 = "one unsalted pass of MD4"

Digest = Callable[[bytes], bytes]


def _digest(name: str) -> Digest:
    def digest(data: bytes) -> bytes:
        return hashlib.new(name, data).digest()

    return digest


def _unsalted(digest: Digest) -> Generate:
    def generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
        return digest(password)

    return generate


def _salted(digest: Digest) -> tuple[Generate, Verify]:
    def generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
        salt = salt_bytes(SALT_LENGTH)
        return digest(password + salt) + salt

    def verify(password: bytes, raw: bytes, user: str | None) -> bool:
        size = len(digest(b""))
        if len(raw) <= size:
            raise PasswordSchemeError(f"a salted hash is longer than its {size}-byte digest")
        return hmac.compare_digest(digest(password + raw[size:]), raw[:size])

    return generate, verify


def _digest_md5(password: bytes, user: str | None, rounds: int | None) -> bytes:
    # RFC 2831's A1 secret: MD5("user:realm:password"), the realm after the last '@'.
    if user is None:
        raise PasswordSchemeError("DIGEST-MD5 needs the user name (user@realm)")
    name, _, realm = user.rpartition("@") if "@" in user else (user, "", "")
    secret = f"{name}:{realm}:".encode("utf-8", "surrogateescape") + password
    return hashlib.md5(secret).digest()


def cram_md5_context(password: bytes) -> bytes:
    """The HMAC-MD5 state after each pad, outer first, as CRAM-MD5 servers store it."""
    key = hashlib.md5(password).digest() if len(password) > BLOCK_SIZE else password
    key = key.ljust(BLOCK_SIZE, b"\0")
    outer = md5_compress(MD5_INITIAL_STATE, bytes(byte ^ 0x5C for byte in key))
    inner = md5_compress(MD5_INITIAL_STATE, bytes(byte ^ 0x36 for byte in key))
    return struct.pack("<8I", *outer, *inner)


def _cram_md5(password: bytes, user: str | None, rounds: int | None) -> bytes:
    return cram_md5_context(password)


_sha1, _sha256, _sha512, _md5 = (_digest(name) for name in ("sha1", "sha256", "sha512", "md5"))
_SSHA, _SSHA256, _SSHA512, _SMD5 = (_salted(d) for d in (_sha1, _sha256, _sha512, _md5))
B64, HEX = Encoding.BASE64, Encoding.HEX

SCHEMES = (
    Scheme("SHA", _unsalted(_sha1), encoding=B64, raw_length=20, weak=_UNSALTED),
    Scheme("SHA1", _unsalted(_sha1), encoding=B64, raw_length=20, weak=_UNSALTED),
    Scheme("SHA256", _unsalted(_sha256), encoding=B64, raw_length=32, weak=_UNSALTED),
    Scheme("SHA512", _unsalted(_sha512), encoding=B64, raw_length=64, weak=_UNSALTED),
    Scheme("SSHA", *_SSHA, encoding=B64),
    Scheme("SSHA256", *_SSHA256, encoding=B64),
    Scheme("SSHA512", *_SSHA512, encoding=B64),
    Scheme("SMD5", *_SMD5, encoding=B64, weak=_MD5),
    Scheme("PLAIN-MD5", _unsalted(_md5), encoding=HEX, raw_length=16, weak=_MD5),
    Scheme("LDAP-MD5", _unsalted(_md5), encoding=B64, raw_length=16, weak=_MD5),
    Scheme("PLAIN-MD4", _unsalted(md4), encoding=HEX, raw_length=16, weak=_MD4),
    Scheme(
        "DIGEST-MD5", _digest_md5, encoding=HEX, raw_length=16,
        weak="unsalted MD5 that logs in by itself over DIGEST-MD5",
    ),
    Scheme(
        "CRAM-MD5", _cram_md5, encoding=HEX, raw_length=32,
        weak="unsalted MD5 state that logs in by itself over CRAM-MD5",
    ),
    Scheme(
        "HMAC-MD5", _cram_md5, encoding=HEX, raw_length=32,
        weak="unsalted MD5 state that logs in by itself over CRAM-MD5",
    ),
)
