"""A domain's MTA-STS policy in the API: `/api/virtualdomain/<id>/mta-sts/`.

GET shows the policy (or `published: false` and the defaults), the served text, its id and
the `_mta-sts` TXT record to publish; PUT or PATCH publishes or changes it (fields not given
keep their value); DELETE stops serving it. A domain admin manages their own domains' policies.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import require_write
from adminapi.api.body import read_json_object
from adminapi.api.openapi import ERROR_MEANINGS, ID_PARAMETER, KEY_SECURITY
from adminapi.api.resource import object_call
from adminapi.api.serialize import resource_uri
from dinomail import mtasts
from dinomail.dnscheck.model import iso_time
from dinomail.store import Store
from dinomail.store import mtasts as mtasts_store
from dinomail.store.common import Row

TAG = "DNS, DKIM and mail clients"


def _body(row: Row) -> dict[str, Any]:
    return {"domain": resource_uri("virtualdomain", row["domain_id"]),
            **{key: value for key, value in row.items() if key != "domain_id"},
            "updated_at": iso_time(row["updated_at"]) if row["updated_at"] else None}


async def mta_sts_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    store: Store = request.app.state.store
    mx_host = request.app.state.settings.MX_HOST
    if request.method == "GET":
        async with store.read() as conn:
            return JSONResponse(_body(await mtasts_store.get(conn, caller.scope, pk, mx_host)))
    require_write(caller)
    if request.method == "DELETE":
        async with store.write() as conn:
            await mtasts_store.delete(conn, caller.actor, caller.scope, pk, mx_host)
        return Response(status_code=204)
    data = await read_json_object(request)
    async with store.write() as conn:
        row = await mtasts_store.save(conn, caller.actor, caller.scope, pk, data, mx_host)
    return JSONResponse(_body(row))


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods) under a domain's URI."""
    return [("mta-sts/", mta_sts_endpoint, ["GET", "PUT", "PATCH", "DELETE"])]


def openapi_paths() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    ok = {"description": "The policy.", "content": {"application/json": {
        "schema": {"type": "object"}}}}
    body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "mode": {"type": "string", "enum": list(mtasts.MODES)},
            "mx": {"type": "array", "items": {"type": "string"},
                   "description": "MX patterns (host or *.domain); empty: the domain's MX "
                   "host (mx_host, else MX_HOST)."},
            "max_age": {"type": "integer", "minimum": 0, "maximum": mtasts.MAX_MAX_AGE},
        },
        "additionalProperties": False,
    }}}}

    def responses(success: dict[str, Any], errors: list[int]) -> dict[str, Any]:
        return {**success, **{str(status): {"description": ERROR_MEANINGS[status], **error}
                               for status in errors}}

    def operation(operation_id: str, summary: str, success: dict[str, Any], errors: list[int],
                  **extra: Any) -> dict[str, Any]:
        return {"operationId": operation_id, "summary": summary, "tags": [TAG],
                "security": KEY_SECURITY, "responses": responses(success, errors), **extra}

    write_errors = [400, 401, 403, 404, 413, 503]
    return {"/api/virtualdomain/{id}/mta-sts/": {
        "parameters": [ID_PARAMETER],
        "get": operation("mtasts_read", "Read a domain's MTA-STS policy, its id and TXT record",
                         {"200": ok}, [400, 401, 404, 503]),
        "put": operation("mtasts_publish", "Publish or change a domain's MTA-STS policy",
                         {"200": ok}, write_errors, requestBody=body),
        "patch": operation("mtasts_update", "Change some fields of a domain's MTA-STS policy",
                           {"200": ok}, write_errors, requestBody=body),
        "delete": operation("mtasts_delete", "Stop serving a domain's MTA-STS policy",
                            {"204": {"description": "No longer served."}}, write_errors),
    }}
