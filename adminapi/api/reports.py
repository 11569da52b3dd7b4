"""DMARC aggregate and SMTP TLS reports in the API, read-only:

- `/api/dmarcreport/`, `/api/dmarcreport/<id>/` (with its records);
- `/api/tlsreport/`, `/api/tlsreport/<id>/` (with its policies and failure details);
- `/api/reportstats/`: the numbers the pages chart: DMARC messages per day, top sources with
  their pass rate, failing sources, TLS sessions by receiver and failure type;
- `/api/reportreject/`: messages set aside with the reason (superadmins only).

Lists take `domain` (a name or a domain URI), `since` and `until` (dates or date-times:
reports whose period begins in [since, until)), `limit` and `offset`, and answer in the
original's `{"meta", "objects"}` shape. A domain admin sees their domains' reports only; another
domain is "not found", as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import Caller, authenticate, require_superadmin
from adminapi.api.errors import invalid
from adminapi.api.openapi import ERROR_MEANINGS, ID_PARAMETER, KEY_SECURITY
from adminapi.api.paging import _whole_number, check_parameters
from adminapi.api.resource import object_call
from adminapi.api.serialize import reference_id, resource_uri
from dinomail import validation as v
from dinomail.dnscheck.model import iso_time
from dinomail.settings import MAX_PAGE_LIMIT
from dinomail.store import Store, domains
from dinomail.store import reports as reports_store
from dinomail.store.common import Row

TAG = "Reports (DMARC, TLS-RPT)"
JSON = "application/json"
FILTERS = ("domain", "since", "until")
LIST_PARAMETERS = (*FILTERS, "limit", "offset")
TOP_SOURCES = 20


def _moment(text: str, field: str) -> datetime:
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        # In UTC: SQLite keeps no offset, so a moment compares right only in one zone.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(field, "must be a date (2026-12-01) or a date-time with a zone") from None


async def _domain_id(conn: AsyncConnection, caller: Caller, text: str) -> int:
    """The domain named by `?domain=` (a name or URI); NotFound (404) outside the scope."""
    if text.startswith("/api/"):
        domain_id = reference_id("virtualdomain", text, "domain")
        return int((await domains.get(conn, caller.scope, domain_id))["id"])
    name = v.normalize_domain(text, "domain")
    return int((await domains.get_by_name(conn, caller.scope, name))["id"])


async def report_filter(conn: AsyncConnection, caller: Caller,
                        request: Request) -> reports_store.Filter:
    params = request.query_params
    domain_id = None
    if params.get("domain", "").strip():
        domain_id = await _domain_id(conn, caller, params["domain"].strip())
    since = _moment(params["since"], "since") if params.get("since") else None
    until = _moment(params["until"], "until") if params.get("until") else None
    return reports_store.Filter(caller.scope, domain_id, since, until)


def _paging(request: Request) -> tuple[int, int]:
    params = request.query_params
    limit = request.app.state.settings.api_page_limit
    if "limit" in params:
        limit = _whole_number(params["limit"], "limit", 10**9) or MAX_PAGE_LIMIT
    limit = min(limit, MAX_PAGE_LIMIT)
    offset = _whole_number(params["offset"], "offset", 10**9) if "offset" in params else 0
    return limit, offset


def _serialize(kind: str, row: Row) -> dict[str, Any]:
    name = "dmarcreport" if kind == "dmarc" else "tlsreport"
    body = {key: value for key, value in row.items() if key != "domain_id"}
    body["domain_uri"] = resource_uri("virtualdomain", row["domain_id"])
    body["resource_uri"] = resource_uri(name, row["id"])
    for key in ("date_begin", "date_end", "received_at"):
        body[key] = iso_time(row[key])
    return body


def _list_endpoint(kind: str) -> Any:
    name = "dmarcreport" if kind == "dmarc" else "tlsreport"

    async def endpoint(request: Request) -> Response:
        check_parameters(request, LIST_PARAMETERS)
        caller = await authenticate(request)
        limit, offset = _paging(request)
        store: Store = request.app.state.store
        async with store.read() as conn:
            where = await report_filter(conn, caller, request)
            total, rows = await reports_store.list_reports(conn, kind, where, limit=limit,
                                                           offset=offset)
        params = {key: value for key, value in request.query_params.items()
                  if key not in ("offset", "limit")}

        def link(at: int) -> str:
            return f"/api/{name}/?{urlencode({**params, 'limit': limit, 'offset': at})}"

        return JSONResponse({
            "meta": {"limit": limit, "offset": offset, "total_count": total,
                     "total_count_exact": True,
                     "next": link(offset + limit) if offset + limit < total else None,
                     "previous": link(max(offset - limit, 0)) if offset else None},
            "objects": [_serialize(kind, row) for row in rows],
        })

    return endpoint


def _detail_endpoint(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        pk, caller = await object_call(request)
        store: Store = request.app.state.store
        async with store.read() as conn:
            row = await reports_store.get_report(conn, kind, caller.scope, pk)
        return JSONResponse(_serialize(kind, row))

    return endpoint


async def stats_endpoint(request: Request) -> Response:
    check_parameters(request, FILTERS)
    caller = await authenticate(request)
    store: Store = request.app.state.store
    async with store.read() as conn:
        where = await report_filter(conn, caller, request)
        body = {
            "dmarc_by_day": await reports_store.dmarc_by_day(conn, where),
            "top_sources": await reports_store.dmarc_sources(conn, where, limit=TOP_SOURCES),
            "failing_sources": await reports_store.dmarc_sources(
                conn, where, failing_only=True, limit=TOP_SOURCES),
            "tls_by_receiver": await reports_store.tls_by_receiver(conn, where),
            "tls_failure_types": await reports_store.tls_failure_types(conn, where),
        }
    return JSONResponse(body)


async def reject_list(request: Request) -> Response:
    check_parameters(request, ("limit", "offset"))
    caller = await authenticate(request)
    require_superadmin(caller)
    limit, offset = _paging(request)
    store: Store = request.app.state.store
    async with store.read() as conn:
        total, rows = await reports_store.list_set_aside(conn, limit=limit, offset=offset)
    return JSONResponse({
        "meta": {"limit": limit, "offset": offset, "total_count": total,
                 "total_count_exact": True, "next": None, "previous": None},
        "objects": [{**row, "received_at": iso_time(row["received_at"])} for row in rows],
    })


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods)."""
    return [
        ("/api/dmarcreport/", _list_endpoint("dmarc"), ["GET"]),
        ("/api/dmarcreport/{pk:int}/", _detail_endpoint("dmarc"), ["GET"]),
        ("/api/tlsreport/", _list_endpoint("tls"), ["GET"]),
        ("/api/tlsreport/{pk:int}/", _detail_endpoint("tls"), ["GET"]),
        ("/api/reportstats/", stats_endpoint, ["GET"]),
        ("/api/reportreject/", reject_list, ["GET"]),
    ]


