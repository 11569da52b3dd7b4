"""Languages of the pages: the gettext catalogs, which language a request gets, and the
formatting of dates and sizes in that language.

Catalogs live in `translations/<lang>/LC_MESSAGES/messages.po`. The build compiles them to
`.mo` files (see setup.py); where no `.mo` is found (an editable install, a source checkout),
the `.po` is compiled in memory at start-up, so a translation never needs a manual step.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from starlette.requests import Request

from dinomail.settings import LANGUAGES

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
DOMAIN = "messages"
# The language the msgids are written in: it needs no catalog.
SOURCE_LANGUAGE = "en"
# Browsers send a handful of languages; a longer header is not worth reading to the end.
MAX_ACCEPT_LANGUAGE_ITEMS = 32
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}


def catalog_paths(language: str) -> tuple[Path, Path]:
    folder = TRANSLATIONS_DIR / language / "LC_MESSAGES"
    return folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"


def compile_po(po_path: Path) -> bytes:
    """The `.mo` bytes of a `.po` file, as `pybabel compile` would write them."""
    with po_path.open("rb") as file:
        catalog = read_po(file, locale=po_path.parent.parent.name)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


@cache
def translations_for(language: str) -> gettext.NullTranslations:
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    po_path, mo_path = catalog_paths(language)
    # A `.mo` older than its `.po` was left by an earlier build; the `.po` is the truth.
    if mo_path.is_file() and (
        not po_path.is_file() or mo_path.stat().st_mtime >= po_path.stat().st_mtime
    ):
        with mo_path.open("rb") as file:
            return Translations(file, domain=DOMAIN)
    return Translations(io.BytesIO(compile_po(po_path)), domain=DOMAIN)


def parse_accept_language(header: str) -> list[str]:
    """Primary language tags of an Accept-Language header, most wanted first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE_ITEMS]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if quality <= 0 or not tag:
            continue
        ranked.append((-quality, position, tag.split("-")[0].strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(request: Request, chosen: str | None, default: str) -> str:
    """The admin's own choice, else the browser's best supported language, else the setting."""
    if chosen in LANGUAGES:
        return chosen
    for tag in parse_accept_language(request.headers.get("accept-language", "")):
        if tag in LANGUAGES:
            return tag
        if tag == "*":
            return default
    return default


class Formats:
    """Dates and sizes written for one language and time zone."""

    def __init__(self, language: str, time_zone: str) -> None:
        self.language = language
        self.zone = ZoneInfo(time_zone)
        self._ = translations_for(language).gettext

    def datetime(self, moment: dt.datetime | None) -> str:
        if moment is None:
            return self._("never")
        if moment.tzinfo is None:
            # SQLite gives back naive datetimes; they were written in UTC.
            moment = moment.replace(tzinfo=ZoneInfo("UTC"))
        return format_datetime(moment, "short", tzinfo=self.zone, locale=self.language)

    def datetime_iso(self, moment: dt.datetime | None) -> str:
        if moment is None:
            return ""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo("UTC"))
        return moment.astimezone(self.zone).isoformat(timespec="seconds")

    def number(self, value: float) -> str:
        return format_decimal(value, "#,##0.#", locale=self.language)

    def size(self, size: int | None) -> str:
        """Bytes in decimal units, as the original's `readable_quota` (B, kB, MB, GB), with
        one decimal where the original cut it off (1.9 GB showed as 1 GB)."""
        _ = self._
        size = int(size or 0)
        if size < 1000:
            return _("%(number)s B") % {"number": self.number(size)}
        if size < 10**6:
            return _("%(number)s kB") % {"number": self.number(_floor(size / 1e3))}
        if size < 10**9:
            return _("%(number)s MB") % {"number": self.number(_floor(size / 1e6))}
        if size < 10**12:
            return _("%(number)s GB") % {"number": self.number(_floor(size / 1e9))}
        return _("%(number)s TB") % {"number": self.number(_floor(size / 1e12))}

    def quota(self, quota: int | None) -> str:
        """A mailbox quota: 0 and NULL both mean unlimited."""
        return self.size(quota) if quota else self._("Unlimited")


def _floor(value: float) -> float:
    """One decimal, rounded down: a quota is never shown larger than it is."""
    return int(value * 10) / 10
