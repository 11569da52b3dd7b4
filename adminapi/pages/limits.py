"""Domain limits and what each domain uses of them. A superadmin sets the limits; a domain
admin may change only the default quota of their domains (as in the API)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.forms import Form, parse_count, parse_size, size_for_input
from adminapi.pages.listing import page_links, parse_paging, search_text
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import domains, limits

COUNT_FIELDS = ("max_mailboxes", "max_aliases")
SIZE_FIELDS = ("max_quota_per_mailbox", "total_quota", "default_quota")
# What a domain admin may change.
DOMAIN_ADMIN_FIELDS = ("default_quota",)


async def limit_list(page: Page) -> Response:
    q = search_text(page)
    paging = parse_paging(page, "name")
    async with page.store.read() as conn:
        window = await domains.list_window(conn, page.scope, paging.request(q))
        usage = await limits.usage(conn, [row["id"] for row in window.rows])
    return page.render(
        "limits.html", domains=window.rows, usage=usage, q=q,
        links=page_links(page, "limit_list", paging, window, {"q": q}),
    )


def editable_fields(page: Page) -> tuple[str, ...]:
    return (*COUNT_FIELDS, *SIZE_FIELDS) if page.is_superadmin else DOMAIN_ADMIN_FIELDS


async def domain_with_usage(page: Page) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """The id, the row and the usage of the domain in the path (one of the admin's)."""
    domain_id = page.path_id()
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
        usage = (await limits.usage(conn, [domain_id]))[domain_id]
    return domain_id, domain, usage


async def limit_edit(page: Page) -> Response:
    _ = page._
    domain_id, domain, usage = await domain_with_usage(page)
    form = Form(values={
        **{name: str(domain[name]) for name in COUNT_FIELDS},
        **{name: size_for_input(domain[name]) for name in SIZE_FIELDS},
    })
    editable = editable_fields(page)
    if page.request.method == "POST":
        values: dict[str, Any] = {}
        for name in editable:
            typed = page.form_data.text(name) or "0"
            form.values[name] = typed
            if name in COUNT_FIELDS:
                number = parse_count(typed)
                if number is None:
                    form.add_error(name, _("Enter a whole number, 0 for no limit."))
            else:
                number = parse_size(typed)
                if number is None:
                    form.add_error(
                        name, _("Enter a size in bytes, or with a unit: 500 MB, 2 GB."))
            values[name] = number
        if form.valid:
            # A refusal makes the form not valid.
            await page.save(form, lambda conn: domains.update(
                conn, page.admin.actor, page.scope, domain_id, values))
        if form.valid:
            page.flash("success", _("The limits of %(name)s were changed.")
                       % {"name": v.display_domain(domain["name"])})
            return page.redirect(page.url("limit_list"))
    return page.render("limit_form.html", status=200 if form.valid else 400, form=form,
                       domain=domain, usage=usage, editable=editable)
