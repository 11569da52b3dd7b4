"""Store refusals in the admin's language, by their stable code (new refusals) or, for
validation messages that carry no code, by their English sentence; anything else falls back
to the pages' shared table (`forms.translate_refusal`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail.store import StoreError
from dinomail.validation import ValidationError

Messages = Mapping[str, str]


def refusal_text(page: Page, error: StoreError | ValidationError, codes: Messages,
                 sentences: Messages | None = None) -> str:
    """`codes` maps a store error's code to a message id taking its params; `sentences` maps a
    regular expression of a validation message to a message id taking its named groups."""
    if isinstance(error, StoreError) and error.code in codes:
        return page._(codes[error.code]) % {key: str(value) for key, value in error.params.items()}
    for pattern, message in (sentences or {}).items():
        match = re.fullmatch(pattern, error.message)
        if match is not None:
            return page._(message) % match.groupdict()
    return page.refusal(error)


def refuse_into(page: Page, form: Form, error: StoreError | ValidationError, codes: Messages,
                sentences: Messages | None = None, fields: Mapping[str, str] | None = None
                ) -> None:
    """The refusal under the field it names (`fields` maps the store's names to the form's)."""
    name = (fields or {}).get(error.field or "", error.field)
    form.add_error(name, refusal_text(page, error, codes, sentences))
