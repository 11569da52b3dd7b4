"""NTLM and LANMAN, Windows hashes kept only so that old databases can still be checked.

Dovecot removed both in 2.3.14; `doveadm pw` on 2.3.19 neither makes nor checks them, so new
hashes are made only when asked for by name, and the settings refuse them as weak.
"""

from __future__ import annotations

from passlib.crypto.des import des_encrypt_block

from dinomail.passwords.digests import md4
from dinomail.passwords.encoding import Encoding
from dinomail.passwords.model import Scheme

_LM_MAGIC = b"KGS!@#$%"


def _ntlm(password: bytes, user: str | None, rounds: int | None) -> bytes:
    text = password.decode("utf-8", "surrogateescape")
    return md4(text.encode("utf-16-le", "surrogatepass"))


def _lanman(password: bytes, user: str | None, rounds: int | None) -> bytes:
    # As Dovecot's lm_hash(): ASCII upper case of the bytes, the first 14, zero padded, then
    # each 7-byte half is a DES key encrypting the fixed magic.
    key = password.upper()[:14].ljust(14, b"\0")
    return des_encrypt_block(key[:7], _LM_MAGIC) + des_encrypt_block(key[7:], _LM_MAGIC)


SCHEMES = (
    Scheme(
        "LANMAN", _lanman, encoding=Encoding.HEX, raw_length=16,
        weak="DES of the upper-cased first 14 characters, without salt",
    ),
    Scheme(
        "NTLM", _ntlm, encoding=Encoding.HEX, raw_length=16,
        weak="one unsalted pass of MD4",
    ),
)
