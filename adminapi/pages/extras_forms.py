"""The one-form page of a mailbox's setting (forwarding, vacation reply) and the vacation
reply and app password forms, shared by the owner's pages (`/me/vacation/`,
`/me/app-passwords/`) and the admin's pages of a mailbox (`/virtual-users/<id>/vacation`,
`/virtual-users/<id>/app-passwords`).

Each reads the posted form and calls the store (`dinomail.store.vacation`, `.apppasswords`) as
`actor` within `scope`: the rules (lengths, dates, protocols, limits) and the audit are there.
NotFound and Forbidden pass through: they are the view's answer (404, 403), not a field's error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail.store import Forbidden, NotFound, Scope, StoreError, apppasswords, vacation
from dinomail.store.common import Row
from dinomail.validation import ValidationError

TEXT_FIELDS = ("subject", "body", "starts", "ends", "interval_days")


async def setting_page(
    page: Page, template: str, form: Form, save: Callable[[], Awaitable[tuple[Form, bool]]],
    message: str, to: str, **context: Any,
) -> Response:
    """A mailbox setting's page (forwarding, vacation reply; the owner's or an admin's): `form`
    on a GET; on a POST `save` it, then say `message` and go `to`, or show the form as typed with
    its errors."""
    if page.request.method == "GET":
        return page.render(template, form=form, **context)
    typed, ok = await save()
    if not ok:
        return page.render(template, form=typed, status=400, **context)
    page.flash("success", message)
    return page.redirect(to)


def vacation_form(row: Row | None) -> Form:
    """The form showing a mailbox's vacation reply (the defaults when it has none)."""
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


async def save_vacation(page: Page, actor: str, scope: Scope, mailbox_id: int
                        ) -> tuple[Form, bool]:
    """Apply the posted vacation form; (the form as typed, with its errors; whether saved)."""
    data = page.form_data
    form = Form(values={name: data.get(name) for name in TEXT_FIELDS})
    form.values["enabled"] = data.checked("enabled")
    try:
        async with page.store.write() as conn:
            await vacation.put(conn, actor, scope, mailbox_id, {
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
        form.add_error(error.field, page.refusal(error))
        return form, False
    return form, True


def new_app_password_form() -> Form:
    return Form(values={"name": "", "protocols": []})


@dataclass(frozen=True, slots=True)
class Created:
    """A new app password: its secret, shown in this answer only, and its listed row."""

    secret: str
    row: Row


async def create_app_password(page: Page, actor: str, scope: Scope, mailbox_id: int
                              ) -> tuple[Form, Created | None]:
    """Create the app password posted; (the form to show next, the new one or None)."""
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
                conn, actor, scope, mailbox_id, name=form.values["name"],
                protocols=form.values["protocols"], password_hash=password_hash)
    except (NotFound, Forbidden):
        raise
    except (ValidationError, StoreError) as error:
        form.add_error(error.field, page.refusal(error))
        return form, None
    # Shown in this answer only: a redirect would have to keep the secret somewhere.
    return new_app_password_form(), Created(secret, row)


async def app_passwords_context(page: Page, scope: Scope, mailbox_id: int, form: Form,
                                created: Created | None, *, create_url: str,
                                revoke_url: Callable[[int], str]) -> dict[str, Any]:
    """What `_app_passwords.html` shows: the mailbox's app passwords, the form, a new secret,
    and where its forms post (`revoke_url` of an app password's id)."""
    async with page.store.read() as conn:
        rows = await apppasswords.list_for(conn, scope, mailbox_id)
    return {"form": form, "rows": rows, "protocols": apppasswords.PROTOCOLS,
            "secret": created.secret if created else None,
            "created": created.row if created else None,
            "create_url": create_url, "revoke_url": revoke_url}
