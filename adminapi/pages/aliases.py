"""Aliases: list with a source-domain filter and the original "Exterior?" and "Ok?" columns,
create, edit, delete (a POST after a confirmation page; the original deleted on a GET)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.domain_select import domain_choices, domain_filter, posted_domain_id
from adminapi.pages.forms import Form
from adminapi.pages.listing import page_links, parse_paging, search_text
from adminapi.pages.web import Page
from dinomail.store import aliases


async def _warn_if_not_received(page: Page, alias: dict[str, Any]) -> None:
    """An alias to an inactive or missing address of the admin's own domains is accepted (the
    mailbox may come back), but said out loud: its mail is refused meanwhile."""
    async with page.store.read() as conn:
        status = await aliases.destination_status(conn, page.scope, [alias["destination"]])
    if status.get(alias["destination"]) is False:
        page.flash("warning", page._(
            "%(address)s is not an active user or alias here: mail to this alias is refused "
            "until it is.") % {"address": alias["destination"]})


def label(alias: dict[str, Any]) -> str:
    """The original's `str(alias)`."""
    return f"{alias['source']} -> {alias['destination']}"


async def alias_list(page: Page) -> Response:
    q = search_text(page)
    domain, unknown_domain = await domain_filter(page)
    paging = parse_paging(page, "source")
    async with page.store.read() as conn:
        window = await aliases.list_window(
            conn, page.scope, paging.request(q, domain["id"] if domain else None))
        # Interior destinations → whether they exist; exterior ones are absent (always ok).
        status = await aliases.destination_status(
            conn, page.scope, [row["destination"] for row in window.rows])
    query = {"domain": domain["name"] if domain else "", "q": q}
    return page.render(
        "aliases.html", aliases=window.rows, alias_status=status, q=q, domain=domain,
        unknown_domain=unknown_domain, choices=await domain_choices(page),
        links=page_links(page, "alias_list", paging, window, query),
    )


async def _form_page(page: Page, form: Form, alias: dict | None, *, status: int = 200
                     ) -> Response:
    return page.render("alias_form.html", status=status, form=form, alias=alias,
                       choices=await domain_choices(page))


async def _posted(page: Page, form: Form) -> dict[str, Any]:
    data = page.form_data
    form.values["source"] = data.text("source")
    form.values["destination"] = data.text("destination")
    values: dict[str, Any] = {"source": form.values["source"],
                              "destination": form.values["destination"]}
    domain_id = await posted_domain_id(page, form, "domain")
    if domain_id is not None:
        values["domain_id"] = domain_id
    return values


async def alias_new(page: Page) -> Response:
    _ = page._
    form = Form(values={"domain": page.request.query_params.get("domain", ""), "source": "",
                        "destination": ""})
    created = await page.submit(
        form, lambda status: _form_page(page, form, None, status=status),
        lambda: _posted(page, form),
        lambda conn, values: aliases.create(conn, page.admin.actor, page.scope, values))
    if isinstance(created, Response):
        return created
    page.flash("success", _("Alias %(alias)s was created.") % {"alias": label(created)})
    await _warn_if_not_received(page, created)
    return page.redirect(page.url("alias_list"))


async def alias_edit(page: Page) -> Response:
    _ = page._
    alias_id = page.path_id()
    async with page.store.read() as conn:
        alias = await aliases.get(conn, page.scope, alias_id)
    form = Form(values={"domain": alias["domain_name"], "source": alias["source"],
                        "destination": alias["destination"]})
    changed = await page.submit(
        form, lambda status: _form_page(page, form, alias, status=status),
        lambda: _posted(page, form),
        lambda conn, values: aliases.update(conn, page.admin.actor, page.scope, alias_id, values))
    if isinstance(changed, Response):
        return changed
    page.flash("success", _("Alias %(alias)s was changed.") % {"alias": label(changed)})
    await _warn_if_not_received(page, changed)
    return page.redirect(page.url("alias_list"))


async def alias_delete(page: Page) -> Response:
    alias_id = page.path_id()
    async with page.store.read() as conn:
        alias = await aliases.get(conn, page.scope, alias_id)
    if page.request.method == "POST":
        async with page.store.write() as conn:
            await aliases.delete(conn, page.admin.actor, page.scope, alias_id)
        page.flash("warning", page._("Alias %(alias)s was deleted.") % {"alias": label(alias)})
        return page.redirect(page.url("alias_list"))
    return page.render("alias_delete.html", alias=alias)
