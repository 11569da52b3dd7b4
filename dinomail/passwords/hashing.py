"""hash_password and verify_password over `{SCHEME}data` strings."""

from __future__ import annotations

from dinomail.passwords.encoding import decode, encode
from dinomail.passwords.errors import PasswordSchemeError
from dinomail.passwords.schemes import lookup_scheme


def _password_bytes(plain: str) -> bytes:
    if not isinstance(plain, str):
        raise TypeError("the password must be a str")
    try:
        # Surrogate escapes stand for bytes that were not UTF-8 (os.fsdecode of argv).
        return plain.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise PasswordSchemeError("the password is not encodable as UTF-8") from None


def hash_password(
    plain: str, scheme: str, *, user: str | None = None, rounds: int | None = None
) -> str:
    """`{SCHEME}data` for `plain`, with a fresh salt; `scheme` is printed upper-cased.

    `user` is needed by DIGEST-MD5 only. `rounds` is the cost of the schemes that have one
    (`doveadm pw -r`) and must lie within Dovecot's limits for that scheme.
    """
    definition, encoding, _ = lookup_scheme(scheme)
    password = _password_bytes(plain)
    if b"\0" in password:
        raise PasswordSchemeError("a password cannot contain NUL: Dovecot's protocols end it there")
    if rounds is not None:
        limits = definition.rounds
        if limits is None:
            raise PasswordSchemeError(f"{definition.name} takes no rounds")
        if isinstance(rounds, bool) or not isinstance(rounds, int):
            raise PasswordSchemeError(f"rounds must be an integer, not {rounds!r}")
        if not limits.minimum <= rounds <= limits.maximum:
            raise PasswordSchemeError(
                f"rounds for {definition.name} must be between {limits.minimum} and "
                f"{limits.maximum}, not {rounds}"
            )
    raw = definition.generate(password, user, rounds)
    return f"{{{scheme.upper()}}}{encode(raw, encoding)}"


def split_stored(stored: str) -> tuple[str, str]:
    """(scheme as written, data) of a stored hash; a bare `$1$...` string is MD5-CRYPT."""
    if stored.startswith("$1$"):
        # As Dovecot: `$1$<salt>$<hash>`, anything after a further '$' ignored.
        fields = stored.split("$", 4)
        if len(fields) >= 4:
            return "MD5-CRYPT", "$".join(fields[:4])
    if stored.startswith("{") and "}" in stored:
        end = stored.index("}")
        return stored[1:end], stored[end + 1 :]
    raise PasswordSchemeError("the stored hash has no {SCHEME} prefix")


def verify_password(plain: str, stored: str, *, user: str | None = None) -> bool:
    """Whether `plain` matches `stored` (`{SCHEME}data`), as Dovecot would decide.

    False means a wrong password. An unknown scheme, a malformed hash or a DIGEST-MD5 hash
    without `user` raise PasswordSchemeError instead.
    """
    if not isinstance(stored, str):
        raise TypeError("the stored hash must be a str")
    scheme_name, data = split_stored(stored)
    definition, encoding, suffixed = lookup_scheme(scheme_name)
    raw = decode(data, encoding, raw_length=definition.raw_length, suffixed=suffixed)
    password = _password_bytes(plain)
    if b"\0" in password:
        return False
    return definition.check(password, raw, user)
