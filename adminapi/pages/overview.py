"""The home page, the search across domains, mailboxes and aliases, and the legal page."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.forms import N_
from adminapi.pages.legals import render_legals
from adminapi.pages.listing import search_text
from adminapi.pages.web import Page
from dinomail.store import aliases, domains, mailboxes
from dinomail.store.common import ListRequest

# Each kind of result shows this many rows; a link leads to the full list of matches.
SEARCH_ROWS = 10
# The default catch line is translated; one the admin wrote is shown as written.
DEFAULT_CATCH_LINE = N_("Peaceful emails !")


async def home(page: Page) -> Response:
    async with page.store.read() as conn:
        counts = {
            "domains": await domains.count(conn, page.scope),
            "mailboxes": await mailboxes.count(conn, page.scope),
            "aliases": await aliases.count(conn, page.scope),
        }
    line = page.settings.DINOMAIL_CATCH_LINE
    return page.render("home.html", counts=counts,
                       catch_line=page._(line) if line == DEFAULT_CATCH_LINE else line)


async def search(page: Page) -> Response:
    q = search_text(page)
    results = None
    if q:
        async with page.store.read() as conn:
            found_domains = await domains.list_window(
                conn, page.scope, ListRequest(SEARCH_ROWS, q=q, order_by="name"))
            found_mailboxes = await mailboxes.list_window(
                conn, page.scope, ListRequest(SEARCH_ROWS, q=q, order_by="email"))
            found_aliases = await aliases.list_window(
                conn, page.scope, ListRequest(SEARCH_ROWS, q=q, order_by="source"))
            status = await aliases.destination_status(
            conn, page.scope, [row["destination"] for row in found_aliases.rows])
        results = {
            "domains": found_domains, "mailboxes": found_mailboxes, "aliases": found_aliases,
            "alias_status": status,
        }
    return page.render("search.html", q=q, results=results)


async def legals(page: Page) -> Response:
    return page.render("legals.html", legals=render_legals(page.settings.DINOMAIL_LEGALS))
