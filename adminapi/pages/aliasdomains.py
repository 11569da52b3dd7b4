"""Alias domains: mail to local@alias goes to local@target. List, create, edit, delete."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.domain_select import domain_choices, posted_domain_id
from adminapi.pages.forms import Form
from adminapi.pages.listing import page_links, parse_paging, search_text
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import aliasdomains

# The store names the target `target_domain`; the form calls it `target`.
FIELDS = {"target_domain": "target"}


async def aliasdomain_list(page: Page) -> Response:
    q = search_text(page)
    paging = parse_paging(page, "name")
    async with page.store.read() as conn:
        window = await aliasdomains.list_window(conn, page.scope, paging.request(q))
    return page.render(
        "aliasdomains.html", aliasdomains=window.rows, q=q,
        links=page_links(page, "aliasdomain_list", paging, window, {"q": q}),
    )


async def _form_page(page: Page, form: Form, aliasdomain: dict | None, *, status: int = 200
                     ) -> Response:
    return page.render("aliasdomain_form.html", status=status, form=form,
                       aliasdomain=aliasdomain, choices=await domain_choices(page))


async def _posted(page: Page, form: Form) -> dict[str, Any]:
    data = page.form_data
    form.values["name"] = data.text("name")
    form.values["active"] = data.checked("active")
    values: dict[str, Any] = {"name": form.values["name"], "active": form.values["active"]}
    target_id = await posted_domain_id(page, form, "target", required=True)
    if target_id is not None:
        values["target_domain_id"] = target_id
    return values


async def aliasdomain_new(page: Page) -> Response:
    _ = page._
    form = Form(values={"name": "", "target": "", "active": True})
    created = await page.submit(
        form, lambda status: _form_page(page, form, None, status=status),
        lambda: _posted(page, form),
        lambda conn, values: aliasdomains.create(conn, page.admin.actor, page.scope, values),
        FIELDS)
    if isinstance(created, Response):
        return created
    page.flash("success", _("Alias domain %(name)s was created.")
               % {"name": v.display_domain(created["name"])})
    return page.redirect(page.url("aliasdomain_list"))


async def aliasdomain_edit(page: Page) -> Response:
    _ = page._
    aliasdomain_id = page.path_id()
    async with page.store.read() as conn:
        aliasdomain = await aliasdomains.get(conn, page.scope, aliasdomain_id)
    form = Form(values={"name": v.display_domain(aliasdomain["name"]),
                        "target": aliasdomain["target_domain_name"],
                        "active": bool(aliasdomain["active"])})
    changed = await page.submit(
        form, lambda status: _form_page(page, form, aliasdomain, status=status),
        lambda: _posted(page, form),
        lambda conn, values: aliasdomains.update(
            conn, page.admin.actor, page.scope, aliasdomain_id, values),
        FIELDS)
    if isinstance(changed, Response):
        return changed
    page.flash("success", _("Alias domain %(name)s was changed.")
               % {"name": v.display_domain(changed["name"])})
    return page.redirect(page.url("aliasdomain_list"))


async def aliasdomain_delete(page: Page) -> Response:
    aliasdomain_id = page.path_id()
    async with page.store.read() as conn:
        aliasdomain = await aliasdomains.get(conn, page.scope, aliasdomain_id)
    if page.request.method == "POST":
        async with page.store.write() as conn:
            await aliasdomains.delete(conn, page.admin.actor, page.scope, aliasdomain_id)
        page.flash("warning", page._("Alias domain %(name)s was deleted.")
                   % {"name": v.display_domain(aliasdomain["name"])})
        return page.redirect(page.url("aliasdomain_list"))
    return page.render("aliasdomain_delete.html", aliasdomain=aliasdomain)
