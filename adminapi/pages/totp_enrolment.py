"""Enrolling an authenticator app: what the page shows of it (its QR code, drawn here so the
secret never goes to a QR code service, and its secret grouped for typing by hand) and the
check of the first code as typed, before the store's. Shared by the admins'
(`adminapi.pages.twofactor`) and the mailbox owners' (`adminapi.pages.owner_twofactor`) pages,
with the template `_totp_qr.html`."""

from __future__ import annotations

import segno

from adminapi.pages.web import Page
from dinomail import totp


def enrolment(secret: str, account: str, issuer: str) -> dict[str, str]:
    """The template's `qr` (an SVG data URI) and `secret` (in groups of four)."""
    uri = totp.provisioning_uri(secret, account, issuer)
    return {"qr": segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
            "secret": totp.grouped(secret)}


def first_code_error(page: Page, code: str) -> str | None:
    """What is wrong with the first code as typed (missing, not 6 digits), or None."""
    if not code:
        return page._("This field is required.")
    if totp.normalize_code(code) is None:
        return page._("Type the 6 digits your app shows.")
    return None
