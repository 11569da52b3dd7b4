"""A mailbox owner's vacation reply (`/me/vacation/`) and app passwords (`/me/app-passwords/`).

Both call the store with the owner's own mailbox only, through the forms shared with the
admin's pages (`adminapi.pages.extras_forms`). An app password's secret is shown once, in the
answer to its creation, never stored in clear nor in the session.
"""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages import extras_forms
from adminapi.pages.forms import Form
from adminapi.pages.ownersession import OwnerPage
from dinomail.store import apppasswords, vacation


async def me_vacation(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.read() as conn:
        row = await vacation.get(conn, me.scope, me.mailbox_id)
    return await extras_forms.setting_page(
        page, "me_vacation.html", extras_forms.vacation_form(row),
        lambda: extras_forms.save_vacation(page, me.actor, me.scope, me.mailbox_id),
        page._("Your vacation reply was saved."), page.url("me_vacation"),
        saved=row is not None)


async def me_vacation_delete(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.write() as conn:
        await vacation.delete(conn, me.actor, me.scope, me.mailbox_id)
    page.flash("success", page._("Your vacation reply was removed."))
    return page.redirect(page.url("me_vacation"))


async def _app_passwords_page(page: OwnerPage, form: Form, *, status: int = 200,
                              created: extras_forms.Created | None = None) -> Response:
    me = page.me
    context = await extras_forms.app_passwords_context(
        page, me.scope, me.mailbox_id, form, created, create_url=page.url("me_app_passwords"),
        revoke_url=lambda app_id: page.url("me_app_password_revoke", pk=app_id))
    return page.render("me_app_passwords.html", status=status, **context)


async def me_app_passwords(page: OwnerPage) -> Response:
    if page.request.method == "GET":
        return await _app_passwords_page(page, extras_forms.new_app_password_form())
    me = page.me
    form, created = await extras_forms.create_app_password(page, me.actor, me.scope,
                                                           me.mailbox_id)
    return await _app_passwords_page(page, form, created=created,
                                     status=400 if created is None else 200)


async def me_app_password_revoke(page: OwnerPage) -> Response:
    me = page.me
    async with page.store.write() as conn:
        await apppasswords.revoke(conn, me.actor, me.scope, me.mailbox_id, page.path_id())
    page.flash("warning", page._("The app password was revoked."))
    return page.redirect(page.url("me_app_passwords"))
