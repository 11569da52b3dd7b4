"""A mailbox's forwarding and a domain's self-service switches in the API.

`/api/mailbox/<id>/forwarding/`: GET shows where the mailbox's mail is forwarded
(`destinations`, `keep_copy`, and whether its domain allows `external` destinations); PUT
replaces it (an empty list turns forwarding off). `/api/virtualdomain/<id>/self-service/`: GET
shows the domain's switches; PUT or PATCH changes them. Both for the admins of the domain, with
the same store functions as the pages (`dinomail.store.forwarding`, `.selfservice`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import require_write
from adminapi.api.body import read_json_object
from adminapi.api.openapi import ID_PARAMETER, KEY_SECURITY, error_responses
from adminapi.api.resource import object_call
from adminapi.api.serialize import resource_uri
from dinomail.store import Store, selfservice
from dinomail.store import forwarding as forwarding_store
from dinomail.store.common import Row

TAG = "Forwarding and self-service"
FORWARDING_PATH = "/api/mailbox/{pk:int}/forwarding/"
SELF_SERVICE_PATH = "/api/virtualdomain/{pk:int}/self-service/"


def _forwarding_body(row: Row) -> dict[str, Any]:
    return {
        "mailbox": resource_uri("virtualuser", row["mailbox_id"]),
        "email": row["email"],
        "destinations": row["destinations"],
        "keep_copy": row["keep_copy"],
        "external_allowed": row["external_allowed"],
    }


def _switches_body(row: Row) -> dict[str, Any]:
    return {"domain": resource_uri("virtualdomain", row["domain_id"]), "name": row["name"],
            **{name: row[name] for name in selfservice.DEFAULTS}}


async def forwarding_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    store: Store = request.app.state.store
    if request.method == "GET":
        async with store.read() as conn:
            return JSONResponse(_forwarding_body(
                await forwarding_store.get(conn, caller.scope, pk)))
    require_write(caller)
    data = await read_json_object(request)
    async with store.write() as conn:
        row = await forwarding_store.put(
            conn, caller.actor, caller.scope, pk, data,
            max_destinations=request.app.state.settings.FORWARDING_MAX_DESTINATIONS,
        )
    return JSONResponse(_forwarding_body(row))


async def self_service_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    store: Store = request.app.state.store
    if request.method == "GET":
        async with store.read() as conn:
            return JSONResponse(_switches_body(await selfservice.get(conn, caller.scope, pk)))
    require_write(caller)
    data = await read_json_object(request)
    async with store.write() as conn:
        row = await selfservice.put(conn, caller.actor, caller.scope, pk, data)
    return JSONResponse(_switches_body(row))


def routes() -> list[tuple[str, Any, list[str]]]:
    return [
        (FORWARDING_PATH, forwarding_endpoint, ["GET", "PUT"]),
        (SELF_SERVICE_PATH, self_service_endpoint, ["GET", "PUT", "PATCH"]),
    ]


def openapi_paths() -> dict[str, Any]:
    def operation(operation_id: str, summary: str, success: dict[str, Any],
                  errors: list[int], **extra: Any) -> dict[str, Any]:
        return {"operationId": operation_id, "summary": summary, "tags": [TAG],
                "security": KEY_SECURITY, "responses": {**success, **error_responses(errors)},
                **extra}

    def json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"200": {"description": description,
                        "content": {"application/json": {"schema": schema}}}}

    forwarding_properties: dict[str, Any] = {
        "mailbox": {"type": "string", "readOnly": True},
        "email": {"type": "string", "readOnly": True},
        "destinations": {"type": "array", "items": {"type": "string"},
                         "description": "Where the mail goes; empty: not forwarded. At "
                         "most FORWARDING_MAX_DESTINATIONS addresses, never the mailbox "
                         "itself."},
        "keep_copy": {"type": "boolean",
                      "description": "The mailbox keeps a copy of forwarded mail."},
        "external_allowed": {"type": "boolean", "readOnly": True,
                             "description": "Whether the domain allows destinations "
                             "outside the domains this server hosts."},
    }
    forwarding = {"type": "object", "properties": forwarding_properties}
    forwarding_input = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["destinations"], "additionalProperties": False,
        "properties": {name: forwarding_properties[name]
                       for name in ("destinations", "keep_copy")},
    }}}}
    switches_properties: dict[str, Any] = {
        "domain": {"type": "string", "readOnly": True},
        "name": {"type": "string", "readOnly": True},
        "self_service": {"type": "boolean", "description": "The domain's mailbox owners "
                         "may log in to the self-service pages (/me/)."},
        "external_forwarding": {"type": "boolean", "description": "Forwarding may send "
                                "the domain's mail outside the domains this server hosts."},
    }
    switches = {"type": "object", "properties": switches_properties}
    switches_input = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False,
        "properties": {name: switches_properties[name] for name in selfservice.DEFAULTS},
    }}}}
    read_errors = [400, 401, 404, 503]
    write_errors = [400, 401, 403, 404, 413, 503]
    return {
        "/api/mailbox/{id}/forwarding/": {
            "parameters": [ID_PARAMETER],
            "get": operation("forwarding_read", "Read a mailbox's forwarding",
                             json("The forwarding.", forwarding), read_errors),
            "put": operation("forwarding_replace", "Replace a mailbox's forwarding",
                             json("The forwarding.", forwarding), write_errors,
                             requestBody=forwarding_input),
        },
        "/api/virtualdomain/{id}/self-service/": {
            "parameters": [ID_PARAMETER],
            "get": operation("selfservice_read", "Read a domain's self-service switches",
                             json("The switches.", switches), read_errors),
            "put": operation("selfservice_replace", "Change a domain's self-service switches",
                             json("The switches.", switches), write_errors,
                             requestBody=switches_input),
            "patch": operation("selfservice_update", "Change a domain's self-service switches",
                               json("The switches.", switches), write_errors,
                               requestBody=switches_input),
        },
    }
