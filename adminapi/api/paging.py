"""List parameters (`limit`, `offset`, `after`, `order_by`, `q`, `domain`) and the `meta` block.

Paging keeps the original's `limit`/`offset` and `meta` (`limit, next, offset, previous,
total_count`). `next` links also carry `after`, a cursor naming the last row shown: following
`next` costs the same on page 10,000 as on page 1, while a bare deep `offset` makes the database
skip every earlier row. Totals are exact up to 10,000 matching rows and estimated beyond
(`meta.total_count_exact` says which).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from adminapi.api.errors import invalid
from adminapi.api.serialize import MAX_ID, list_uri
from adminapi.api.values import check_text
from dinomail.settings import MAX_PAGE_LIMIT, Settings
from dinomail.store.common import Window

# Deeper than this, an offset is surely a mistake; the `next` cursor reaches any depth.
MAX_OFFSET = 10**9
MAX_QUERY_LENGTH = 254
# The original accepted tastypie's `format` parameter; JSON is the only format.
FORMAT_PARAMETER = "format"
# Where tastypie's credentials travel in a query string (ApiKeyAuthentication).
CREDENTIAL_PARAMETERS = ("username", "api_key")
# Django's lookup separator, as in `?name__startswith=`.
LOOKUP_SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class ListOptions:
    """What a resource's list accepts."""

    orderable: tuple[str, ...] = ("id",)
    # Orderings whose sort values are numbers or text, so a cursor can carry them.
    keyset: tuple[str, ...] = ("id",)
    default_order: str = "id"
    search: str | None = None  # what `q` searches, for the documentation; None: no `q`
    domain_filter: str | None = None  # what `domain` filters, for the documentation

    @property
    def parameters(self) -> tuple[str, ...]:
        names = ["limit", "offset", "order_by", FORMAT_PARAMETER]
        if self.keyset:
            names.append("after")
        if self.search:
            names.append("q")
        if self.domain_filter:
            names.append("domain")
        return tuple(names)

    @property
    def order_choices(self) -> list[str]:
        return [choice for name in self.orderable for choice in (name, f"-{name}")]


@dataclass(frozen=True, slots=True)
class ListQuery:
    limit: int
    offset: int
    after: tuple[Any, int] | None
    order_by: str
    descending: bool
    q: str | None
    domain: str | None


def check_parameters(
    request: Request, allowed: Iterable[str] = (), *, fields: Iterable[str] = ()
) -> None:
    """Check the query parameters this endpoint knows; ignore the others, as tastypie did.

    Clients add parameters of their own (jQuery's `_=` cache buster, `format=json`); refusing
    them would break those clients. What must not pass silently is a filter the list cannot
    apply: a parameter named after one of the resource's `fields` (before any `__lookup`) that
    is not among `allowed` gets tastypie's 400, naming the field, instead of a list that looks
    filtered and is not. The original's credential parameters are never taken for filters.
    """
    known = set(allowed) | {FORMAT_PARAMETER}
    filters = set(fields) | {"resource_uri"}
    for name in request.query_params:
        if name in known:
            if len(request.query_params.getlist(name)) > 1:
                raise invalid(name, "is given more than once")
            continue
        if name in CREDENTIAL_PARAMETERS:
            continue
        field_name = name.split(LOOKUP_SEPARATOR, 1)[0]
        if field_name in filters:
            raise invalid(field_name, f"The '{field_name}' field does not allow filtering.")
    chosen = request.query_params.get(FORMAT_PARAMETER)
    if chosen is not None and chosen != "json":
        raise invalid(FORMAT_PARAMETER, "the only format is json")


def _whole_number(text: str, field: str, maximum: int) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise invalid(field, "must be a whole number, 0 or more")
    if len(text) > 12 or int(text) > maximum:
        raise invalid(field, f"must be at most {maximum}")
    return int(text)


