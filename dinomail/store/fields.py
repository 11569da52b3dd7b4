"""Turning the fields a caller sends into clean column values, one normaliser per field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dinomail.validation import ValidationError

Normalizer = Callable[[Any, str], Any]


def clean_fields(
    data: Mapping[str, Any],
    normalizers: Mapping[str, Normalizer],
    *,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Normalise every field of `data`; unknown fields and missing required ones are errors."""
    for name in data:
        if name not in normalizers:
            raise ValidationError(
                name, "is not a field that can be set here", code="field_unknown"
            )
    for name in required:
        if data.get(name) in (None, ""):
            raise ValidationError(name, "is required", code="field_required")
    return {name: normalizers[name](value, name) for name, value in data.items()}
