"""Forwarding pages: the owner's (`/me/forwarding`) and the admin's for a mailbox
(`/virtual-users/<id>/forwarding`), and a domain's self-service switches
(`/virtual-domains/<id>/self-service`). Both forwarding pages call `store.forwarding.put`."""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages.extras_forms import setting_page
from adminapi.pages.forms import Form
from adminapi.pages.ownersession import OwnerPage
from adminapi.pages.web import Page
from dinomail.store import Forbidden, NotFound, Scope, StoreError, mailboxes, selfservice
from dinomail.store import forwarding as forwarding_store
from dinomail.store.common import Row
from dinomail.validation import ValidationError


def _form_of(row: Row) -> Form:
    return Form(values={"destinations": "\n".join(row["destinations"]),
                        "keep_copy": row["keep_copy"]})


async def _save(page: Page, actor: str, scope: Scope, mailbox_id: int) -> tuple[Form, bool]:
    """Apply the posted form; (the form as typed, with its errors; whether it was saved)."""
    form = Form(values={"destinations": page.form_data.get("destinations"),
                        "keep_copy": page.form_data.checked("keep_copy")})
    try:
        async with page.store.write() as conn:
            await forwarding_store.put(
                conn, actor, scope, mailbox_id,
                {"destinations": form.values["destinations"],
                 "keep_copy": form.values["keep_copy"]},
                max_destinations=page.settings.FORWARDING_MAX_DESTINATIONS,
            )
    except (NotFound, Forbidden):
        raise  # the view's answer: not found, not allowed
    except (ValidationError, StoreError) as error:
        form.add_error(error.field or "destinations", page.refusal(error))
        return form, False
    return form, True


async def me_forwarding(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.read() as conn:
        row = await forwarding_store.get(conn, me.scope, me.mailbox_id)
    return await setting_page(
        page, "me_forwarding.html", _form_of(row),
        lambda: _save(page, me.actor, me.scope, me.mailbox_id),
        page._("Your forwarding was saved."), page.url("me_forwarding"), forwarding=row)


async def mailbox_forwarding(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, pk)
        row = await forwarding_store.get(conn, page.scope, pk)
    return await setting_page(
        page, "mailbox_forwarding.html", _form_of(row),
        lambda: _save(page, page.admin.actor, page.scope, pk),
        page._("The forwarding of %(email)s was saved.") % {"email": mailbox["email"]},
        page.url("mailbox_forwarding", pk=pk), forwarding=row, mailbox=mailbox)


async def domain_selfservice(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.read() as conn:
        row = await selfservice.get(conn, page.scope, pk)
    form = Form(values={name: row[name] for name in selfservice.DEFAULTS})
    if page.request.method == "GET":
        return page.render("domain_selfservice.html", form=form, domain=row)
    values = {name: page.form_data.checked(name) for name in selfservice.DEFAULTS}
    async with page.store.write() as conn:
        await selfservice.put(conn, page.admin.actor, page.scope, pk, values)
    page.flash("success", page._("The self-service settings of %(name)s were saved.")
               % {"name": row["name"]})
    return page.redirect(page.url("domain_selfservice", pk=pk))
