"""Clients and logins the Dovecot auth policy refuses now, and unblocking them. A superadmin
sees every block, a domain admin the logins of their domains (`dinomail.store.authblocks`)."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.listing import PAGE_SIZE, page_links, parse_paging, search_text
from adminapi.pages.web import Page
from dinomail.store import authblocks


async def authblock_list(page: Page) -> Response:
    q = search_text(page)
    paging = parse_paging(page, "id")
    async with page.store.read() as conn:
        window = await authblocks.list_window(
            conn, page.scope, q=q or None, limit=PAGE_SIZE, offset=paging.offset,
            after=paging.after,
        )
    return page.render(
        "authblocks.html", blocks=window.rows, q=q,
        sync_interval=page.settings.AUTH_POLICY_SYNC_INTERVAL,
        links=page_links(page, "authblock_list", paging, window, {"q": q}),
    )


async def authblock_unblock(page: Page) -> Response:
    async with page.store.write() as conn:
        block = await authblocks.release(conn, page.admin.actor, page.scope, page.path_id())
    page.flash("success", page._("%(key)s is unblocked; the lookup daemons allow it again "
                                 "within a few seconds.") % {"key": block["key"]})
    return page.redirect(page.url("authblock_list"))
