"""Forms of the pages: reading a posted form, holding what was typed and what is wrong with it,
sizes typed by people, and the store's refusals in the admin's language."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from adminapi.api.body import read_body
from dinomail.store.errors import StoreError
from dinomail.validation import ValidationError

# No form of the pages has more; a body with more is not one of ours.
MAX_FORM_FIELDS = 50
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Gettext = Callable[[str], str]


def N_(message: str) -> str:
    """Marks a message for the catalog; it is translated where it is shown."""
    return message


class BadForm(Exception):
    """A body that no page's form sends (wrong type, not UTF-8, too many fields)."""


class FormData:
    """The fields of a posted form; a field sent twice keeps its first value."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(name, value)

    def get(self, name: str) -> str:
        return self._values.get(name, "")

    def text(self, name: str) -> str:
        return self.get(name).strip()

    def checked(self, name: str) -> bool:
        return name in self._values

    def __contains__(self, name: object) -> bool:
        return name in self._values


async def read_form(request: Request) -> FormData:
    """The body of a form POST. Only URL-encoded forms are accepted: no page uploads files."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await read_body(request)
    if not body:
        # A form of buttons only, sent by a client that leaves out the content type.
        return FormData(())
    if media_type != FORM_CONTENT_TYPE:
        raise BadForm("not a form")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadForm("not UTF-8, or too many fields") from None
    return FormData(pairs)


