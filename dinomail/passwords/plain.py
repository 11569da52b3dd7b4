"""Schemes that store the password itself: PLAIN, CLEAR, CLEARTEXT and PLAIN-TRUNC."""

from __future__ import annotations

import hmac
import re

from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.model import Scheme

_PLAINTEXT = "the stored value is the password itself"
_TRUNC_PREFIX = re.compile(rb"([0-9]*)-")


def _plain(password: bytes, user: str | None, rounds: int | None) -> bytes:
    return password


def _plain_trunc(password: bytes, user: str | None, rounds: int | None) -> bytes:
    # Dovecot's own generator writes no length and then rejects its output when checking
    # ("PLAIN-TRUNC missing length: prefix"). The length written here is one more than the
    # password's: it says nothing was cut, so only this exact password matches. Its own length
    # would let every longer password starting with it log in, and `0-` any password at all.
    return b"%d-%s" % (len(password) + 1, password)


def _verify_plain_trunc(password: bytes, raw: bytes, user: str | None) -> bool:
    # `<n>-<stored>`: the database cut the password to n bytes, so when the stored part is n
    # bytes long, a longer password whose first n bytes match is accepted.
    prefix = _TRUNC_PREFIX.match(raw)
    if prefix is None:
        raise PasswordSchemeError("a PLAIN-TRUNC hash starts with '<length>-'")
    length = int(prefix.group(1) or b"0")
    stored = raw[prefix.end() :]
    if len(stored) == length and len(password) >= length:
        return hmac.compare_digest(password[:length], stored)
    return hmac.compare_digest(password, stored)


SCHEMES = (
    Scheme("PLAIN", _plain, weak=_PLAINTEXT),
    Scheme("CLEAR", _plain, weak=_PLAINTEXT),
    Scheme("CLEARTEXT", _plain, weak=_PLAINTEXT),
    Scheme("PLAIN-TRUNC", _plain_trunc, _verify_plain_trunc, weak=_PLAINTEXT),
)
