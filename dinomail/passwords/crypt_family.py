"""crypt(3) strings: DES, MD5-CRYPT (`$1$`), SHA256-CRYPT (`$5$`), SHA512-CRYPT (`$6$`), bcrypt.

Dovecot checks CRYPT, DES-CRYPT, SHA256-CRYPT and SHA512-CRYPT with the C library's crypt(),
which recognises the format from the string itself, so any of those names checks any of the
formats; BLF-CRYPT accepts only bcrypt and MD5-CRYPT only `$1$`. The standard `crypt` module is
gone in Python 3.13: libpass (imported as `passlib`) computes DES, MD5 and SHA crypt in Python,
and the `bcrypt` package computes bcrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import bcrypt
from passlib.exc import PasswordSizeError
from passlib.hash import des_crypt, md5_crypt, sha256_crypt, sha512_crypt
from passlib.utils.handlers import GenericHandler

from dinomail.passwords.encoding import Encoding, decode
from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Rounds, Scheme
from dinomail.passwords.salts import crypt_salt, salt_bytes

SHA_CRYPT_ROUNDS = Rounds(default=5000, minimum=1000, maximum=999_999_999)
BCRYPT_COST = Rounds(default=5, minimum=4, maximum=31)
# bcrypt reads at most 72 bytes of a password; bcrypt>=5 raises instead of cutting, so the
# cut is made here, where crypt_blowfish (Dovecot) makes it.
BCRYPT_MAX_PASSWORD = 72

_BCRYPT = re.compile(rb"\$2[abxy]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_DES = re.compile(rb"[./0-9A-Za-z]{13}")
_BCRYPT_ALPHABET = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
)
_HANDLERS: dict[bytes, type[GenericHandler]] = {
    b"$1$": md5_crypt,
    b"$5$": sha256_crypt,
    b"$6$": sha512_crypt,
}


def _passlib_hash(handler: type[GenericHandler], password: bytes, **settings: object) -> bytes:
    try:
        return handler.using(**settings).hash(password).encode("ascii")
    except PasswordSizeError:
        raise PasswordSchemeError("the password is too long for crypt (over 4096 bytes)") from None


def _passlib_verify(handler: type[GenericHandler], password: bytes, raw: bytes) -> bool:
    try:
        return bool(handler.verify(password, raw.decode("ascii")))
    except PasswordSizeError:
        # passlib bounds the time sha-crypt may take; no password that long can be set through
        # DinoMail (its API allows 1024 characters), so it cannot match.
        return False
    except (ValueError, UnicodeDecodeError) as error:
        raise PasswordSchemeError(f"malformed {handler.name} string: {error}") from None


def _bcrypt_hash(password: bytes, cost: int) -> bytes:
    # bcrypt's base64 is the standard one over another alphabet; 16 bytes give 22 characters.
    salt = base64.b64encode(salt_bytes(16))[:22].translate(_BCRYPT_ALPHABET)
    return bcrypt.hashpw(password[:BCRYPT_MAX_PASSWORD], b"$2y$%02d$%s" % (cost, salt))


def _bcrypt_verify(password: bytes, raw: bytes) -> bool:
    if not _BCRYPT.fullmatch(raw):
        raise PasswordSchemeError("malformed bcrypt string (expected $2y$NN$ and 53 characters)")
    if raw.startswith(b"$2x$") and not password.isascii():
        # $2x$ marks hashes made with the old crypt_blowfish sign-extension bug, which only
        # changes passwords with 8-bit characters; the bcrypt package does not reproduce it.
        raise PasswordSchemeError("$2x$ bcrypt hashes of non-ASCII passwords are not supported")
    return hmac.compare_digest(bcrypt.hashpw(password[:BCRYPT_MAX_PASSWORD], raw), raw)


def _locked(raw: bytes) -> bool:
    # shadow(5) convention: an empty, `!` or `*` field is an account nobody may log in to.
    return raw == b"" or raw.startswith((b"!", b"*"))


def verify_crypt(password: bytes, raw: bytes, user: str | None = None) -> bool:
    """Check any crypt string Dovecot's crypt() check would accept and we can compute."""
    if _locked(raw):
        return False
    if raw.startswith(b"$2"):
        return _bcrypt_verify(password, raw)
    handler = _HANDLERS.get(raw[:3])
    if handler is not None:
        return _passlib_verify(handler, password, raw)
    if _DES.fullmatch(raw):
        return _passlib_verify(des_crypt, password, raw)
    # libxcrypt also knows yescrypt ($y$) and others; no maintained Python library computes them.
    raise PasswordSchemeError("unsupported crypt string (DES, $1$, $5$, $6$ and $2?$ are known)")


