"""The `DINOMAIL_PASSWORD_SCHEME` setting: Dovecot scheme names and the original dotted names."""

from __future__ import annotations

from dinomail.passwords.errors import PasswordSchemeError, UnknownSchemeError
from dinomail.passwords.schemes import lookup_scheme

# DinoMail 0.2 named a Python function; each made one Dovecot scheme. make_password_crypt made
# DES under {CRYPT}; Dovecot's CRYPT now makes bcrypt and still checks the old DES hashes.
ORIGINAL_NAMES = {
    "core.utils.make_password_plain": "PLAIN",
    "core.utils.make_password_plain_trunc": "PLAIN-TRUNC",
    "core.utils.make_password_cleartext": "CLEARTEXT",
    "core.utils.make_password_clear": "CLEAR",
    "core.utils.make_password_sha": "SHA",
    "core.utils.make_password_ssha": "SSHA",
    "core.utils.make_password_sha256": "SHA256",
    "core.utils.make_password_ssha256": "SSHA256",
    "core.utils.make_password_sha512": "SHA512",
    "core.utils.make_password_ssha512": "SSHA512",
    "core.utils.make_password_plain_md5": "PLAIN-MD5",
    "core.utils.make_password_ldap_md5": "LDAP-MD5",
    "core.utils.make_password_crypt": "CRYPT",
    "core.utils.make_password_des_crypt": "DES-CRYPT",
    "core.utils.make_password_md5_crypt": "MD5-CRYPT",
    "core.utils.make_password_sha256_crypt": "SHA256-CRYPT",
    "core.utils.make_password_sha512_crypt": "SHA512-CRYPT",
    "core.utils_argon.make_password_argon2i": "ARGON2I",
    "core.utils_argon.make_password_argon2id": "ARGON2ID",
    "core.utils_bcrypt.make_password_blf_crypt": "BLF-CRYPT",
    "core.utils_passlib.make_password_lanman": "LANMAN",
}

STRONG_CHOICES = "SHA512-CRYPT, BLF-CRYPT or ARGON2ID"


def scheme_from_setting(value: str, *, allow_weak: bool) -> str:
    """The scheme name a setting value stands for; weak schemes need `allow_weak`."""
    text = value.strip()
    if text in ORIGINAL_NAMES:
        name = ORIGINAL_NAMES[text]
    elif text.startswith("core."):
        raise PasswordSchemeError(f"unknown original password function {text!r}")
    else:
        try:
            lookup_scheme(text)
        except UnknownSchemeError:
            raise PasswordSchemeError(
                f"unknown password scheme {text!r}; use a Dovecot scheme such as "
                f"{STRONG_CHOICES}"
            ) from None
        name = text.upper()
    scheme, _, _ = lookup_scheme(name)
    if scheme.weak is not None and not allow_weak:
        raise PasswordSchemeError(
            f"{name} is a weak password scheme ({scheme.weak}); use {STRONG_CHOICES}, "
            "or set ALLOW_WEAK_PASSWORD_SCHEMES to keep it"
        )
    return name
