"""Mailboxes ("users" in the original pages): list with a domain filter, quotas and their use,
create, edit, change password, delete."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.domain_select import domain_choices, domain_filter, posted_domain_id
from adminapi.pages.forms import Form, parse_size, size_for_input
from adminapi.pages.listing import page_links, parse_paging, search_text
from adminapi.pages.web import Page, display_address
from dinomail import validation as v
from dinomail.store import StoreError, mailboxes, ownerlogin

# Above this share of the quota, the usage bar turns amber, then red.
QUOTA_HIGH = 0.8
QUOTA_FULL = 0.95


def usage_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """What the usage bar shows; None when the mailbox has no quota (unlimited)."""
    quota = int(row["quota"] or 0)
    if not quota:
        return None
    used = int(row["quota_used_bytes"] or 0)
    return {
        "value": min(used, quota), "max": quota, "low": int(quota * QUOTA_HIGH),
        "high": int(quota * QUOTA_FULL), "percent": min(100, round(100 * used / quota)),
    }


async def mailbox_list(page: Page) -> Response:
    _ = page._
    q = search_text(page)
    domain, unknown_domain = await domain_filter(page)
    paging = parse_paging(page, "email")
    async with page.store.read() as conn:
        window = await mailboxes.list_window(
            conn, page.scope, paging.request(q, domain["id"] if domain else None))
    query = {"domain": domain["name"] if domain else "", "q": q}
    return page.render(
        "mailboxes.html", mailboxes=window.rows, q=q, usage_of=usage_of,
        domain=domain, unknown_domain=unknown_domain, choices=await domain_choices(page),
        links=page_links(page, "mailbox_list", paging, window, query),
    )


async def _form_page(page: Page, form: Form, mailbox: dict | None, *, status: int = 200
                     ) -> Response:
    owner_totp = False
    if mailbox is not None:
        async with page.store.read() as conn:
            owner_totp = await ownerlogin.totp_enabled(conn, mailbox["id"])
    return page.render("mailbox_form.html", status=status, form=form, mailbox=mailbox,
                       choices=await domain_choices(page), owner_totp=owner_totp)


def _read_quota(page: Page, form: Form) -> tuple[bool, int | None]:
    """(ok, quota): an empty field takes the domain's default quota."""
    form.values["quota"] = page.form_data.text("quota")
    if not form.values["quota"]:
        return True, None
    quota = parse_size(form.values["quota"])
    if quota is None:
        form.add_error("quota", page._("Enter a size in bytes, or with a unit: 500 MB, 2 GB."))
        return False, None
    return True, quota


async def _posted(page: Page, form: Form) -> dict[str, Any]:
    """The mailbox's values as typed (what is wrong goes into `form`)."""
    form.values["email"] = page.form_data.text("email")
    form.values["active"] = page.form_data.checked("active")
    # Left empty: the address's domain is used.
    domain_id = await posted_domain_id(page, form, "domain")
    _ok, quota = _read_quota(page, form)
    values: dict[str, Any] = {"email": form.values["email"], "quota": quota,
                              "active": form.values["active"]}
    if domain_id is not None:
        values["domain_id"] = domain_id
    return values


def _check_confirmation(page: Page, form: Form, password: str, confirmation: str) -> None:
    if password != confirmation:
        form.add_error("password_confirm", page._("The two passwords don't match."))


async def mailbox_new(page: Page) -> Response:
    _ = page._
    preset = page.request.query_params.get("domain", "")
    form = Form(values={"domain": preset, "email": "", "quota": "", "active": True,
                        "password": "", "password_confirm": ""})
    if page.request.method == "GET":
        return await _form_page(page, form, None)
    values = await _posted(page, form)
    password = page.form_data.get("password")
    _check_confirmation(page, form, password, page.form_data.get("password_confirm"))
    if not form.valid:
        return await _form_page(page, form, None, status=400)
    try:
        password_hash = await mailboxes.new_mailbox_password(
            password or None, page.settings.DINOMAIL_PASSWORD_SCHEME, email=form.values["email"],
            min_length=page.settings.MAILBOX_PASSWORD_MIN_LENGTH,
        )
    except v.ValidationError as error:
        page.refuse_into(form, error)
        return await _form_page(page, form, None, status=400)
    created = await page.save(form, lambda conn: mailboxes.create(
        conn, page.admin.actor, page.scope, values, password_hash=password_hash))
    if created is None:
        return await _form_page(page, form, None, status=400)
    page.flash("success", _("User %(email)s was created.") % {"email": created["email"]})
    return page.redirect(page.url("mailbox_list"))


async def mailbox_edit(page: Page) -> Response:
    _ = page._
    mailbox_id = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, mailbox_id)
    form = Form(values={
        "domain": mailbox["domain_name"], "email": mailbox["email"],
        "quota": size_for_input(mailbox["quota"]), "active": bool(mailbox["active"]),
    })
    changed = await page.submit(
        form, lambda status: _form_page(page, form, mailbox, status=status),
        lambda: _posted(page, form),
        lambda conn, values: mailboxes.update(
            conn, page.admin.actor, page.scope, mailbox_id, values))
    if isinstance(changed, Response):
        return changed
    page.flash("success", _("User %(email)s was changed.") % {"email": changed["email"]})
    return page.redirect(page.url("mailbox_list"))


async def mailbox_password(page: Page) -> Response:
    _ = page._
    mailbox_id = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, mailbox_id)
    form = Form(values={"password": "", "password_confirm": ""})
    if page.request.method == "POST":
        password = page.form_data.get("password")
        if not password:
            form.add_error("password", _("A new password is required."))
        _check_confirmation(page, form, password, page.form_data.get("password_confirm"))
        if form.valid:
            try:
                await mailboxes.change_password(
                    page.store, page.admin.actor, page.scope, mailbox_id, password,
                    scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
                    min_length=page.settings.MAILBOX_PASSWORD_MIN_LENGTH,
                )
            except (StoreError, v.ValidationError) as error:
                page.refuse_into(form, error)
            else:
                page.flash("success", _("%(email)s's password was changed.")
                           % {"email": mailbox["email"]})
                return page.redirect(page.url("mailbox_list"))
    return page.render("mailbox_password.html", status=200 if form.valid else 400, form=form,
                       mailbox=mailbox)


async def mailbox_delete(page: Page) -> Response:
    _ = page._
    mailbox_id = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, mailbox_id)
    form = Form(values={"verifier": ""})
    if page.request.method == "POST":
        form.values["verifier"] = page.form_data.text("verifier")
        typed = form.values["verifier"].lower()
        if typed in (mailbox["email"], display_address(mailbox["email"]).lower()):
            async with page.store.write() as conn:
                await mailboxes.delete(conn, page.admin.actor, page.scope, mailbox_id)
            page.flash("warning", _("User %(email)s was deleted.") % {"email": mailbox["email"]})
            return page.redirect(page.url("mailbox_list"))
        form.add_error("verifier", _("Emails don't match. Operation cancelled."))
    return page.render("mailbox_delete.html", status=200 if form.valid else 400, form=form,
                       mailbox=mailbox)
