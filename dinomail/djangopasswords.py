"""Check admin passwords hashed by Django 3.2, as the original product's accounts are.

An adopted database keeps its admins' Django hashes (`pbkdf2_sha256$260000$salt$hash` and the
other hashers Django 3.2 ships); `dinomail.store.admins` checks them here and replaces them
with Argon2 at the first successful login. Only checking is needed: nothing new is ever hashed
this way. The formats and the identification rules are Django's own
(`django.contrib.auth.hashers`), so that every hash Django accepted is accepted here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from passlib.context import CryptContext

# Django's `set_unusable_password()` stores "!" and random characters: never a valid password.
UNUSABLE_PREFIX = "!"
# The classic bcrypt reads at most 72 bytes; the bcrypt library refuses longer ones since 5.0
# where older versions (which Django used) cut them silently.
BCRYPT_MAX_BYTES = 72

_argon2 = PasswordHasher()
# Django's CryptPasswordHasher stored what the system's crypt(3) returned: DES with a two-letter
# salt in practice; the other crypt(3) forms are accepted too.
_crypt = CryptContext(
    schemes=["des_crypt", "bsdi_crypt", "md5_crypt", "sha256_crypt", "sha512_crypt"]
)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _pbkdf2(digest: str) -> Callable[[str, str], bool]:
    def check(encoded: str, password: str) -> bool:
        _, iterations, salt, expected = encoded.split("$", 3)
        derived = hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), int(iterations))
        return _same(base64.b64encode(derived).decode("ascii").strip(), expected)

    return check


def _argon2_check(encoded: str, password: str) -> bool:
    # Django writes "argon2" followed by argon2-cffi's own string without its leading "$".
    try:
        return _argon2.verify("$" + encoded.split("$", 1)[1], password)
    except (VerificationError, InvalidHashError):
        return False


def _bcrypt_sha256_check(encoded: str, password: str) -> bool:
    # Django hashes the password with SHA-256 first, so bcrypt's 72-byte limit does not apply.
    digest = hashlib.sha256(password.encode()).hexdigest().encode("ascii")
    return bcrypt.checkpw(digest, encoded.split("$", 1)[1].encode("ascii"))


def _bcrypt_check(encoded: str, password: str) -> bool:
    secret = password.encode()[:BCRYPT_MAX_BYTES]
    return bcrypt.checkpw(secret, encoded.split("$", 1)[1].encode("ascii"))


def _salted(digest: str) -> Callable[[str, str], bool]:
    def check(encoded: str, password: str) -> bool:
        _, salt, expected = encoded.split("$", 2)
        return _same(hashlib.new(digest, (salt + password).encode()).hexdigest(), expected)

    return check


def _unsalted_sha1_check(encoded: str, password: str) -> bool:
    return _same(hashlib.sha1(password.encode()).hexdigest(), encoded[len("sha1$$"):])


def _unsalted_md5_check(encoded: str, password: str) -> bool:
    return _same(hashlib.md5(password.encode()).hexdigest(), encoded.removeprefix("md5$$"))


def _crypt_check(encoded: str, password: str) -> bool:
    data = encoded.split("$", 2)[2]
    return bool(_crypt.identify(data)) and _crypt.verify(password, data)


CHECKS: dict[str, Callable[[str, str], bool]] = {
    "pbkdf2_sha256": _pbkdf2("sha256"),
    "pbkdf2_sha1": _pbkdf2("sha1"),
    "argon2": _argon2_check,
    "bcrypt_sha256": _bcrypt_sha256_check,
    "bcrypt": _bcrypt_check,
    "sha1": _salted("sha1"),
    "md5": _salted("md5"),
    "unsalted_sha1": _unsalted_sha1_check,
    "unsalted_md5": _unsalted_md5_check,
    "crypt": _crypt_check,
}


def algorithm_of(encoded: str) -> str | None:
    """The Django hasher that made `encoded` (Django's `identify_hasher` rules), or None."""
    if (len(encoded) == 32 and "$" not in encoded) or (
        len(encoded) == 37 and encoded.startswith("md5$$")
    ):
        return "unsalted_md5"
    if len(encoded) == 46 and encoded.startswith("sha1$$"):
        return "unsalted_sha1"
    algorithm = encoded.split("$", 1)[0]
    return algorithm if algorithm in CHECKS else None


def is_django_hash(encoded: str) -> bool:
    return algorithm_of(encoded) is not None


def verify(encoded: str, password: str) -> bool:
    """Whether `password` matches the Django hash `encoded`; False for any other value,
    including Django's unusable passwords and malformed hashes."""
    if not encoded or encoded.startswith(UNUSABLE_PREFIX):
        return False
    algorithm = algorithm_of(encoded)
    if algorithm is None:
        return False
    try:
        return CHECKS[algorithm](encoded, password)
    except (ValueError, TypeError):
        # A malformed hash (missing fields, bad salt) cannot match anything.
        return False