# --- the OpenAPI document -------------------------------------------------------------------------


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


FILTER_PARAMETERS = [
    _query("domain", "Only this domain: a name or a domain URI.", {"type": "string"}),
    _query("since", "Reports whose period begins at or after this date (or date-time).",
           {"type": "string"}),
    _query("until", "Reports whose period begins before this date (or date-time).",
           {"type": "string"}),
]
PAGE_PARAMETERS = [
    _query("limit", "Objects per page.", {"type": "integer", "minimum": 0, "maximum": 10**9}),
    _query("offset", "Objects to skip.", {"type": "integer", "minimum": 0, "maximum": 10**9}),
]


def _get(operation_id: str, summary: str, description: str, errors: list[int],
         parameters: list[dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "The data.", "content": {
        JSON: {"schema": {"type": "object"}}}}}
    for status in errors:
        responses[str(status)] = {"description": ERROR_MEANINGS[status], "content": {
            JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"get": {"operationId": operation_id, "summary": summary, "description": description,
                    "tags": [TAG], "security": KEY_SECURITY, "parameters": parameters,
                    "responses": responses}}


def openapi_paths() -> dict[str, Any]:
    errors = [400, 401, 404, 503]
    return {
        "/api/dmarcreport/": _get(
            "dmarcreport_list", "List DMARC aggregate reports",
            "Newest first, with each report's message totals.", errors,
            FILTER_PARAMETERS + PAGE_PARAMETERS),
        "/api/dmarcreport/{id}/": _get(
            "dmarcreport_read", "Read a DMARC aggregate report with its records", "", errors,
            [ID_PARAMETER]),
        "/api/tlsreport/": _get(
            "tlsreport_list", "List SMTP TLS reports",
            "Newest first, with each report's policies and session totals.", errors,
            FILTER_PARAMETERS + PAGE_PARAMETERS),
        "/api/tlsreport/{id}/": _get(
            "tlsreport_read", "Read an SMTP TLS report", "", errors, [ID_PARAMETER]),
        "/api/reportstats/": _get(
            "reportstats", "Report numbers for charts",
            "DMARC messages per day (passed, failed, aligned DKIM and SPF), top sending sources "
            "with their pass rate, failing sources, TLS sessions by receiver and failed "
            "sessions by result type.", errors, FILTER_PARAMETERS),
        "/api/reportreject/": _get(
            "reportreject_list", "List report messages set aside",
            "Superadmins only: messages to the report address that were not stored, with why.",
            [400, 401, 403, 503], PAGE_PARAMETERS),
    }
