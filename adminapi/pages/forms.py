"""Forms of the pages: reading a posted form, holding what was typed and what is wrong with it,
sizes typed by people."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from adminapi.api.body import read_body

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
