"""Normalisation and validation of what admins type: domains, addresses, quotas.

One place for these rules, used by the store (so the API, the pages and the CLI agree) and by
nothing that answers Postfix or Dovecot at lookup time (those compare already-normal forms).
Every violation raises `ValidationError` naming the field and saying what is wrong in words an
admin understands.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

import idna

# RFC 5321 4.5.3.1: local part ≤ 64 octets, domain ≤ 255 octets, a path ≤ 256 octets including
# the angle brackets, so an address is ≤ 254 octets; a DNS name is ≤ 253 characters, a label ≤ 63.
MAX_LOCALPART_OCTETS = 64
MAX_ADDRESS_OCTETS = 254
MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63

# RFC 5322 atext, plus any non-ASCII character (RFC 6531, internationalised local parts).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


class ValidationError(ValueError):
    """Input an admin can correct: `field` names it, `message` says what is wrong.

    As the store's refusals (`dinomail.store.errors`), it carries a stable `code` and the
    `params` its sentence is made of: the API returns the code, the pages translate by it.
    """

    def __init__(
        self, field: str, message: str, *, code: str = "invalid",
        params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code
        self.params: dict[str, object] = dict(params or {})


def normalize_domain(value: str, field: str = "name") -> str:
    """Lowercase ASCII form of a domain; Unicode names become IDNA (`xn--`) names."""
    name = value.strip().rstrip(".").lower() if isinstance(value, str) else None
    if not name:
        raise ValidationError(field, "a domain name is required", code="domain_required")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            message = f"{value!r} is not a valid domain name ({error})"
            raise ValidationError(
                field, message, code="domain_invalid", params={"value": value}
            ) from None
    if len(name) > MAX_DOMAIN_LENGTH:
        raise ValidationError(
            field, f"a domain name is at most {MAX_DOMAIN_LENGTH} characters",
            code="domain_too_long", params={"limit": MAX_DOMAIN_LENGTH},
        )
    labels = name.split(".")
    if len(labels) < 2:
        raise ValidationError(
            field, f"{value!r} is not a full domain name, such as example.org",
            code="domain_not_full", params={"value": value},
        )
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise ValidationError(
                field, f"the part {label!r} is longer than 63 characters",
                code="domain_label_too_long", params={"label": label, "limit": MAX_LABEL_LENGTH},
            )
        if not _LDH_LABEL.fullmatch(label):
            raise ValidationError(
                field,
                f"{value!r} is not a valid domain name: parts hold letters, digits and inner "
                "hyphens, separated by dots",
                code="domain_invalid", params={"value": value},
            )
    if labels[-1].isdigit():
        raise ValidationError(
            field, f"{value!r} is not a domain name (it ends in a number)",
            code="domain_numeric", params={"value": value},
        )
    return name


def display_domain(name: str) -> str:
    """The Unicode form of a stored IDNA domain, for people to read."""
    try:
        return idna.decode(name)
    except idna.IDNAError:
        return name


# Local parts (RFC 5321 dot-atom, RFC 6531 UTF-8) are stored in Unicode NFC, lowercased. Refused,
# because they make one address look like another or hide what it is:
# - control (Cc), format (Cf: zero-width spaces and joiners, BOM, bidi embeddings and overrides),
#   surrogate, private-use and unassigned (C*) characters, and every separator (Z*: spaces, line
#   and paragraph separators);
# - compatibility forms, i.e. characters NFKC normalisation would change (full-width `ａ`,
#   ligatures `ﬁ`, superscripts): they are refused rather than folded, so what an admin typed is
#   never silently turned into another address.
_REFUSED_CATEGORIES = ("C", "Z")


def check_localpart_characters(local: str, field: str) -> str:
    """The local part in NFC, or a ValidationError naming the first character refused."""
    local = unicodedata.normalize("NFC", local)
    for char in local:
        if unicodedata.category(char)[0] in _REFUSED_CATEGORIES:
            raise ValidationError(
                field,
                f"the part before @ contains an invisible or control character "
                f"(U+{ord(char):04X} {unicodedata.name(char, 'unnamed')})",
                code="localpart_invisible_character",
                params={"char": f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"},
            )
    if unicodedata.normalize("NFKC", local) != local:
        char = next(c for c in local if unicodedata.normalize("NFKC", c) != c)
        raise ValidationError(
            field,
            f"the part before @ contains a compatibility character (U+{ord(char):04X} "
            f"{unicodedata.name(char, 'unnamed')}); type {unicodedata.normalize('NFKC', char)!r} "
            "instead",
            code="localpart_compatibility_character",
            params={"char": f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}",
                    "replacement": unicodedata.normalize("NFKC", char)},
        )
    return local


def normalize_localpart(value: str, field: str) -> str:
    local = unicodedata.normalize("NFC", check_localpart_characters(value, field).lower())
    if not local:
        raise ValidationError(field, "the part before @ is empty", code="localpart_empty")
    if len(local.encode()) > MAX_LOCALPART_OCTETS:
        raise ValidationError(
            field, f"the part before @ is at most {MAX_LOCALPART_OCTETS} bytes long",
            code="localpart_too_long", params={"limit": MAX_LOCALPART_OCTETS},
        )
    if not _DOT_ATOM.fullmatch(local):
        raise ValidationError(
            field,
            f"{value!r} is not a valid mailbox name: use letters, digits and . _ - + "
            "(no spaces, no two dots in a row, no dot at either end)",
            code="localpart_invalid", params={"value": value},
        )
    return local


def split_address(value: str, field: str) -> tuple[str, str]:
    if not isinstance(value, str) or "@" not in value:
        raise ValidationError(
            field, f"{value!r} is not an email address (no @)",
            code="address_without_at", params={"value": value},
        )
    local, _, domain = value.strip().rpartition("@")
    return local, domain


def normalize_email(value: str, field: str = "email") -> str:
    """`Local@Exämple.org` → `local@xn--exmple-cua.org`, checked against RFC 5321 limits."""
    local, domain = split_address(value, field)
    address = f"{normalize_localpart(local, field)}@{normalize_domain(domain, field)}"
    if len(address.encode()) > MAX_ADDRESS_OCTETS:
        raise ValidationError(
            field, f"an email address is at most {MAX_ADDRESS_OCTETS} bytes",
            code="address_too_long", params={"limit": MAX_ADDRESS_OCTETS},
        )
    return address


def normalize_alias_source(value: str, field: str = "source") -> str:
    """An address, or `@domain` for the domain's catch-all."""
    if isinstance(value, str) and value.strip().startswith("@"):
        return "@" + normalize_domain(value.strip()[1:], field)
    return normalize_email(value, field)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def check_address_in_domain(address: str, domain: str, field: str) -> None:
    """The original rule: a mailbox's email (an alias's source) belongs to its domain."""
    address_domain = domain_of(address)
    if address_domain != domain:
        raise ValidationError(
            field,
            f"The domain of {address} ({address_domain}) is not the same as the domain {domain}",
            code="address_in_other_domain",
            params={"address": address, "address_domain": address_domain, "domain": domain},
        )


