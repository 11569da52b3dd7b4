"""What an enrolment page shows of a new authenticator app: its QR code, drawn here (the secret
never goes to a QR code service), and its secret grouped for typing by hand. Shared by the
admins' (`adminapi.pages.twofactor`) and the mailbox owners' (`adminapi.pages.owner_twofactor`)
pages, with the template `_totp_qr.html`."""

from __future__ import annotations

import segno

from dinomail import totp


def enrolment(secret: str, account: str, issuer: str) -> dict[str, str]:
    """The template's `qr` (an SVG data URI) and `secret` (in groups of four)."""
    uri = totp.provisioning_uri(secret, account, issuer)
    return {"qr": segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
            "secret": totp.grouped(secret)}
