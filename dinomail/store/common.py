"""Helpers the store modules share: fetching rows, paging lists, comparing for the audit log."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles

from dinomail.store.errors import NotFound
from dinomail.store.scope import Scope

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
        raise NotFound(f"{what} not found", code="not_found", params={"what": what})
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


async def insert_id(conn: AsyncConnection, table: sa.Table, **values: Any) -> int:
    """Insert one row into `table`; its new id."""
    return int((await conn.execute(
        table.insert().values(**values).returning(table.c.id))).scalar_one())


def conflict_insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` that can say `ON CONFLICT DO UPDATE` (both dialects' can; the
    generic one cannot)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def changed_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Row, Row]:
    """The fields that differ, before and after, for the audit log."""
    keys = [key for key in new if key in old and old[key] != new[key]]
    return {key: old[key] for key in keys}, {key: new[key] for key in keys}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- list windows: pages that stay fast on large tables -------------------------------------------

# Up to this many matching rows, a list's total is counted exactly; beyond it, counting every row
# would cost more than the page itself (tens of milliseconds per million rows on PostgreSQL), so
# the total is the planner's estimate, at least this number plus one.
EXACT_COUNT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Window:
    """A page of a list, with what the caller needs to link to the next one."""

    rows: list[Row]
    total_count: int
    # False when `total_count` is an estimate (more than EXACT_COUNT_LIMIT rows match).
    count_is_exact: bool
    # The (sort value, id) of the last row, to continue after it; None when no row follows.
    next_after: tuple[Any, int] | None


class _Explain(sa.sql.expression.Executable, sa.sql.expression.ClauseElement):
    """`EXPLAIN (FORMAT JSON) <query>` with the query's parameters still bound."""

    inherit_cache = False

    def __init__(self, query: sa.Select) -> None:
        self.query = query


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.query, **kw)


async def count_rows(conn: AsyncConnection, query: sa.Select) -> tuple[int, bool]:
    """How many rows `query` selects: (count, exact). Exact up to EXACT_COUNT_LIMIT rows."""
    capped = await conn.scalar(
        sa.select(sa.func.count()).select_from(query.limit(EXACT_COUNT_LIMIT + 1).subquery())
    )
    if int(capped or 0) <= EXACT_COUNT_LIMIT:
        return int(capped or 0), True
    if conn.dialect.name != "postgresql":
        # SQLite databases hold small installations; an exact count stays affordable there.
        total = await conn.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
        return int(total or 0), True
    plan = await conn.scalar(_Explain(query))
    if isinstance(plan, str):
        plan = json.loads(plan)
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    return max(estimate, EXACT_COUNT_LIMIT + 1), False


async def fetch_window(
    conn: AsyncConnection,
    *,
    id_column: sa.ColumnElement[int],
    where: Sequence[sa.ColumnElement[bool]],
    sort: sa.ColumnElement[Any],
    descending: bool,
    limit: int,
    offset: int = 0,
    after: tuple[Any, int] | None = None,
    fetch: Callable[[list[int]], sa.Select],
) -> Window:
    """A page of ids from one table, then their full rows.

    `where` and `sort` use only the table of `id_column`, so the page is found on that table's
    indexes alone (a "deferred join"); `fetch(ids)` then joins whatever the rows show, for
    `limit` rows only. With `after`, the page starts after that (sort value, id), which costs the
    same at any depth; without it, `offset` rows are skipped, which costs more the deeper it is.
    """
    by_id = sort is id_column
    key = id_column if by_id else sa.tuple_(sort, id_column)
    query = sa.select(id_column, sort).where(*where)
    if after is not None:
        bound = sa.literal(after[1]) if by_id else sa.tuple_(
            sa.literal(after[0]), sa.literal(after[1])
        )
        query = query.where(key < bound if descending else key > bound)
    else:
        query = query.offset(offset)
    order = [sort] if by_id else [sort, id_column]
    query = query.order_by(*[column.desc() if descending else column.asc() for column in order])
    keys = (await conn.execute(query.limit(limit + 1))).all()
    more = len(keys) > limit
    keys = keys[:limit]
    ids = [int(row[0]) for row in keys]
    found = {row["id"]: row for row in await fetch_all(conn, fetch(ids))} if ids else {}
    if after is None and not more and (keys or offset == 0):
        # This page holds the last rows: the total is known without counting (the search that
        # found them can cost more than the page, as a substring search does).
        total, exact = offset + len(keys), True
    else:
        total, exact = await count_rows(conn, sa.select(id_column).where(*where))
    return Window(
        rows=[found[row_id] for row_id in ids if row_id in found],
        total_count=total,
        count_is_exact=exact,
        next_after=(keys[-1][1], ids[-1]) if more and keys else None,
    )


# --- one list query for the tables admins page through ---------------------------------------


@dataclass(frozen=True, slots=True)
class ListRequest:
    """Which page of a list: the API's and the pages' list options, parsed."""

    limit: int
    # Only the rows of this domain (for alias domains: of this target domain).
    domain_id: int | None = None
    # A substring of the searched columns, case-insensitive.
    q: str | None = None
    order_by: str = "id"
    descending: bool = False
    offset: int = 0
    # Continue after this (sort value, id) of the previous page's last row.
    after: tuple[Any, int] | None = None


@dataclass(frozen=True, slots=True)
class ListedTable:
    """How one table is listed: its id, the domain each row belongs to (for the caller's
    scope and the domain filter), its sort keys, the columns `q` searches, and the query of
    its full rows."""

    id_column: sa.ColumnElement[int]
    domain_column: sa.ColumnElement[int]
    sort_keys: Mapping[str, sa.ColumnElement[Any]]
    searched: Sequence[sa.ColumnElement[str]]
    rows: Callable[[Scope], sa.Select]


async def list_rows(
    conn: AsyncConnection, scope: Scope, table: ListedTable, request: ListRequest
) -> Window:
    """A page of `table`'s rows the caller may see, fast on large tables: see `fetch_window`."""
    where = [scope.filter(table.domain_column)]
    if request.domain_id is not None:
        where.append(table.domain_column == request.domain_id)
    if request.q:
        pattern = f"%{escape_like(request.q.lower())}%"
        where.append(sa.or_(*(column.like(pattern, escape="\\") for column in table.searched)))
    return await fetch_window(
        conn, id_column=table.id_column, where=where, sort=table.sort_keys[request.order_by],
        descending=request.descending, limit=request.limit, offset=request.offset,
        after=request.after, fetch=lambda ids: table.rows(scope).where(table.id_column.in_(ids)),
    )


StoreList = Callable[[AsyncConnection, Scope, ListRequest], Awaitable[Window]]


def lister(table: ListedTable) -> StoreList:
    """`list_window(conn, scope, request)` for one table: a page of its rows the caller sees."""

    async def list_window(conn: AsyncConnection, scope: Scope, request: ListRequest) -> Window:
        return await list_rows(conn, scope, table, request)

    return list_window
