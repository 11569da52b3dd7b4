"""PBKDF2: `$1$<salt>$<rounds>$<hex>`, PBKDF2-HMAC-SHA1 over the salt text, 20 bytes."""

from __future__ import annotations

import hashlib
import hmac
import re

from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Rounds, Scheme
from dinomail.passwords.salts import crypt_salt

ROUNDS = Rounds(default=5000, minimum=1, maximum=2**32 - 1)
SALT_LENGTH = 16
KEY_LENGTH = 20

_STORED = re.compile(rb"\$1\$([^$]*)\$([0-9]+)\$([0-9A-Fa-f]{40})")


def _key(password: bytes, salt: bytes, rounds: int) -> bytes:
    # The salt is used as the text written in the hash, not decoded from it.
    return hashlib.pbkdf2_hmac("sha1", password, salt, rounds, KEY_LENGTH)


def _generate(password: bytes, user: str | None, rounds: int | None) -> bytes:
    rounds = ROUNDS.default if rounds is None else rounds
    salt = crypt_salt(SALT_LENGTH).encode("ascii")
    return b"$1$%s$%d$%s" % (salt, rounds, _key(password, salt, rounds).hex().encode())


def _verify(password: bytes, raw: bytes, user: str | None) -> bool:
    stored = _STORED.fullmatch(raw)
    if stored is None:
        raise PasswordSchemeError("a PBKDF2 hash is $1$<salt>$<rounds>$<40 hex digits>")
    salt, rounds, key = stored.groups()
    if not ROUNDS.minimum <= int(rounds) <= ROUNDS.maximum:
        raise PasswordSchemeError(f"invalid PBKDF2 rounds {rounds.decode()}")
    return hmac.compare_digest(_key(password, salt, int(rounds)), bytes.fromhex(key.decode()))


SCHEMES = (Scheme("PBKDF2", _generate, _verify, rounds=ROUNDS),)
