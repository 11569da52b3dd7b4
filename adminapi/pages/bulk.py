"""Bulk creation of mailboxes or aliases from CSV lines pasted into a form (`import-csv` of the
command line, with the caller's scope): all lines or none; generated passwords are the answer,
as a CSV file to download, shown this once."""

from __future__ import annotations

import csv
import io

from starlette.responses import Response

from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail.transfer.csvimport import COLUMNS, KINDS, CsvRefused, import_csv

RESULT_FILE = "dinomail-passwords.csv"


def _form_page(page: Page, form: Form, problems: list[str], *, status: int = 200) -> Response:
    return page.render("bulk_import.html", status=status, form=form, problems=problems,
                       columns=COLUMNS)


async def bulk_import(page: Page) -> Response:
    _ = page._
    form = Form(values={"kind": "mailboxes", "lines": "", "dry_run": False})
    if page.request.method == "GET":
        return _form_page(page, form, [])
    data = page.form_data
    form.values.update(kind=data.text("kind"), lines=data.get("lines"),
                       dry_run=data.checked("dry_run"))
    kind = form.values["kind"]
    if kind not in KINDS:
        form.add_error("kind", _("Choose mailboxes or aliases."))
    if not form.values["lines"].strip():
        form.add_error("lines", _("This field is required."))
    if not form.valid:
        return _form_page(page, form, [], status=400)
    try:
        result = await import_csv(
            page.store, kind, form.values["lines"], scheme=page.settings.DINOMAIL_PASSWORD_SCHEME,
            min_password_length=page.settings.MAILBOX_PASSWORD_MIN_LENGTH,
            dry_run=form.values["dry_run"], actor=page.admin.actor, scope=page.scope,
        )
    except CsvRefused as error:
        form.error = _("Nothing was created: correct these lines and send them again.")
        return _form_page(page, form, error.errors, status=400)
    if form.values["dry_run"]:
        page.flash("info", _("Every line is correct: %(count)d would be created. Nothing was "
                             "created (dry run).") % {"count": result.created})
        form.values["dry_run"] = False
        return _form_page(page, form, [])
    page.flash("success", _("%(count)d created.") % {"count": result.created})
    if not result.generated:
        return page.redirect(page.url("mailbox_list" if kind == "mailboxes" else "alias_list"))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("email", "password"))
    writer.writerows(result.generated)
    return Response(text.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{RESULT_FILE}"'})
