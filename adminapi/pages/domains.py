"""Domains: the list with DNS statuses, create, edit, delete, the autoconfig download, and the
DNS status pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from adminapi.autoconfig import download
from adminapi.pages.forms import N_, Form
from adminapi.pages.limits import domain_with_usage
from adminapi.pages.listing import page_links, parse_paging, search_text
from adminapi.pages.web import Page, local_path
from dinomail import validation as v
from dinomail.dnscheck import CheckStatus, read_report, request_run
from dinomail.store import Forbidden, domains

# The original's statuses (`DkimStatus`, `DmarcStatus`, `SpfStatus`) with their wording; the
# tone says how the page colours them.
DKIM_STATUSES = {
    0: (N_("Not set"), "unset"),
    1: (N_("DNS record not found"), "bad"),
    2: (N_("No DNS key found in record"), "bad"),
    3: (N_("Key and DNS record don't match"), "bad"),
    4: (N_("OK"), "ok"),
}
DMARC_STATUSES = {
    0: (N_("No DNS record for DMARC"), "unset"),
    1: (N_("DNS record does not contain v=DMARC1"), "bad"),
    2: (N_("OK"), "ok"),
}
SPF_STATUSES = {
    0: (N_("No DNS record for SPF"), "unset"),
    1: (N_("OK"), "ok"),
}
STATUS_TABLES = {"dkim": DKIM_STATUSES, "dmarc": DMARC_STATUSES, "spf": SPF_STATUSES}
# The detailed statuses of the DNS checks (`dinomail.dnscheck`), for the scan pages.
CHECK_STATUSES = {
    CheckStatus.OK: (N_("OK"), "ok"),
    CheckStatus.WARNING: (N_("Warning"), "warn"),
    CheckStatus.MISSING: (N_("Missing"), "bad"),
    CheckStatus.ABSENT: (N_("Not published"), "unset"),
    CheckStatus.INVALID: (N_("Invalid"), "bad"),
    CheckStatus.MISMATCH: (N_("Does not match"), "bad"),
    CheckStatus.NOT_CONFIGURED: (N_("Not configured"), "unset"),
    CheckStatus.COULD_NOT_CHECK: (N_("Could not check"), "warn"),
}
# What DNS answered to each question.
OUTCOMES = {
    "answer": N_("Answer"), "nxdomain": N_("No such name"), "nodata": N_("No record"),
    "timeout": N_("No answer in time"), "servfail": N_("Server failure"), "error": N_("Error"),
}

# The form's text fields, in the order shown; `name` comes first and is handled apart.
TEXT_FIELDS = (
    "display_name", "short_display_name", "dkim_key_name", "dkim_key", "imap_address",
    "pop_address", "smtp_address",
)
# The form's switches.
CHECKBOXES = ("active", "catchall_senders", "require_app_passwords")


def status_of(kind: str, value: int) -> tuple[str, str]:
    return STATUS_TABLES[kind].get(value, (N_("Unknown"), "bad"))


def check_status(status: CheckStatus) -> tuple[str, str]:
    return CHECK_STATUSES.get(status, (N_("Unknown"), "bad"))


async def domain_list(page: Page) -> Response:
    q = search_text(page)
    paging = parse_paging(page, "name")
    async with page.store.read() as conn:
        window = await domains.list_window(conn, page.scope, paging.request(q))
    return page.render(
        "domains.html", domains=window.rows, q=q, status_of=status_of,
        links=page_links(page, "domain_list", paging, window, {"q": q}),
    )


def _empty_form() -> Form:
    return Form(values={"name": "", **dict.fromkeys(TEXT_FIELDS, ""), "active": True,
                        "catchall_senders": False, "require_app_passwords": False})


def _form_of(domain: dict[str, Any]) -> Form:
    values = {name: domain[name] or "" for name in ("name", *TEXT_FIELDS)}
    return Form(values={**values, "name": v.display_domain(domain["name"]),
                        "active": bool(domain["active"]),
                        "catchall_senders": bool(domain["catchall_senders"]),
                        "require_app_passwords": bool(domain["require_app_passwords"])})


async def _posted(page: Page, form: Form, *, with_name: bool) -> dict[str, Any]:
    data = page.form_data
    for name in TEXT_FIELDS:
        form.values[name] = data.get(name)
    values: dict[str, Any] = {name: form.values[name] for name in TEXT_FIELDS}
    for name in CHECKBOXES:
        values[name] = form.values[name] = data.checked(name)
    if with_name:
        form.values["name"] = data.text("name")
        values["name"] = form.values["name"]
    return values


async def _form_page(page: Page, form: Form, domain: dict | None, *, status: int = 200
                     ) -> Response:
    return page.render("domain_form.html", status=status, form=form, domain=domain)


async def domain_new(page: Page) -> Response:
    _ = page._
    if not page.is_superadmin:
        raise Forbidden(
            "only a superadmin can create a domain", code="superadmin_only_create_domain"
        )
    form = _empty_form()
    created = await page.submit(
        form, lambda status: _form_page(page, form, None, status=status),
        lambda: _posted(page, form, with_name=True),
        lambda conn, values: domains.create(conn, page.admin.actor, page.scope, values))
    if isinstance(created, Response):
        return created
    page.flash("success", _("Domain %(name)s was created.")
               % {"name": v.display_domain(created["name"])})
    return page.redirect(page.url("domain_list"))


async def domain_edit(page: Page) -> Response:
    _ = page._
    domain_id = page.path_id()
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
    form = _form_of(domain)
    changed = await page.submit(
        form, lambda status: _form_page(page, form, domain, status=status),
        # Only a superadmin may rename; a domain admin's form has the name disabled.
        lambda: _posted(page, form, with_name=page.is_superadmin),
        lambda conn, values: domains.update(
            conn, page.admin.actor, page.scope, domain_id, values))
    if isinstance(changed, Response):
        return changed
    page.flash("success", _("Domain %(name)s was changed.")
               % {"name": v.display_domain(changed["name"])})
    return page.redirect(page.url("domain_list"))


def _names_match(typed: str, name: str) -> bool:
    typed = typed.strip().rstrip(".").lower()
    return typed in (name, v.display_domain(name).lower())


async def domain_delete(page: Page) -> Response:
    _ = page._
    domain_id, domain, usage = await domain_with_usage(page)
    if not page.is_superadmin:
        raise Forbidden(
            "only a superadmin can delete a domain", code="superadmin_only_delete_domain"
        )
    form = Form(values={"verifier": ""})
    if page.request.method == "POST":
        form.values["verifier"] = page.form_data.text("verifier")
        if _names_match(form.values["verifier"], domain["name"]):
            async with page.store.write() as conn:
                await domains.delete(conn, page.admin.actor, page.scope, domain_id)
            page.flash("warning", _("Domain %(name)s was deleted.")
                       % {"name": v.display_domain(domain["name"])})
            return page.redirect(page.url("domain_list"))
        form.add_error("verifier", _("Names don't match. Operation cancelled."))
    return page.render("domain_delete.html", status=200 if form.valid else 400, form=form,
                       domain=domain, usage=usage)


async def domain_autoconfig(page: Page) -> Response:
    """The original's download: Thunderbird's file for the domain, as mail clients get it."""
    document, filename = await download(page.store, page.scope, page.path_id())
    return Response(
        document, media_type="application/xml",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


async def domain_update_status(page: Page) -> Response:
    """The original's "update status" (a GET there; a POST here). The check itself runs in the
    background checker, so the page never waits on DNS."""
    domain_id = page.path_id()
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
    await request_run(page.store, page.scope, domain_id)
    page.flash("success", page._(
        "A DNS check of %(name)s was asked for: its statuses are updated within a few "
        "seconds.") % {"name": v.display_domain(domain["name"])})
    back = page.form_data.get("next")
    return page.redirect(local_path(back, page.url("domain_list")))


def _scan_view(kind: str) -> Callable[[Page], Awaitable[Response]]:
    async def view(page: Page) -> Response:
        domain_id = page.path_id()
        async with page.store.read() as conn:
            domain = await domains.get(conn, page.scope, domain_id)
        report = await read_report(page.store, page.settings, page.scope, domain_id)
        return page.render(
            "domain_scan.html", domain=domain, kind=kind, status_of=status_of,
            report=report, result=report.check(kind), check_status=check_status,
            outcome_label=OUTCOMES,
        )

    view.__name__ = f"domain_{kind}_scan"
    return view


domain_dkim_scan = _scan_view("dkim")
domain_dmarc_scan = _scan_view("dmarc")
domain_spf_scan = _scan_view("spf")
