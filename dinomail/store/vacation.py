"""A mailbox's vacation reply (`dinomail_vacation`): what Dovecot's Sieve answers while away.

One row per mailbox, or none. The Sieve script is made from the row when Dovecot asks for it
(`dinomail.sieve`, by the lookup daemon from its snapshot, which follows this table through the
change log), so these are the settings only, validated here for the API and the pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import vacation
from dinomail.store import audit, mailboxes
from dinomail.store.common import Row, now
from dinomail.store.fields import Normalizer, clean_fields
from dinomail.store.scope import Scope

OBJECT_TYPE = "vacation"
MAX_SUBJECT_LENGTH = 255
MAX_BODY_LENGTH = 10_000
MIN_INTERVAL_DAYS = 1
MAX_INTERVAL_DAYS = 30
DEFAULT_INTERVAL_DAYS = 7
# The RFC 5260 `date` test compares years of four digits; earlier or later days cannot be said.
_FIRST_YEAR, _LAST_YEAR = 1000, 9999
# A mailbox's other addresses named in its script, at most (a script stays small; the lookup
# daemon makes the scripts: `lookupd.vacations`).
MAX_OTHER_ADDRESSES = 100

DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "subject": "",
    "body": "",
    "starts": None,
    "ends": None,
    "interval_days": DEFAULT_INTERVAL_DAYS,
}
FIELDS = tuple(DEFAULTS)


def _body(value: object, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise v.ValidationError(field, "must be text", code="not_text")
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > MAX_BODY_LENGTH:
        raise v.ValidationError(field, f"is at most {MAX_BODY_LENGTH} characters",
                                code="text_too_long", params={"limit": MAX_BODY_LENGTH})
    if any((ord(char) < 32 and char not in "\n\t") or char == "\x7f" for char in text):
        raise v.ValidationError(field, "must not contain control characters",
                                code="control_characters")
    return text


def _day(value: object, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        raise v.ValidationError(field, "must be a day (YYYY-MM-DD), not a time",
                                code="day_invalid")
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise v.ValidationError(field, "must be a day as YYYY-MM-DD",
                                    code="day_invalid") from None
        if len(value.strip()) != 10:
            raise v.ValidationError(field, "must be a day as YYYY-MM-DD",
                                    code="day_invalid")
    else:
        raise v.ValidationError(field, "must be a day as YYYY-MM-DD", code="day_invalid")
    if not _FIRST_YEAR <= day.year <= _LAST_YEAR:
        raise v.ValidationError(field, f"must lie between the years {_FIRST_YEAR} and {_LAST_YEAR}",
                                code="year_out_of_range")
    return day


def _interval(value: object, field: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise v.ValidationError(field, "must be a whole number of days", code="days_invalid")
    if not MIN_INTERVAL_DAYS <= value <= MAX_INTERVAL_DAYS:
        raise v.ValidationError(
            field, f"must be between {MIN_INTERVAL_DAYS} and {MAX_INTERVAL_DAYS} days",
            code="days_out_of_range",
            params={"low": MIN_INTERVAL_DAYS, "high": MAX_INTERVAL_DAYS},
        )
    return value


NORMALIZERS: dict[str, Normalizer] = {
    "enabled": v.normalize_bool,
    "subject": lambda value, field: v.normalize_text(value, field, MAX_SUBJECT_LENGTH),
    "body": _body,
    "starts": _day,
    "ends": _day,
    "interval_days": _interval,
}


def _check(values: Mapping[str, Any]) -> None:
    """The rules between fields, on the whole merged settings."""
    if values["enabled"] and not values["body"]:
        raise v.ValidationError("body", "is required to turn the vacation reply on",
                                code="vacation_body_required")
    starts, ends = values["starts"], values["ends"]
    if starts is not None and ends is not None and ends < starts:
        raise v.ValidationError("ends", "must be on or after the first day",
                                code="ends_before_starts")


def _row(mailbox_id: int, values: Mapping[Any, Any], updated_at: Any) -> Row:
    return {"mailbox_id": mailbox_id, **{key: values[key] for key in FIELDS},
            "updated_at": updated_at}


async def _read(conn: AsyncConnection, mailbox_id: int) -> Row | None:
    found = (
        await conn.execute(sa.select(vacation).where(vacation.c.user_id == mailbox_id))
    ).mappings().first()
    return None if found is None else _row(mailbox_id, found, found["updated_at"])


async def get(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> Row | None:
    """The mailbox's vacation settings, or None when it never had any.

    NotFound when the mailbox does not exist or is outside `scope` (one answer for both).
    """
    await mailboxes.get(conn, scope, mailbox_id)
    return await _read(conn, mailbox_id)


async def put(
    conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int, values: Mapping[str, Any]
) -> Row:
    """Set the vacation settings; fields left out keep their value (or their default)."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    cleaned = clean_fields(values, NORMALIZERS)
    old = await _read(conn, mailbox_id)
    merged = {**(DEFAULTS if old is None else {key: old[key] for key in FIELDS}), **cleaned}
    _check(merged)
    stored = {key: merged[key] for key in FIELDS}
    if old is None:
        await conn.execute(vacation.insert().values(user_id=mailbox_id, **stored))
        await audit.record(
            conn, actor, "create", OBJECT_TYPE, mailbox_id, mailbox["email"], new=stored
        )
    else:
        before = {key: old[key] for key in FIELDS if old[key] != stored[key]}
        after = {key: stored[key] for key in before}
        if after:
            await conn.execute(
                vacation.update()
                .where(vacation.c.user_id == mailbox_id)
                .values(**stored, updated_at=now())
            )
            await audit.record(
                conn, actor, "update", OBJECT_TYPE, mailbox_id, mailbox["email"],
                old=before, new=after,
            )
    row = await _read(conn, mailbox_id)
    assert row is not None
    return row


async def delete(conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int) -> None:
    """Remove the vacation settings; nothing to remove is no error (the result is the same)."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    old = await _read(conn, mailbox_id)
    if old is None:
        return
    await conn.execute(vacation.delete().where(vacation.c.user_id == mailbox_id))
    await audit.record(
        conn, actor, "delete", OBJECT_TYPE, mailbox_id, mailbox["email"],
        old={key: old[key] for key in FIELDS},
    )
