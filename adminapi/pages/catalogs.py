"""Keeping the translation catalogs in step with the code and templates.

    python -m adminapi.pages.catalogs update   # extract messages.pot, merge into every .po
    python -m adminapi.pages.catalogs check    # exit 1 if a message lacks a translation

Then translate the new entries in `translations/<lang>/LC_MESSAGES/messages.po`. Nothing needs
compiling by hand: the build compiles `.mo` files (setup.py), and the pages compile a `.po` in
memory when its `.mo` is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po, write_po

from adminapi.pages.i18n import DOMAIN, SOURCE_LANGUAGE, TRANSLATIONS_DIR, catalog_paths
from dinomail.settings import LANGUAGES

PACKAGE_DIR = Path(__file__).parent
TEMPLATE_PATH = TRANSLATIONS_DIR / f"{DOMAIN}.pot"
METHOD_MAP = [
    ("*.py", "python"),
    ("templates/**.html", "jinja2.ext:babel_extract"),
]
OPTIONS_MAP = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
# `N_` marks messages translated later, where they are shown (status names, store refusals).
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}


def extract() -> Catalog:
    template = Catalog(
        project="DinoMail", version="1.0", fuzzy=False,
        msgid_bugs_address="https://github.com/nanoy42/dinomail/issues",
        copyright_holder="DinoMail contributors",
        header_comment="# Messages of the DinoMail web pages.\n#",
    )
    for filename, lineno, message, comments, context in extract_from_dir(
        PACKAGE_DIR, METHOD_MAP, OPTIONS_MAP, keywords=KEYWORDS, strip_comment_tags=True
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments,
                     context=context)
    return template


def _write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        write_po(file, catalog, width=100, sort_output=False, omit_header=False,
                 include_lineno=False)


def update() -> None:
    template = extract()
    _write(template, TEMPLATE_PATH)
    for language in LANGUAGES:
        if language == SOURCE_LANGUAGE:
            continue
        po_path, _mo_path = catalog_paths(language)
        if po_path.is_file():
            with po_path.open("rb") as file:
                catalog = read_po(file, locale=language)
        else:
            catalog = Catalog(locale=language, project="DinoMail")
        catalog.update(template, no_fuzzy_matching=True)
        # Entries no longer used are dropped rather than kept as comments.
        catalog.obsolete.clear()
        _write(catalog, po_path)


def missing_translations(language: str) -> list[str]:
    """Messages of the code and templates without a translation in `language` (or fuzzy)."""
    po_path, _mo_path = catalog_paths(language)
    with po_path.open("rb") as file:
        catalog = read_po(file, locale=language)
    missing = []
    for message in extract():
        if not message.id:
            continue
        found = catalog.get(message.id)
        strings = found.string if found else None
        complete = all(strings) if isinstance(strings, tuple | list) else bool(strings)
        if found is None or not complete or found.fuzzy:
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def main(argv: list[str]) -> int:
    if argv == ["update"]:
        update()
        return 0
    if argv == ["check"]:
        problems = {language: missing_translations(language) for language in LANGUAGES
                    if language != SOURCE_LANGUAGE}
        for language, missing in problems.items():
            for message in missing:
                print(f"{language}: untranslated: {message!r}")
        return 1 if any(problems.values()) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
