"""Admins: the list, create, edit (domains, read-only, active), deactivate and reset a
password, for superadmins. A domain admin sees only themself, and another admin's page answers
as one that does not exist.

Every rule (who may change what of their own account, what a username may be) is in
`dinomail.store.admins`, as for the API; this module reads the forms and shows the result.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.forms import N_, Form
from adminapi.pages.listing import PAGE_SIZE, page_links, parse_paging, search_text
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import EVERYTHING, NotFound, Scope, StoreError, admins, domains

# More than anyone types by hand; bounds the work of one form.
MAX_DOMAINS = 10_000

# Checked here as the API checks it for its whole resource: admins are superadmins' business.
SUPERADMINS_ONLY = N_("Only a superadmin can manage admins.")
def _not_superadmin(page: Page) -> Response | None:
    """The refusal a domain admin gets for a change to admins; None for a superadmin."""
    if page.is_superadmin:
        return None
    return page.error(403, page._("Not allowed"), page._(SUPERADMINS_ONLY))


async def _visible_admin(page: Page) -> dict[str, Any]:
    """The admin of the URL; a domain admin may see only themself, and any other admin is, for
    them, one that does not exist."""
    admin_id = page.path_id()
    if not page.is_superadmin and admin_id != page.admin.admin_id:
        raise NotFound("admin not found", code="admin_not_found")
    async with page.store.read() as conn:
        return await admins.get(conn, admin_id)


async def _domain_names(page: Page, ids: list[int]) -> list[str]:
    if not ids:
        return []
    async with page.store.read() as conn:
        return [name for _, name in await domains.names(conn, Scope(frozenset(ids)))]


async def admin_list(page: Page) -> Response:
    q = search_text(page) if page.is_superadmin else ""
    paging = parse_paging(page, "username")
    async with page.store.read() as conn:
        window = await admins.list_window(
            conn, q=q or None, only_id=None if page.is_superadmin else page.admin.admin_id,
            limit=PAGE_SIZE, offset=paging.offset, after=paging.after,
        )
        ids = sorted({domain_id for row in window.rows for domain_id in row["domain_ids"]})
        names = dict(await domains.names(conn, Scope(frozenset(ids)))) if ids else {}
    return page.render(
        "admins.html", admins=window.rows, q=q, domain_names=names,
        links=page_links(page, "admin_list", paging, window, {"q": q}),
    )


def _form_page(page: Page, form: Form, account: dict | None, *, status: int = 200,
               password: str | None = None) -> Response:
    return page.render("admin_form.html", status=status, form=form, account=account,
                       generated_password=password)


async def _read_domains(page: Page, form: Form) -> list[int] | None:
    """The domains typed one per line (or separated by commas or spaces), as ids; None after
    putting an error on the field."""
    form.values["domains"] = page.form_data.get("domains")
    typed = form.values["domains"].replace(",", " ").split()
    if len(typed) > MAX_DOMAINS:
        form.add_error("domains", page._("At most %(limit)s domains.") % {"limit": MAX_DOMAINS})
        return None
    ids: list[int] = []
    async with page.store.read() as conn:
        for name in typed:
            try:
                domain = await domains.get_by_name(conn, EVERYTHING,
                                                   v.normalize_domain(name, "domains"))
            except (v.ValidationError, NotFound):
                form.add_error("domains", page._("There is no domain %(name)s.") % {"name": name})
                return None
            ids.append(int(domain["id"]))
    return ids


def _read_flags(page: Page, form: Form) -> None:
    data = page.form_data
    form.values["email"] = data.text("email")
    for name in ("is_superadmin", "read_only", "is_active"):
        form.values[name] = data.checked(name)


async def admin_new(page: Page) -> Response:
    _ = page._
    if (refused := _not_superadmin(page)) is not None:
        return refused
    form = Form(values={"username": "", "email": "", "password": "", "password_confirm": "",
                        "is_superadmin": False, "read_only": False, "is_active": True,
                        "domains": ""})
    if page.request.method == "GET":
        return _form_page(page, form, None)
    data = page.form_data
    form.values["username"] = data.text("username")
    _read_flags(page, form)
    domain_ids = await _read_domains(page, form)
    password = data.get("password")
    if password != data.get("password_confirm"):
        form.add_error("password_confirm", _("The two passwords don't match."))
    if not form.valid or domain_ids is None:
        return _form_page(page, form, None, status=400)
    try:
        async with page.store.write() as conn:
            created = await admins.create(
                conn, page.admin.actor, username=form.values["username"], password=password,
                email=form.values["email"], is_superadmin=form.values["is_superadmin"],
                domain_ids=domain_ids, read_only=form.values["read_only"],
            )
            if not form.values["is_active"]:
                await admins.update(conn, page.admin.actor, created["id"], {"is_active": False},
                                    acting_admin_id=page.admin.admin_id)
    except (StoreError, v.ValidationError) as error:
        page.refuse_into(form, error)
        return _form_page(page, form, None, status=400)
    page.flash("success", _("Admin %(username)s was created.") % {"username": created["username"]})
    return page.redirect(page.url("admin_list"))


async def _form_of(page: Page, account: dict[str, Any]) -> Form:
    names = await _domain_names(page, account["domain_ids"])
    return Form(values={
        "username": account["username"], "email": account["email"],
        "is_superadmin": account["is_superadmin"], "read_only": account["read_only"],
        "is_active": account["is_active"], "domains": "\n".join(v.display_domain(name)
                                                               for name in names),
    })


async def admin_edit(page: Page) -> Response:
    _ = page._
    account = await _visible_admin(page)
    form = await _form_of(page, account)
    if page.request.method == "GET":
        return _form_page(page, form, account)
    if (refused := _not_superadmin(page)) is not None:
        return refused
    _read_flags(page, form)
    domain_ids = await _read_domains(page, form)
    if not form.valid or domain_ids is None:
        return _form_page(page, form, account, status=400)
    changes = {"email": form.values["email"], "domain_ids": domain_ids,
               **{name: form.values[name] for name in ("is_superadmin", "read_only", "is_active")}}
    try:
        async with page.store.write() as conn:
            changed = await admins.update(conn, page.admin.actor, account["id"], changes,
                                          acting_admin_id=page.admin.admin_id)
    except (StoreError, v.ValidationError) as error:
        page.refuse_into(form, error, {"domain_ids": "domains"})
        return _form_page(page, form, account, status=400)
    page.flash("success", _("Admin %(username)s was changed.") % {"username": changed["username"]})
    return page.redirect(page.url("admin_list"))


async def _refused_on_form(page: Page, account: dict[str, Any], error: StoreError) -> Response:
    form = await _form_of(page, account)
    page.refuse_into(form, error)
    return _form_page(page, form, account, status=400)


async def admin_deactivate(page: Page) -> Response:
    account = await _visible_admin(page)
    if (refused := _not_superadmin(page)) is not None:
        return refused
    try:
        async with page.store.write() as conn:
            await admins.update(conn, page.admin.actor, account["id"], {"is_active": False},
                                acting_admin_id=page.admin.admin_id)
    except StoreError as error:
        return await _refused_on_form(page, account, error)
    page.flash("warning", page._("Admin %(username)s was deactivated: their sessions ended and "
                                 "their API keys stopped working.")
               % {"username": account["username"]})
    return page.redirect(page.url("admin_list"))


async def admin_reset_password(page: Page) -> Response:
    account = await _visible_admin(page)
    if (refused := _not_superadmin(page)) is not None:
        return refused
    try:
        async with page.store.write() as conn:
            _row, password = await admins.reset_password(
                conn, page.admin.actor, account["id"], acting_admin_id=page.admin.admin_id)
    except StoreError as error:
        return await _refused_on_form(page, account, error)
    # Shown in this answer only, never stored: a redirect would have to keep it somewhere.
    return _form_page(page, await _form_of(page, account), account, password=password)
