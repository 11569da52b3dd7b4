"""Every refusal of the store and the validators carries a stable code, and the pages translate
it by that code: rewording an English sentence changes no translation."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from adminapi.pages.forms import Gettext
from adminapi.pages.i18n import Formats, translations_for
from adminapi.pages.refusals import REFUSALS, translate_refusal
from dinomail.store.errors import Conflict, LimitExceeded, NotFound
from dinomail.validation import ValidationError

ROOT = Path(__file__).resolve().parent.parent
# `Unavailable` is no refusal: its one code is its class's.
REFUSAL_CLASSES = {
    "ValidationError", "StoreError", "NotFound", "Conflict", "LimitExceeded", "Forbidden",
}


def _refusals_raised() -> list[tuple[str, str | None]]:
    """(where, code) of every refusal built in the packages; code None when none is given."""
    found = []
    for package in ("dinomail", "adminapi", "lookupd"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name not in REFUSAL_CLASSES:
                    continue
                code = next((k.value for k in node.keywords if k.arg == "code"), None)
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if isinstance(code, ast.Constant) and isinstance(code.value, str):
                    found.append((where, code.value))
                elif code is None:
                    found.append((where, None))
    return found


def test_every_refusal_names_its_code() -> None:
    raised = _refusals_raised()
    assert len(raised) > 50
    assert [where for where, code in raised if code is None] == []


def test_every_code_raised_has_a_translation() -> None:
    codes = {code for _where, code in _refusals_raised() if code}
    assert sorted(codes - set(REFUSALS)) == []


def _french() -> tuple[Gettext, Callable[[int], str]]:
    return translations_for("fr").gettext, Formats("fr", "UTC").size


def _sample_params(message: str, sizes: tuple[str, ...]) -> dict[str, object]:
    """A value for each param the sentence names; sizes get a number of bytes."""
    names = re.findall(r"%\((\w+)\)s", message)
    return {name: 1_500_000 if name in sizes else f"<{name}>" for name in names}


@pytest.mark.parametrize("code", sorted(REFUSALS))
def test_each_code_renders_in_french(code: str) -> None:
    gettext, size = _french()
    refusal = REFUSALS[code]
    params = _sample_params(refusal.message, refusal.sizes)
    error = NotFound("whatever the store says", code=code, params=params)
    french = translate_refusal(error, gettext, size)
    assert french != refusal.message % params, f"{code} has no French translation"
    assert "%(" not in french and "whatever" not in french
    for name, value in params.items():
        shown = size(1_500_000) if name in refusal.sizes else str(value)
        assert shown in french, (code, name, french)


def test_rewording_a_message_changes_no_translation() -> None:
    gettext, size = _french()
    params = {"email": "a@example.org"}
    said = Conflict("the mailbox a@example.org already exists", field="email",
                    code="mailbox_exists", params=params)
    reworded = Conflict("a@example.org is taken", field="email", code="mailbox_exists",
                        params=params)
    assert translate_refusal(said, gettext, size) == translate_refusal(reworded, gettext, size)
    assert translate_refusal(said, gettext, size) == "L'utilisateur a@example.org existe déjà."
    over = LimitExceeded("no room", field="quota", code="total_quota_exceeded",
                         params={"name": "a.org", "total": 10**9, "others": 5 * 10**8})
    assert size(10**9) in translate_refusal(over, gettext, size)
    typo = ValidationError("email", "reworded at will", code="address_without_at",
                           params={"value": "nobody"})
    assert translate_refusal(typo, gettext, size) == (
        "«\xa0nobody\xa0» n'est pas une adresse e-mail (pas de @)."
    )


def test_an_unknown_code_shows_the_sentence_as_it_is() -> None:
    gettext, size = _french()
    error = NotFound("something new", code="not_in_the_table")
    assert translate_refusal(error, gettext, size) == "something new"