def normalize_quota(value: object, field: str = "quota") -> int:
    """Bytes, as a whole number ≥ 0 (0 = unlimited). Strings of digits are accepted."""
    if isinstance(value, bool):
        raise ValidationError(field, "must be a number of bytes", code="not_whole_number")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValidationError(field, "must be a whole number of bytes", code="not_whole_number")
    if value < 0:
        raise ValidationError(field, "must be zero (unlimited) or more", code="negative_number")
    if value > 2**63 - 1:
        raise ValidationError(field, "is too large", code="number_too_large")
    return value


def normalize_limit(value: object, field: str) -> int:
    """A count limit (mailboxes, aliases): a whole number ≥ 0, 0 = unlimited."""
    quota = normalize_quota(value, field)
    if quota > 2**31 - 1:
        raise ValidationError(field, "is too large", code="number_too_large")
    return quota


def normalize_text(value: object, field: str, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, "must be text", code="not_text")
    text = value.strip()
    if len(text) > max_length:
        raise ValidationError(
            field, f"is at most {max_length} characters",
            code="text_too_long", params={"limit": max_length},
        )
    if any(ord(char) < 32 for char in text):
        raise ValidationError(
            field, "must not contain control characters", code="control_characters"
        )
    return text


def normalize_hostname(value: object, field: str) -> str:
    """An optional host name (autoconfig addresses): empty, or a valid domain name."""
    text = normalize_text(value, field, 255)
    return normalize_domain(text, field) if text else ""


def normalize_bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValidationError(field, "must be true or false", code="not_boolean")


USERNAME_PATTERN = re.compile(r"[A-Za-z0-9@.+_-]{1,150}")


def normalize_username(value: object, field: str = "username") -> str:
    """Admin login names, as Django allowed them: letters, digits and @ . + - _."""
    if not isinstance(value, str) or not USERNAME_PATTERN.fullmatch(value.strip()):
        raise ValidationError(
            field, "must be 1 to 150 letters, digits or @ . + - _ characters",
            code="username_invalid",
        )
    return value.strip()