@dataclass
class Form:
    """What the admin typed (shown again when something is wrong) and the errors by field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # An error that belongs to no one field.
    error: str | None = None

    def add_error(self, name: str | None, message: str) -> None:
        if name is None or name not in self.values:
            self.error = message
        else:
            self.errors.setdefault(name, message)

    @property
    def valid(self) -> bool:
        return not self.errors and self.error is None


def parse_count(text: str) -> int | None:
    """A whole number typed by a person (a limit); None when it is not one."""
    text = text.strip()
    return int(text) if text.isdigit() and text.isascii() else None


# --- sizes ---------------------------------------------------------------------------------------

# French writes octets: Go, Mo, ko. Binary units are accepted for those who think in them.
_UNITS = {
    "": 1, "b": 1, "o": 1,
    "k": 10**3, "kb": 10**3, "ko": 10**3,
    "m": 10**6, "mb": 10**6, "mo": 10**6,
    "g": 10**9, "gb": 10**9, "go": 10**9,
    "t": 10**12, "tb": 10**12, "to": 10**12,
    "kib": 2**10, "kio": 2**10, "mib": 2**20, "mio": 2**20,
    "gib": 2**30, "gio": 2**30, "tib": 2**40, "tio": 2**40,
}
_SIZE = re.compile(r"(\d+(?:[.,]\d+)?)\s*([a-z]*)")
MAX_SIZE = 2**63 - 1


def parse_size(text: str) -> int | None:
    """`2 GB`, `500MB`, `1,5 Go`, `1 GiB` or plain bytes; None when it is none of these."""
    match = _SIZE.fullmatch(text.strip().lower().replace("\u202f", "").replace("\xa0", ""))
    if match is None or match.group(2) not in _UNITS:
        return None
    try:
        value = Decimal(match.group(1).replace(",", ".")) * _UNITS[match.group(2)]
    except InvalidOperation:
        return None
    if value > MAX_SIZE:
        return None
    return int(value)


def size_for_input(size: int | None) -> str:
    """A size as an admin would type it, exactly: the largest whole decimal unit, else bytes."""
    size = int(size or 0)
    if size == 0:
        return "0"
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size % factor == 0:
            return f"{size // factor} {unit}"
    return str(size)


# --- the store's refusals, in the admin's language -----------------------------------------------

# (pattern of the store's English message, message id, which groups are sizes in bytes)
STORE_MESSAGES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), message, sizes) for pattern, message, sizes in (
        (r"the domain (?P<name>\S+) already exists",
         N_("The domain %(name)s already exists."), ()),
        (r"(?P<name>\S+) is already an alias domain",
         N_("%(name)s is already an alias domain."), ()),
        (r"(?P<name>\S+) is already a mail domain",
         N_("%(name)s is already a mail domain."), ()),
        (r"the alias domain (?P<name>\S+) already exists",
         N_("The alias domain %(name)s already exists."), ()),
        (r"the mailbox (?P<email>\S+) already exists",
         N_("The mailbox %(email)s already exists."), ()),
        (r"the alias (?P<source>\S+) -> (?P<destination>\S+) already exists",
         N_("The alias %(source)s → %(destination)s already exists."), ()),
        (r"The domain of (?P<address>\S+) \((?P<address_domain>\S+)\) is not the same as the "
         r"domain (?P<domain>\S+)",
         N_("The domain of %(address)s (%(address_domain)s) is not the same as the domain "
            "%(domain)s"), ()),
        (r"a domain with mailboxes or aliases cannot be renamed",
         N_("A domain with mailboxes or aliases cannot be renamed."), ()),
        (r"only a superadmin can create a domain",
         N_("Only a superadmin can create a domain."), ()),
        (r"only a superadmin can delete a domain",
         N_("Only a superadmin can delete a domain."), ()),
        (r"only a superadmin can change a domain's name or limits",
         N_("Only a superadmin can change a domain's name or limits."), ()),
        (r"the domain (?P<name>\S+) already has its maximum of (?P<limit>\d+) mailboxes",
         N_("The domain %(name)s already has its maximum of %(limit)s mailboxes."), ()),
        (r"the domain (?P<name>\S+) allows at most (?P<limit>\d+) aliases",
         N_("The domain %(name)s allows at most %(limit)s aliases."), ()),
        (r"the quota must be between 1 and (?P<cap>\d+) bytes in (?P<name>\S+)",
         N_("In %(name)s, the quota must be more than 0 and at most %(cap)s."), ("cap",)),
        (r"(?P<name>\S+) has a total quota, so each mailbox needs a quota",
         N_("%(name)s has a total quota, so each mailbox needs a quota (not unlimited)."), ()),
        (r"(?P<name>\S+) would exceed its total quota of (?P<total>\d+) bytes "
         r"\((?P<others>\d+) already given to other mailboxes\)",
         N_("%(name)s would exceed its total quota of %(total)s (%(others)s already given to "
            "other mailboxes)."), ("total", "others")),
        (r"(?P<name>\S+) is not a domain you manage",
         N_("%(name)s is not a domain you manage."), ()),
        (r"only a superadmin can change sending limits",
         N_("Only a superadmin can change sending limits."), ()),
        (r"only a superadmin can reset sending counts",
         N_("Only a superadmin can reset sending counts."), ()),
        (r"must be a Postfix action: .*",
         N_("Enter a Postfix action: DEFER_IF_PERMIT, DEFER, REJECT or a 4xx/5xx code, then "
            "an optional status and text (ASCII), as in “452 4.2.2 Mailbox full”."), ()),
        (r"the status (?P<status>\S+) does not match a (?P<reply_class>\d)xx reply",
         N_("The status %(status)s does not match a %(reply_class)sxx reply."), ()),
        (r"domain not found", N_("No such domain among yours."), ()),
        (r"an alias cannot deliver to its own address",
         N_("An alias cannot deliver to its own address."), ()),
        (r"is required", N_("This field is required."), ()),
        (r"a domain name is required", N_("A domain name is required."), ()),
        (r"a new password is required", N_("A new password is required."), ()),
        (r"is at most (?P<limit>\d+) characters", N_("At most %(limit)s characters."), ()),
        (r"must not contain control characters",
         N_("Must not contain control characters."), ()),
        (r"must not contain tabs, line breaks or NUL characters",
         N_("Must not contain tabs, line breaks or NUL characters."), ()),
        (r"'(?P<value>.*)' is not a full domain name, such as example.org",
         N_("“%(value)s” is not a full domain name, such as example.org."), ()),
        (r"'(?P<value>.*)' is not a valid domain name.*",
         N_("“%(value)s” is not a valid domain name: parts hold letters, digits and inner "
            "hyphens, separated by dots."), ()),
        (r"'(?P<value>.*)' is not a domain name \(it ends in a number\)",
         N_("“%(value)s” is not a domain name (it ends in a number)."), ()),
        (r"'(?P<value>.*)' is not an email address \(no @\)",
         N_("“%(value)s” is not an email address (no @)."), ()),
        (r"the part before @ is empty", N_("The part before @ is empty."), ()),
        (r"'(?P<value>.*)' is not a valid mailbox name.*",
         N_("“%(value)s” is not a valid mailbox name: use letters, digits and . _ - + (no "
            "spaces, no two dots in a row, no dot at either end)."), ()),
        (r"must be a whole number of bytes|must be a number of bytes",
         N_("Enter a whole number of bytes."), ()),
        (r"must be zero \(unlimited\) or more", N_("Must be 0 (unlimited) or more."), ()),
        (r"is too large", N_("This number is too large."), ()),
        (r"only a superadmin can create or rename an alias domain",
         N_("Only a superadmin can create or rename an alias domain."), ()),
        (r"(?P<source>\S+) is a mailbox: an alias on its address would take its mail; set "
         r"the mailbox's forwarding instead",
         N_("%(source)s is a mailbox: an alias on its address would take its mail; set the "
            "mailbox's forwarding instead."), ()),
        (r"must be at least (?P<limit>\d+) characters",
         N_("At least %(limit)s characters."), ()),
        (r"must not be the mailbox's address or its name",
         N_("The password must not be the mailbox's address or its name."), ()),
        (r"is one of the commonest passwords; choose another",
         N_("This is one of the commonest passwords; choose another."), ()),
        (r"the part before @ contains an invisible or control character \((?P<char>.*)\)",
         N_("The part before @ contains an invisible or control character (%(char)s)."), ()),
        (r"the part before @ contains a compatibility character \((?P<char>[^)]*)\).*",
         N_("The part before @ contains a compatibility character (%(char)s), such as a "
            "full-width letter; type the ordinary character instead."), ()),
    )
)


def translate_refusal(
    error: StoreError | ValidationError, _: Gettext, size: Callable[[int], str]
) -> str:
    """The store's message in the admin's language when it is a known one, else as it is."""
    for pattern, message, sizes in STORE_MESSAGES:
        match = pattern.fullmatch(error.message)
        if match is not None:
            values = {
                name: size(int(value)) if name in sizes else value
                for name, value in match.groupdict().items()
            }
            return _(message) % values
    return error.message
