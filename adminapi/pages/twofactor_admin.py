"""A superadmin removes another admin's second factors (a lost phone, lost codes): a
confirmation page and its form. The Admins page links here; a domain admin gets "not found"."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.web import Page
from dinomail.store import twofactor


async def admin_twofactor_remove(page: Page) -> Response:
    admin_id = page.path_id()
    if page.request.method == "POST":
        async with page.store.write() as conn:
            account = await twofactor.remove_all(conn, page.admin.actor, page.scope, admin_id)
        page.flash("warning", page._("The second factors of %(username)s were removed; they log "
                                     "in with their password alone until they set up new ones.")
                   % {"username": account["username"]})
        return page.redirect(page.url("admin_twofactor_remove", pk=admin_id))
    async with page.store.read() as conn:
        account, second = await twofactor.status_of(conn, page.scope, admin_id)
    return page.render("twofactor_remove.html", account=account, second=second,
                       is_self=admin_id == page.admin.admin_id)
