"""The audit log page: who changed what, when, from where, with the values before and after,
filtered by admin, domain, action and dates, paged by cursor like the other lists, and the same
selection as a CSV file.

A domain admin sees the entries about their domains only (`dinomail.store.audit`); a domain
outside them is, in the filter, one that does not exist.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from starlette.responses import RedirectResponse, Response, StreamingResponse

from adminapi.pages.domain_select import find_domain
from adminapi.pages.forms import Form
from adminapi.pages.listing import PAGE_SIZE, page_links, parse_paging
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import Scope, audit, domains
from dinomail.store.common import Row

ACTION_PATTERN = re.compile(r"[a-z_]{1,32}")
FILTER_FIELDS = ("admin", "domain", "action", "since", "until")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("id", "at", "actor", "address", "action", "object_type", "object_id",
               "object_repr", "domain", "old_values", "new_values")


@dataclass(frozen=True)
class Selection:
    form: Form
    filters: audit.Filters
    query: dict[str, str]


def _parse_day(page: Page, form: Form, name: str) -> date | None:
    text = form.values[name]
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        form.add_error(name, page._("Enter a date as YYYY-MM-DD."))
        return None


def _start_of(page: Page, day: date) -> datetime:
    """Midnight of `day` where the admin is (TIME_ZONE), as the dates on the page are shown."""
    return datetime.combine(day, time(), tzinfo=page.formats.zone)


async def read_selection(page: Page) -> Selection:
    """The filters of the query string, checked; errors are put on the form's fields."""
    params = page.request.query_params
    form = Form(values={name: params.get(name, "").strip()[:254] for name in FILTER_FIELDS})
    values = form.values
    admin = None
    if values["admin"]:
        try:
            admin = v.normalize_username(values["admin"], "admin")
        except v.ValidationError:
            form.add_error("admin", page._("Use 1 to 150 letters, digits or @ . + - _ "
                                           "characters."))
    domain_id = None
    if values["domain"]:
        domain = await find_domain(page, values["domain"])
        if domain is None:
            form.add_error("domain", page._("No such domain among yours."))
        else:
            domain_id = int(domain["id"])
    action = values["action"] or None
    if action is not None and not ACTION_PATTERN.fullmatch(action):
        form.add_error("action", page._("No such action."))
    since = _parse_day(page, form, "since")
    until = _parse_day(page, form, "until")
    if since and until and until < since:
        form.add_error("until", page._("The end date is before the start date."))
    filters = audit.Filters(
        admin=admin, domain_id=domain_id, action=action,
        since=_start_of(page, since) if since else None,
        # Up to the end of that day.
        until=_start_of(page, until + timedelta(days=1)) if until else None,
    )
    query = {name: values[name] for name in FILTER_FIELDS if values[name]}
    return Selection(form, filters, query)


def _values(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {"": text}
    return loaded if isinstance(loaded, dict) else {"": loaded}


def changes_of(entry: Row) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field an entry names; None where a side has none."""
    old, new = _values(entry["old_values"]), _values(entry["new_values"])
    names = sorted(set(old) | set(new))
    return [(name, old.get(name), new.get(name)) for name in names]


def shown_value(value: object) -> str:
    """A logged value as it was stored (JSON: true, null, [2]); text as it is."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def _domain_names(page: Page, rows: Iterable[Row]) -> dict[int, str]:
    ids = sorted({row["domain_id"] for row in rows if row["domain_id"] is not None})
    if not ids:
        return {}
    async with page.store.read() as conn:
        return dict(await domains.names(conn, Scope(frozenset(ids))))


def _render(page: Page, form: Form, *, status: int = 200, **context: Any) -> Response:
    values: dict[str, Any] = {"entries": [], "links": None, "domain_names": {},
                              "export_url": None, **context}
    return page.render("auditlog.html", status=status, form=form, changes_of=changes_of,
                       shown_value=shown_value, actions=audit.KNOWN_ACTIONS, **values)


async def audit_log(page: Page) -> Response:
    selection = await read_selection(page)
    if not selection.form.valid:
        return _render(page, selection.form, status=400)
    paging = parse_paging(page, "-id")
    async with page.store.read() as conn:
        window = await audit.list_window(
            conn, page.scope, filters=selection.filters, limit=PAGE_SIZE,
            offset=paging.offset, after=paging.after,
        )
    return _render(
        page, selection.form, entries=window.rows,
        links=page_links(page, "audit_log", paging, window, selection.query),
        domain_names=await _domain_names(page, window.rows),
        export_url=page.url_with("audit_log_export", selection.query),
    )


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe_cell(value) for value in values])
    return buffer.getvalue()


async def audit_log_export(page: Page) -> Response:
    selection = await read_selection(page)
    if not selection.form.valid:
        return _render(page, selection.form, status=400)
    store, scope, filters = page.store, page.scope, selection.filters
    iso = page.formats.datetime_iso

    async def lines() -> AsyncIterator[str]:
        yield _csv_line(CSV_COLUMNS)
        async with store.read() as conn:
            batch: list[Row] = []
            async for row in audit.iterate(conn, scope, filters):
                batch.append(row)
                if len(batch) == audit.EXPORT_BATCH:
                    for line in await _rows(conn, batch):
                        yield line
                    batch = []
            for line in await _rows(conn, batch):
                yield line

    async def _rows(conn: Any, batch: list[Row]) -> list[str]:
        ids = sorted({row["domain_id"] for row in batch if row["domain_id"] is not None})
        names = dict(await domains.names(conn, Scope(frozenset(ids)))) if ids else {}
        return [_csv_line((
            row["id"], iso(row["at"]), row["actor"], row["address"], row["action"],
            row["object_type"], row["object_id"], row["object_repr"],
            names.get(row["domain_id"], row["domain_id"]), row["old_values"] or "",
            row["new_values"] or "",
        )) for row in batch]

    return StreamingResponse(
        lines(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )


def _moved(page: Page, name: str) -> Response:
    query = page.request.url.query
    return RedirectResponse(page.url(name) + (f"?{query}" if query else ""), status_code=308)


async def audit_log_moved(page: Page) -> Response:
    return _moved(page, "audit_log")


async def audit_log_export_moved(page: Page) -> Response:
    return _moved(page, "audit_log_export")
