"""An admin's pages of a mailbox's vacation reply (`/virtual-users/<id>/vacation`) and app
passwords (`/virtual-users/<id>/app-passwords`), for the mailboxes the admin may see.

The forms are the owner's (`adminapi.pages.extras_forms`); the store checks the scope (a
mailbox of another domain is "not found", as a missing one) and audits as the admin.
Read-only admins are refused every POST before these views run (`adminapi.pages.web`).
"""

from __future__ import annotations

from starlette.responses import Response

from adminapi.pages import extras_forms
from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail.store import apppasswords, mailboxes, vacation


async def mailbox_vacation(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, pk)
        row = await vacation.get(conn, page.scope, pk)
    return await extras_forms.setting_page(
        page, "mailbox_vacation.html", extras_forms.vacation_form(row),
        lambda: extras_forms.save_vacation(page, page.admin.actor, page.scope, pk),
        page._("The vacation reply of %(email)s was saved.") % {"email": mailbox["email"]},
        page.url("mailbox_vacation", pk=pk), saved=row is not None, mailbox=mailbox)


async def mailbox_vacation_delete(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.write() as conn:
        mailbox = await mailboxes.get(conn, page.scope, pk)
        await vacation.delete(conn, page.admin.actor, page.scope, pk)
    page.flash("success", page._("The vacation reply of %(email)s was removed.")
               % {"email": mailbox["email"]})
    return page.redirect(page.url("mailbox_vacation", pk=pk))


async def _app_passwords_page(page: Page, pk: int, form: Form, *, status: int = 200,
                              created: extras_forms.Created | None = None) -> Response:
    async with page.store.read() as conn:
        mailbox = await mailboxes.get(conn, page.scope, pk)
    context = await extras_forms.app_passwords_context(
        page, page.scope, pk, form, created, create_url=page.url("mailbox_app_passwords", pk=pk),
        revoke_url=lambda app_id: page.url("mailbox_app_password_revoke", pk=pk,
                                           app_id=app_id))
    return page.render("mailbox_app_passwords.html", status=status, mailbox=mailbox,
                       **context)


async def mailbox_app_passwords(page: Page) -> Response:
    pk = page.path_id()
    if page.request.method == "GET":
        return await _app_passwords_page(page, pk, extras_forms.new_app_password_form())
    form, created = await extras_forms.create_app_password(page, page.admin.actor,
                                                           page.scope, pk)
    return await _app_passwords_page(page, pk, form, created=created,
                                     status=400 if created is None else 200)


async def mailbox_app_password_revoke(page: Page) -> Response:
    pk = page.path_id()
    async with page.store.write() as conn:
        await apppasswords.revoke(conn, page.admin.actor, page.scope, pk,
                                  page.path_id("app_id"))
    page.flash("warning", page._("The app password was revoked."))
    return page.redirect(page.url("mailbox_app_passwords", pk=pk))
