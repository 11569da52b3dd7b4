"""Enrolling an authenticator app: what the page shows of it (its QR code, drawn here so the
secret never goes to a QR code service, and its secret grouped for typing by hand) and the
check of the first code as typed, before the store's. Shared by the admins'
(`adminapi.pages.twofactor`) and the mailbox owners' (`adminapi.pages.owner_twofactor`) pages,
with the template `_totp_qr.html`."""

from __future__ import annotations

import segno

from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail import totp


def enrolment(secret: str, account: str, issuer: str) -> dict[str, str]:
    """The template's `qr` (an SVG data URI) and `secret` (in groups of four)."""
    uri = totp.provisioning_uri(secret, account, issuer)
    return {"qr": segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
            "secret": totp.grouped(secret)}


def posted_first_code(page: Page, form: Form) -> str | None:
    """The first code as typed; None, with the error under the form's `code`, when it is
    missing or not 6 digits."""
    code = page.form_data.text("code")
    if not code:
        form.add_error("code", page._("This field is required."))
        return None
    if totp.normalize_code(code) is None:
        form.add_error("code", page._("Type the 6 digits your app shows."))
        return None
    return code
