"""Checking input values against the JSON Schema of their field.

The OpenAPI document publishes these same schemas, so what the document promises and what the
API accepts cannot drift apart. Only the keywords the field specs use are supported; a spec using
another one fails at import (see `check_schema`), not at a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from adminapi.api.errors import ApiError, invalid

SUPPORTED_KEYWORDS = frozenset({
    "type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "items",
    "maxItems", "anyOf", "format", "description", "readOnly", "writeOnly", "examples", "default",
})
_TYPE_NAMES = {
    "string": "text", "integer": "a whole number", "boolean": "true or false", "null": "null",
    "array": "a list", "object": "an object",
}


def check_schema(schema: Mapping[str, Any]) -> None:
    unknown = set(schema) - SUPPORTED_KEYWORDS
    if unknown:
        raise TypeError(f"unsupported JSON Schema keywords {sorted(unknown)} in {schema}")
    for sub in schema.get("anyOf", ()):
        check_schema(sub)
    if "items" in schema:
        check_schema(schema["items"])


@cache
def _pattern(text: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where `$` ends the text; Python's `$` also matches
    # before a final newline, which would let "value\n" through.
    return re.compile(text[:-1] + r"\Z" if text.endswith("$") else text)


def _type_matches(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise TypeError(f"unsupported type {kind!r}")


def _describe_types(kinds: list[str]) -> str:
    return " or ".join(_TYPE_NAMES[kind] for kind in kinds)


def check_value(schema: Mapping[str, Any], value: Any, field: str) -> Any:
    """`value` if it fits `schema` (integral floats become ints), else a 400 naming `field`."""
    if "anyOf" in schema:
        first_error = None
        for option in schema["anyOf"]:
            try:
                return check_value(option, value, field)
            except ApiError as error:
                # The first option's message is kept: options are listed most likely first.
                first_error = first_error or error
        raise first_error or invalid(field, "has an unexpected value")
    # JSON does not tell 1 from 1.0; JSON Schema counts both as integers.
    if isinstance(value, float) and value.is_integer() and "integer" in _types(schema):
        value = int(value)
    kinds = _types(schema)
    if kinds and not any(_type_matches(kind, value) for kind in kinds):
        raise invalid(field, f"must be {_describe_types(kinds)}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(choice) for choice in schema["enum"])
        raise invalid(field, f"must be one of: {choices}")
    if isinstance(value, str):
        _check_text(schema, value, field)
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise invalid(field, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise invalid(field, f"must be at most {schema['maximum']}")
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise invalid(field, f"holds at most {schema['maxItems']} items")
        if "items" in schema:
            value = [check_value(schema["items"], item, field) for item in value]
    return value


def _types(schema: Mapping[str, Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _check_text(schema: Mapping[str, Any], value: str, field: str) -> None:
    check_text(value, field)
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise invalid(field, "must not be empty" if schema["minLength"] == 1
                      else f"must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise invalid(field, f"must be at most {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        raise invalid(field, f"does not have the expected form ({schema['pattern']})")


def check_text(value: str, field: str) -> None:
    """Text the databases can store: no NUL character, no lone UTF-16 surrogate (which JSON's
    `\\ud800` escapes can produce and UTF-8 cannot encode)."""
    if "\x00" in value:
        raise invalid(field, "must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "is not valid Unicode text") from None
