"""Dovecot password schemes: make and check `{SCHEME}data` hashes exactly as Dovecot 2.3 does.

Every scheme `doveadm pw -l` lists on Dovecot 2.3.19, plus NTLM and LANMAN for old databases.
"""

from dinomail.passwords.errors import PasswordSchemeError, UnknownSchemeError
from dinomail.passwords.hashing import hash_password, split_stored, verify_password
from dinomail.passwords.schemes import DEFAULT_SCHEME, SCHEMES, WEAK_SCHEMES
from dinomail.passwords.setting import scheme_from_setting

__all__ = [
    "DEFAULT_SCHEME",
    "SCHEMES",
    "WEAK_SCHEMES",
    "PasswordSchemeError",
    "UnknownSchemeError",
    "hash_password",
    "scheme_from_setting",
    "split_stored",
    "verify_password",
]
