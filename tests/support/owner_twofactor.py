"""Driving a mailbox owner's two-factor login on the `/me/` pages in tests: enrolling an
authenticator app (codes computed with pyotp) and reading the recovery codes shown once."""

from __future__ import annotations

import re
import time

import httpx
import pyotp
import sqlalchemy as sa

from dinomail import schema
from dinomail.store import Store
from tests.support.selfservice import Owner, csrf_token, try_owner_login

SECRET = re.compile(r'<code id="totp-secret"[^>]*>([A-Z2-7 ]+)</code>')
RECOVERY_CODE = re.compile(r"<li><code>([a-z2-7]{5}-[a-z2-7]{5})</code></li>")


def field_error(html: str, field: str) -> str:
    match = re.search(rf'id="error-{field}">.*?</p>', html, re.S)
    assert match, f"no error under {field}"
    return match.group(0)


def recovery_codes(html: str) -> list[str]:
    """The recovery codes a page shows (`_recovery_codes.html`)."""
    return RECOVERY_CODE.findall(html)


async def enrol_with_codes(owner: Owner, *, french: bool = False
                           ) -> tuple[pyotp.TOTP, list[str]]:
    """Enrol an app on `/me/two-factor` (a wrong and a malformed first code refused first);
    the app and the ten recovery codes shown with its confirmation."""
    page = await owner.client.get("/me/two-factor")
    assert page.status_code == 200 and 'src="data:image/svg+xml' in page.text
    secret = SECRET.search(page.text)
    assert secret, page.text
    app = pyotp.TOTP(secret.group(1).replace(" ", ""))
    # A wrong first code changes nothing.
    wrong = str((int(app.now()) + 1) % 1_000_000).zfill(6)
    answer = await owner.post("/me/two-factor", {"code": wrong})
    assert answer.status_code == 400
    assert ("Ce code est faux ou expiré." if french else "This code is wrong or expired."
            ) in field_error(answer.text, "code")
    answer = await owner.post("/me/two-factor", {"code": "12ab"})
    assert ("Tapez les 6 chiffres" if french else "Type the 6 digits your app shows."
            ) in field_error(answer.text, "code")
    answer = await owner.post("/me/two-factor", {"code": app.now()})
    assert answer.status_code == 200
    codes = recovery_codes(answer.text)
    assert len(codes) == 10 and len(set(codes)) == 10, answer.text
    page = await owner.client.get("/me/two-factor")
    assert 'id="totp-status"' in page.text
    # Shown once: the page of the app tells how many are left, never the codes.
    assert recovery_codes(page.text) == [] and not any(code in page.text for code in codes)
    return app, codes


async def enrol(owner: Owner, *, french: bool = False) -> pyotp.TOTP:
    return (await enrol_with_codes(owner, french=french))[0]


def later_code(app: pyotp.TOTP) -> str:
    """The next step's code: within the window, and later than the step enrolment used."""
    return app.at(time.time() + 30)


async def audit_actions(store: Store) -> list[tuple[str, str, str]]:
    async with store.read() as conn:
        rows = await conn.execute(sa.select(
            schema.auditlog.c.actor, schema.auditlog.c.action, schema.auditlog.c.object_repr,
        ).order_by(schema.auditlog.c.id))
        return [(row.actor, row.action, row.object_repr) for row in rows]


async def password_then(client: httpx.AsyncClient, email: str = "bob@b.org") -> str:
    """Give the password; the second step's CSRF token."""
    answer = await try_owner_login(client, email)
    assert (answer.status_code, answer.headers["location"]) == (303, "/me/login/code")
    # Half logged in: nothing is open but the second step.
    home = await client.get("/me/")
    assert home.status_code == 303 and home.headers["location"] == "/me/login"
    return csrf_token(await client.get("/me/login/code"))
