"""`DELETE /api/mailbox/<id>/twofactor/`: an admin removes a mailbox owner's authenticator app
(the second step of the owner's `/me/` login) and its recovery codes, when the owner has lost
them; the owner then logs in to the self-service pages with the mailbox's password alone. It is
what the mailbox page's button does, with the same rule (`dinomail.store.ownerlogin.remove_totp`):
another domain's mailbox is "not found", like one that does not exist; audited when an app was
in effect."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adminapi.api.auth import require_write
from adminapi.api.openapi import ID_PARAMETER, KEY_SECURITY, error_responses
from adminapi.api.resource import object_call
from dinomail.store import ownerlogin

BASE = "/api/mailbox/{pk:int}/"
PATH_SUFFIX = "twofactor/"


async def remove_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    require_write(caller)
    async with request.app.state.store.write() as conn:
        await ownerlogin.remove_totp(conn, caller.actor, caller.scope, pk)
    return Response(status_code=204)


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods)."""
    return [(f"{BASE}{PATH_SUFFIX}", remove_endpoint, ["DELETE"])]


def openapi_paths() -> dict[str, Any]:
    responses = {"204": {"description": "Removed (also when the mailbox had none)."}}
    responses |= error_responses((400, 401, 403, 404, 503))
    return {
        f"/api/mailbox/{{id}}/{PATH_SUFFIX}": {
            "parameters": [ID_PARAMETER],
            "delete": {
                "operationId": "mailbox_twofactor_remove",
                "tags": ["Mailboxes"],
                "summary": "Remove a mailbox owner's authenticator app and its recovery codes",
                "description": "Removes the authenticator app (TOTP) the mailbox's owner set up "
                "for the self-service pages (`/me/`), enrolled or half-enrolled, with its "
                "recovery codes: the owner then "
                "logs in there with the mailbox's password alone, and may set up a new app. "
                "Mail clients are not concerned (they never ask for a code). Audited as "
                "`remove_totp` when an app was in effect. A domain admin reaches only their "
                "domains' mailboxes (404 otherwise); read-only admins and keys get 403. No "
                "body.",
                "security": KEY_SECURITY, "responses": responses,
            },
        },
    }
