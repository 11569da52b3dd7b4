"""Paging of the lists: `?page=N`, with the cursor of the store's windows so that following
"Next" costs the same on page 20,000 as on page 1 (see `dinomail.store.common.fetch_window`).

"Next" links carry the page number and a cursor naming the last row shown; "Previous" and typed
page numbers skip rows by offset, which costs more the deeper the page (tens of milliseconds at
a million rows), a price paid only when going back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adminapi.api.errors import ApiError
from adminapi.api.paging import MAX_OFFSET, decode_cursor, encode_cursor
from adminapi.pages.web import Page
from dinomail.store.common import ListRequest, Window

PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE
# Longer than any address or domain name: a longer search names nothing.
MAX_SEARCH_LENGTH = 254


@dataclass(frozen=True)
class Paging:
    number: int
    offset: int
    after: tuple[Any, int] | None
    order: str

    @property
    def limit(self) -> int:
        return PAGE_SIZE

    def request(self, q: str, domain_id: int | None = None) -> ListRequest:
        """The store's request for this page of a list sorted by `order`."""
        return ListRequest(limit=PAGE_SIZE, domain_id=domain_id, q=q or None,
                           order_by=self.order, offset=self.offset, after=self.after)


@dataclass(frozen=True)
class PageLinks:
    number: int
    first_row: int
    last_row: int
    total: int
    total_exact: bool
    previous_url: str | None
    next_url: str | None
    first_url: str | None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def search_text(page: Page) -> str:
    """The list's `q`, cleaned; empty when absent or unusable (control characters)."""
    text = page.request.query_params.get("q", "").strip()[:MAX_SEARCH_LENGTH]
    return "" if any(ord(char) < 32 for char in text) else text


def parse_paging(page: Page, order: str) -> Paging:
    params = page.request.query_params
    raw = params.get("page", "1").strip()
    number = int(raw) if raw.isdigit() and raw.isascii() and len(raw) < 10 else 1
    number = min(max(number, 1), MAX_PAGE)
    after = None
    if params.get("after") and number > 1:
        try:
            after = decode_cursor(params["after"], order)
        except ApiError:
            after = None  # a damaged or stale cursor: fall back to the offset
    return Paging(number, (number - 1) * PAGE_SIZE, after, order)


def page_links(
    page: Page, name: str, paging: Paging, window: Window, query: dict[str, Any]
) -> PageLinks:
    """Links to the neighbouring pages of the list at route `name`, keeping its filters."""
    previous_url = first_url = None
    if paging.number > 1:
        previous_url = page.url_with(name, {**query, "page": paging.number - 1})
        first_url = page.url_with(name, query)
    next_url = None
    if window.next_after is not None and paging.number < MAX_PAGE:
        cursor = encode_cursor(paging.order, window.next_after)
        next_url = page.url_with(name, {**query, "page": paging.number + 1, "after": cursor})
    return PageLinks(
        number=paging.number,
        first_row=paging.offset + 1 if window.rows else 0,
        last_row=paging.offset + len(window.rows),
        total=window.total_count,
        total_exact=window.count_is_exact,
        previous_url=previous_url,
        next_url=next_url,
        first_url=first_url,
    )
