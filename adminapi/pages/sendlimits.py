"""Sending limits of a domain and of a mailbox, what each sent in the last hour and day, and a
reset of those counts. Every admin of the domain sees them; only a superadmin changes the limits
or resets the counts (as in the API and the store: they are abuse control)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from adminapi.pages.forms import Form, parse_count
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import domains, mailboxes
from dinomail.store import policy as policy_store
from dinomail.store.errors import Forbidden

DOMAIN_FIELDS = (*policy_store.MAILBOX_DEFAULTS, *policy_store.DOMAIN_TOTALS)


def _require_superadmin(page: Page) -> None:
    if not page.is_superadmin:
        raise Forbidden(
            "only a superadmin can change sending limits", code="superadmin_only_send_limits"
        )


def _read_counts(page: Page, form: Form, names: tuple[str, ...], *, empty: Any
                 ) -> dict[str, Any]:
    """The limits typed in the form; `empty` is what an empty field means."""
    values: dict[str, Any] = {}
    for name in names:
        typed = page.form_data.text(name)
        form.values[name] = typed
        if not typed:
            values[name] = empty
            continue
        number = parse_count(typed)
        if number is None:
            form.add_error(name, page._("Enter a whole number, 0 for no limit."))
        values[name] = number
    return values


async def _save(
    page: Page, form: Form, write: Callable[[AsyncConnection], Awaitable[object]]
) -> bool:
    if form.valid:
        await page.save(form, write)
    return form.valid


# --- a domain ------------------------------------------------------------------------------------


async def _domain_state(page: Page, domain_id: int) -> tuple[dict, dict, dict]:
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
        limits = await policy_store.get_domain_limits(conn, page.scope, domain_id)
        counts = await policy_store.window_counts(
            conn, policy_store.DOMAIN, [domain["name"]], time.time())
    return domain, limits, counts[domain["name"]]


async def domain_sending(page: Page) -> Response:
    _ = page._
    domain_id = page.path_id()
    domain, limits, counts = await _domain_state(page, domain_id)
    form = Form(values={**{name: str(limits[name]) for name in DOMAIN_FIELDS},
                        "reply": limits["reply"]})
    if page.request.method == "POST":
        _require_superadmin(page)
        values = _read_counts(page, form, DOMAIN_FIELDS, empty=0)
        values["reply"] = form.values["reply"] = page.form_data.text("reply")
        if await _save(page, form, lambda conn: policy_store.set_domain_limits(
                conn, page.admin.actor, page.scope, domain_id, values)):
            page.flash("success", _("The sending limits of %(name)s were changed.")
                       % {"name": v.display_domain(domain["name"])})
            return page.redirect(page.url("domain_sending", pk=domain_id))
    applied = {key: limits[f"domain_{key}"] for key in policy_store.LIMITS}
    return page.render(
        "sending_form.html", status=200 if form.valid else 400, form=form, kind="domain",
        subject=v.display_domain(domain["name"]), counts=counts, applied=applied,
        reset_url=page.url("domain_sending_reset", pk=domain_id),
        back_url=page.url("limit_list"), default_reply=page.settings.POLICY_RATE_LIMIT_REPLY,
    )


async def _reset_counts(page: Page, kind: str, route: str,
                        shown: Callable[[str], str] = str) -> Response:
    """Start the counts of the domain or mailbox (`kind`) in the path again from zero, then back
    to its page (`route`), the name `shown` as its page shows it."""
    pk = page.path_id()
    async with page.store.write() as conn:
        name = await policy_store.reset_counts(conn, page.admin.actor, page.scope, kind, pk)
    page.flash("warning", page._("The sending counts of %(name)s start again from zero.")
               % {"name": shown(name)})
    return page.redirect(page.url(route, pk=pk))


async def domain_sending_reset(page: Page) -> Response:
    return await _reset_counts(page, policy_store.DOMAIN, "domain_sending", v.display_domain)


# --- a mailbox -----------------------------------------------------------------------------------


async def mailbox_sending(page: Page) -> Response:
    _ = page._
    mailbox_id = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, mailbox_id)
        own = await policy_store.get_mailbox_limits(conn, page.scope, mailbox_id)
        domain_limits = await policy_store.get_domain_limits(
            conn, page.scope, mailbox["domain_id"])
        counts = await policy_store.window_counts(
            conn, policy_store.MAILBOX, [mailbox["email"]], time.time())
    form = Form(values={key: "" if own[key] is None else str(own[key])
                        for key in policy_store.LIMITS})
    if page.request.method == "POST":
        _require_superadmin(page)
        values = _read_counts(page, form, policy_store.LIMITS, empty=None)
        if await _save(page, form, lambda conn: policy_store.set_mailbox_limits(
                conn, page.admin.actor, page.scope, mailbox_id, values)):
            page.flash("success", _("The sending limits of %(email)s were changed.")
                       % {"email": mailbox["email"]})
            return page.redirect(page.url("mailbox_sending", pk=mailbox_id))
    return page.render(
        "sending_form.html", status=200 if form.valid else 400, form=form, kind="mailbox",
        subject=mailbox["email"], counts=counts[mailbox["email"]],
        applied=policy_store.effective_mailbox_limits(own, domain_limits),
        defaults={key: domain_limits[f"mailbox_{key}"] for key in policy_store.LIMITS},
        reset_url=page.url("mailbox_sending_reset", pk=mailbox_id),
        back_url=page.url("mailbox_edit", pk=mailbox_id), default_reply="",
    )


async def mailbox_sending_reset(page: Page) -> Response:
    return await _reset_counts(page, policy_store.MAILBOX, "mailbox_sending")
