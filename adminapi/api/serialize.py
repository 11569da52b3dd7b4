"""Shapes shared by every resource: URIs of objects, references to them, datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from adminapi.api.errors import invalid

API_PREFIX = "/api/"
# Ids are 32-bit in the original tables; a larger number names nothing and must not reach SQL.
MAX_ID = 2**31 - 1


def resource_uri(resource: str, object_id: int) -> str:
    """`/api/virtualdomain/1/`: the original's URIs, trailing slash included."""
    return f"{API_PREFIX}{resource}/{object_id}/"


def list_uri(resource: str) -> str:
    return f"{API_PREFIX}{resource}/"


# What may come before `/api/` in a reference: tastypie resolved a URI from the resource's
# name onwards, so clients that build absolute URLs (`http://host/api/virtualdomain/1/`) worked;
# the scheme and host are not checked, as there.
_ORIGIN = r"(?:https?://[^/?#\s]+)?"


def reference_schema(resource: str) -> dict[str, Any]:
    """A reference to another object: its URI, as the original wrote them (relative or
    absolute), or its bare id."""
    return {
        "anyOf": [
            {"type": "string",
             "pattern": rf"^{_ORIGIN}{API_PREFIX}{resource}/[0-9]{{1,10}}/?$"},
            {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        ],
    }


def is_reference(value: str) -> bool:
    """Whether `value` is written as a URI (relative or absolute), not as a name."""
    return re.match(rf"{_ORIGIN}{API_PREFIX}", value) is not None


def reference_id(resource: str, value: str | int, field: str) -> int:
    """The id in a reference that already matched `reference_schema(resource)`."""
    if isinstance(value, str):
        match = re.fullmatch(rf"{_ORIGIN}{API_PREFIX}{resource}/([0-9]+)/?", value)
        if match is None:
            raise invalid(field, f"must be a URI such as {resource_uri(resource, 1)}")
        value = int(match.group(1))
    if not 1 <= value <= MAX_ID:
        raise invalid(field, f"{resource} {value} not found")
    return value


def timestamp(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset (SQLite hands back naive datetimes, written in UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def plain(value: Any) -> Any:
    """A row value as JSON: datetimes as text, everything else as it is."""
    return timestamp(value) if isinstance(value, datetime) else value