def _verify_blf_crypt(password: bytes, raw: bytes, user: str | None) -> bool:
    if _locked(raw):
        return False
    if not raw.startswith(b"$2"):
        raise PasswordSchemeError("a BLF-CRYPT hash is a bcrypt string ($2y$...)")
    return _bcrypt_verify(password, raw)


def _verify_md5_crypt(password: bytes, raw: bytes, user: str | None) -> bool:
    if _locked(raw):
        return False
    if not raw.startswith(b"$1$"):
        raise PasswordSchemeError("an MD5-CRYPT hash starts with $1$")
    return _passlib_verify(md5_crypt, password, raw)


def _verify_md5(password: bytes, raw: bytes, user: str | None) -> bool:
    # The MD5 scheme predates MD5-CRYPT: it checks `$1$` strings and PLAIN-MD5 digests alike.
    if raw.startswith(b"$1$"):
        return _verify_md5_crypt(password, raw, user)
    try:
        digest = decode(raw.decode("ascii"), Encoding.HEX, raw_length=16, suffixed=False)
    except (PasswordSchemeError, UnicodeDecodeError):
        raise PasswordSchemeError("an MD5 hash is a $1$ string or a PLAIN-MD5 digest") from None
    return hmac.compare_digest(hashlib.md5(password).digest(), digest)


def _des_crypt(password: bytes, user: str | None, rounds: int | None) -> bytes:
    return _passlib_hash(des_crypt, password, salt=crypt_salt(2))


def _md5_crypt(password: bytes, user: str | None, rounds: int | None) -> bytes:
    return _passlib_hash(md5_crypt, password, salt=crypt_salt(8))


def _sha256_crypt(password: bytes, user: str | None, rounds: int | None) -> bytes:
    rounds = SHA_CRYPT_ROUNDS.default if rounds is None else rounds
    return _passlib_hash(sha256_crypt, password, salt=crypt_salt(16), rounds=rounds)


def _sha512_crypt(password: bytes, user: str | None, rounds: int | None) -> bytes:
    rounds = SHA_CRYPT_ROUNDS.default if rounds is None else rounds
    return _passlib_hash(sha512_crypt, password, salt=crypt_salt(16), rounds=rounds)


def _blf_crypt(password: bytes, user: str | None, rounds: int | None) -> bytes:
    return _bcrypt_hash(password, BCRYPT_COST.default if rounds is None else rounds)


_MD5_CRYPT_WEAK = "MD5 crypt, refused as weak by Dovecot 2.4"

SCHEMES = (
    # Since Dovecot 2.3 CRYPT makes bcrypt, so it is not weak; it still checks DES and $1$.
    Scheme("CRYPT", _blf_crypt, verify_crypt, rounds=BCRYPT_COST),
    Scheme(
        "DES-CRYPT", _des_crypt, verify_crypt,
        weak="DES crypt: 8 significant characters, 12-bit salt",
    ),
    Scheme("MD5-CRYPT", _md5_crypt, _verify_md5_crypt, weak=_MD5_CRYPT_WEAK),
    Scheme("MD5", _md5_crypt, _verify_md5, weak=_MD5_CRYPT_WEAK),
    Scheme("SHA256-CRYPT", _sha256_crypt, verify_crypt, rounds=SHA_CRYPT_ROUNDS),
    Scheme("SHA512-CRYPT", _sha512_crypt, verify_crypt, rounds=SHA_CRYPT_ROUNDS),
    Scheme("BLF-CRYPT", _blf_crypt, _verify_blf_crypt, rounds=BCRYPT_COST),
)
