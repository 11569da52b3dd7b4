"""The registry of password schemes and the lookup of a name like `sha512-crypt` or `SHA.hex`."""

from __future__ import annotations

from dinomail.passwords import (
    argon,
    crypt_family,
    digest_schemes,
    otp,
    pbkdf2,
    plain,
    scram,
    windows,
)
from dinomail.passwords.encoding import SUFFIXES, Encoding
from dinomail.passwords.errors import UnknownSchemeError
from dinomail.passwords.model import Scheme

DEFAULT_SCHEME = "SHA512-CRYPT"

REGISTRY: dict[str, Scheme] = {
    scheme.name: scheme
    for module in (crypt_family, argon, scram, pbkdf2, digest_schemes, otp, plain, windows)
    for scheme in module.SCHEMES
}

SCHEMES: tuple[str, ...] = tuple(REGISTRY)
WEAK_SCHEMES: frozenset[str] = frozenset(
    name for name, scheme in REGISTRY.items() if scheme.weak is not None
)


def lookup_scheme(name: str) -> tuple[Scheme, Encoding, bool]:
    """The scheme, the encoding of its data, and whether a suffix chose that encoding.

    Names are case-insensitive; `.b64`, `.base64` and `.hex` override the encoding, and any
    other suffix makes the whole name unknown, as in Dovecot.
    """
    base, dot, suffix = name.partition(".")
    scheme = REGISTRY.get(base.upper())
    if scheme is None:
        raise UnknownSchemeError(name)
    if not dot:
        return scheme, scheme.encoding, False
    encoding = SUFFIXES.get(suffix.lower())
    if encoding is None:
        raise UnknownSchemeError(name)
    return scheme, encoding, True
