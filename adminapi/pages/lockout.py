"""The pages' side of the login limiter (`adminapi.loginlimit`): whether an account may try a
password or a code again from this client, and the message and `Retry-After` header saying
when. Every place that checks a secret (logins, second steps, a current password asked again)
asks here first, so a stolen session or a known password buys no more guesses."""

from __future__ import annotations

from math import ceil

from starlette.responses import Response

from adminapi.loginlimit import client_address
from adminapi.pages.forms import Form
from adminapi.pages.web import Page


def locked_out(page: Page, account: str, form: Form, *, field: str | None = None) -> float:
    """Seconds before `account` may try again from this client (0: now); when not now, the
    form says so (under `field`, or above the form)."""
    wait = page.state.limiter.retry_after(account, client_address(page.request))
    if wait > 0:
        minutes = ceil(wait / 60)
        message = page.ngettext(
            "Too many failed logins. Try again in %(num)d minute.",
            "Too many failed logins. Try again in %(num)d minutes.", minutes,
        ) % {"num": minutes}
        if field is None:
            form.error = message
        else:
            form.add_error(field, message)
    return wait


def retry_after(response: Response, wait: float) -> Response:
    """`response` (a 429) with the seconds to wait in its `Retry-After` header."""
    response.headers["Retry-After"] = str(ceil(wait))
    return response


def failed(page: Page, account: str) -> None:
    """Count a wrong password or code of `account` from this client."""
    page.state.limiter.failed(account, client_address(page.request))
