"""Random salts, always from `secrets`."""

from __future__ import annotations

import secrets

# The alphabet of crypt(3) salts, which Dovecot also uses for PBKDF2 salts.
CRYPT_SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def crypt_salt(length: int) -> str:
    return "".join(secrets.choice(CRYPT_SALT_CHARS) for _ in range(length))


def salt_bytes(length: int) -> bytes:
    return secrets.token_bytes(length)
