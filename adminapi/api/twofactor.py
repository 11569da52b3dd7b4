"""`DELETE /api/admin/<id>/twofactor/`: a superadmin removes another admin's second factors
(their authenticator app, passkeys and recovery codes), when they have lost them. Audited; the
admin's page sessions end. The rule is `dinomail.store.twofactor.remove_all`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adminapi.api.auth import require_write
from adminapi.api.openapi import ID_PARAMETER, KEY_SECURITY, error_responses
from adminapi.api.resource import object_call
from adminapi.api.serialize import list_uri
from dinomail.store import twofactor

PATH_SUFFIX = "twofactor/"


async def remove_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    require_write(caller)
    async with request.app.state.store.write() as conn:
        # A domain admin is answered "not found", as for every admin they cannot see.
        await twofactor.remove_all(conn, caller.actor, caller.scope, pk)
    return Response(status_code=204)


def routes() -> list[tuple[str, Any, list[str]]]:
    return [(f"{list_uri('admin')}{{pk:int}}/{PATH_SUFFIX}", remove_endpoint, ["DELETE"])]


def openapi_paths() -> dict[str, Any]:
    responses = {"204": {"description": "Removed (also when the admin had none)."}}
    responses |= error_responses((400, 401, 403, 404, 503))
    return {
        f"{list_uri('admin')}{{id}}/{PATH_SUFFIX}": {
            "parameters": [ID_PARAMETER],
            "delete": {
                "operationId": "admin_twofactor_remove", "tags": ["Admins"],
                "summary": "Remove an admin's second factors",
                "description": "Superadmins only (anyone else gets 404); audited as "
                "`remove_two_factor`. Removes the admin's authenticator app (TOTP), passkeys "
                "and recovery codes and ends their page sessions: they log in with their "
                "password alone until they set up new factors (or are led to, when "
                "TWO_FACTOR_REQUIRED applies to them). No body.",
                "security": KEY_SECURITY, "responses": responses,
            },
        },
    }
