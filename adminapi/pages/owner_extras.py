"""A mailbox owner's vacation reply (`/me/vacation/`) and app passwords (`/me/app-passwords/`).

Both call the store (`dinomail.store.vacation`, `.apppasswords`) with the owner's own mailbox
only; the rules (lengths, dates, protocols, limits) and the audit are there. An app password's
secret is shown once, in the answer to its creation, never stored in clear nor in the session.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.ownersession import OwnerPage, translate
from dinomail.store import Forbidden, NotFound, StoreError, apppasswords, vacation
from dinomail.validation import ValidationError

TEXT_FIELDS = ("subject", "body", "starts", "ends", "interval_days")


def _vacation_form(row: dict[str, Any] | None) -> Form:
    values = dict(vacation.DEFAULTS) if row is None else {
        name: row[name] for name in vacation.FIELDS}
    return Form(values={
        "enabled": bool(values["enabled"]),
        "subject": values["subject"],
        "body": values["body"],
        "starts": values["starts"].isoformat() if values["starts"] else "",
        "ends": values["ends"].isoformat() if values["ends"] else "",
        "interval_days": str(values["interval_days"]),
    })


async def me_vacation(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.read() as conn:
        row = await vacation.get(conn, me.scope, me.mailbox_id)
    if page.request.method == "GET":
        return page.render("me_vacation.html", form=_vacation_form(row), saved=row is not None)
    data = page.form_data
    form = Form(values={name: data.get(name) for name in TEXT_FIELDS})
    form.values["enabled"] = data.checked("enabled")
    try:
        async with page.store.write() as conn:
            await vacation.put(conn, me.actor, me.scope, me.mailbox_id, {
                "enabled": form.values["enabled"],
                "subject": form.values["subject"].strip(),
                "body": form.values["body"],
                "starts": form.values["starts"].strip() or None,
                "ends": form.values["ends"].strip() or None,
                "interval_days": form.values["interval_days"].strip(),
            })
    except (NotFound, Forbidden):
        raise
    except (ValidationError, StoreError) as error:
        form.add_error(error.field, translate(page, error))
        return page.render("me_vacation.html", form=form, saved=row is not None, status=400)
    page.flash("success", page._("Your vacation reply was saved."))
    return page.redirect(page.url("me_vacation"))


async def me_vacation_delete(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.write() as conn:
        await vacation.delete(conn, me.actor, me.scope, me.mailbox_id)
    page.flash("success", page._("Your vacation reply was removed."))
    return page.redirect(page.url("me_vacation"))


def _new_form() -> Form:
    return Form(values={"name": "", "protocols": []})


async def _app_passwords_page(page: OwnerPage, form: Form, *, status: int = 200,
                              secret: str | None = None,
                              created: dict[str, Any] | None = None) -> Response:
    me = page.me
    async with page.store.read() as conn:
        rows = await apppasswords.list_for(conn, me.scope, me.mailbox_id)
    return page.render("me_app_passwords.html", form=form, rows=rows, secret=secret,
                       created=created, protocols=apppasswords.PROTOCOLS, status=status)


async def me_app_passwords(page: OwnerPage) -> Response:
    if page.request.method == "GET":
        return await _app_passwords_page(page, _new_form())
    me = page.me
    form = Form(values={
        "name": page.form_data.text("name"),
        "protocols": [name for name in apppasswords.PROTOCOLS
                      if page.form_data.checked(f"protocol_{name}")],
    })
    secret = apppasswords.new_secret()
    password_hash = await apppasswords.hash_secret(secret)
    try:
        async with page.store.write() as conn:
            row = await apppasswords.create(
                conn, me.actor, me.scope, me.mailbox_id, name=form.values["name"],
                protocols=form.values["protocols"], password_hash=password_hash)
    except (NotFound, Forbidden):
        raise
    except (ValidationError, StoreError) as error:
        form.add_error(error.field, translate(page, error))
        return await _app_passwords_page(page, form, status=400)
    # Shown in this answer only: a redirect would have to keep the secret somewhere.
    return await _app_passwords_page(page, _new_form(), secret=secret, created=row)


async def me_app_password_revoke(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.write() as conn:
        await apppasswords.revoke(conn, me.actor, me.scope, me.mailbox_id, page.path_id())
    page.flash("warning", page._("The app password was revoked."))
    return page.redirect(page.url("me_app_passwords"))