def encode_cursor(order_by: str, after: tuple[Any, int]) -> str:
    raw = json.dumps([order_by, after[0], after[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order_by: str) -> tuple[Any, int]:
    try:
        padded = text + "=" * (-len(text) % 4)
        order, value, last_id = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise invalid("after", "is not a cursor this API gave (take it from meta.next)") from None
    if order != order_by:
        raise invalid("after", "was given for another order_by; start again from the first page")
    if (
        isinstance(last_id, bool) or not isinstance(last_id, int) or not 0 < last_id <= MAX_ID
        or isinstance(value, bool) or not isinstance(value, int | str)
        or (isinstance(value, int) and abs(value) >= 2**63)
    ):
        raise invalid("after", "is not a cursor this API gave (take it from meta.next)")
    if isinstance(value, str):
        check_text(value, "after")
    return value, last_id


def parse_list_query(
    request: Request, settings: Settings, options: ListOptions, *, fields: Iterable[str] = ()
) -> ListQuery:
    """The list options of `request`; `fields` are the resource's field names (see
    `check_parameters`)."""
    params = request.query_params
    check_parameters(request, options.parameters, fields=fields)
    limit = settings.api_page_limit
    if "limit" in params:
        # As in the original (tastypie): 0 means the largest page, larger values are capped.
        limit = _whole_number(params["limit"], "limit", 10**9) or MAX_PAGE_LIMIT
    limit = min(limit, MAX_PAGE_LIMIT)
    offset = _whole_number(params["offset"], "offset", MAX_OFFSET) if "offset" in params else 0

    order_text = params.get("order_by", options.default_order)
    descending = order_text.startswith("-")
    order_by = order_text[1:] if descending else order_text
    if order_by not in options.orderable:
        raise invalid("order_by", f"must be one of: {', '.join(options.order_choices)}")

    after = None
    if params.get("after"):
        if order_by not in options.keyset:
            raise invalid("after", f"cannot continue an order_by {order_text} list; use offset")
        after = decode_cursor(params["after"], order_text)

    q = None
    if options.search and params.get("q", "").strip():
        q = params["q"].strip()
        check_text(q, "q")
        if len(q) > MAX_QUERY_LENGTH:
            raise invalid("q", f"must be at most {MAX_QUERY_LENGTH} characters")
        if any(ord(char) < 32 for char in q):
            raise invalid("q", "must not contain control characters")

    domain = None
    if options.domain_filter and params.get("domain", "").strip():
        domain = params["domain"].strip()
        check_text(domain, "domain")
    return ListQuery(limit, offset, after, order_by, descending, q, domain)


def _link(resource: str, params: Mapping[str, str], **changes: Any) -> str:
    kept = {name: value for name, value in params.items() if name not in ("offset", "after")}
    kept.update({name: str(value) for name, value in changes.items() if value is not None})
    return f"{list_uri(resource)}?{urlencode(kept)}"


def list_body(
    request: Request,
    resource: str,
    query: ListQuery,
    window: Window,
    objects: list[dict[str, Any]],
    options: ListOptions,
) -> dict[str, Any]:
    """The original's list shape, `{"meta": {...}, "objects": [...]}`."""
    params = dict(request.query_params)
    params["limit"] = str(query.limit)
    next_link = None
    if window.next_after is not None:
        order_text = f"-{query.order_by}" if query.descending else query.order_by
        cursor = (
            encode_cursor(order_text, window.next_after)
            if query.order_by in options.keyset
            else None
        )
        next_link = _link(
            resource, params, offset=min(query.offset + query.limit, MAX_OFFSET), after=cursor
        )
    previous_link = None
    if query.offset > 0:
        previous_link = _link(resource, params, offset=max(query.offset - query.limit, 0))
    return {
        "meta": {
            "limit": query.limit,
            "next": next_link,
            "offset": query.offset,
            "previous": previous_link,
            "total_count": window.total_count,
            "total_count_exact": window.count_is_exact,
        },
        "objects": objects,
    }
