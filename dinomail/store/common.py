"""Helpers the store modules share: fetching rows, paging lists, comparing for the audit log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.store.errors import NotFound

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Page:
    total_count: int
    rows: list[Row]


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes for timezone-aware columns; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def fetch_one(conn: AsyncConnection, query: sa.Select, what: str) -> Row:
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"{what} not found")
    return dict(row)


async def fetch_all(conn: AsyncConnection, query: sa.Select) -> list[Row]:
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def paginate(
    conn: AsyncConnection,
    query: sa.Select,
    *,
    order_by: Sequence[sa.ColumnElement],
    limit: int,
    offset: int,
) -> Page:
    """A page of `query` and the count of every row it selects."""
    total = await conn.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = await fetch_all(conn, query.order_by(*order_by).limit(limit).offset(offset))
    return Page(total_count=int(total or 0), rows=rows)


def changed_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Row, Row]:
    """The fields that differ, before and after, for the audit log."""
    keys = [key for key in new if key in old and old[key] != new[key]]
    return {key: old[key] for key in keys}, {key: new[key] for key in keys}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
