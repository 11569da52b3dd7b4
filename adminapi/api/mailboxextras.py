"""A mailbox's vacation reply and app passwords in the API, under `/api/mailbox/<id>/`.

- `vacation/`: GET shows the settings (the defaults and `updated_at: null` when none were ever
  set); PUT sets them (fields left out keep their value); DELETE removes them.
- `apppassword/`: GET lists the app passwords (never their secret nor hash); POST makes one
  from `name` and `protocols` and answers its secret, once; `apppassword/<pw_id>/`: DELETE
  revokes it.

The rules are the store's (`dinomail.store.vacation`, `dinomail.store.apppasswords`): a domain
admin reaches only their domains' mailboxes, and another domain's mailbox is "not found";
writes need a key that is not read-only, and are audited.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import authenticate, require_write
from adminapi.api.body import read_json_object
from adminapi.api.errors import invalid, not_found
from adminapi.api.openapi import ID_PARAMETER, KEY_SECURITY, error_responses
from adminapi.api.paging import check_parameters
from adminapi.api.resource import object_call, object_id
from adminapi.api.serialize import MAX_ID, resource_uri
from dinomail.dnscheck.model import iso_time
from dinomail.store import Store, apppasswords, mailboxes, vacation
from dinomail.store.common import Row

TAG = "Vacation replies and app passwords"
BASE = "/api/mailbox/{pk:int}/"
APP_PASSWORD_FIELDS = ("name", "protocols")


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _vacation_body(mailbox_id: int, row: Row | None) -> dict[str, Any]:
    values = vacation.DEFAULTS if row is None else row
    return {
        "mailbox": resource_uri("virtualuser", mailbox_id),
        "enabled": values["enabled"],
        "subject": values["subject"],
        "body": values["body"],
        "starts": _day(values["starts"]),
        "ends": _day(values["ends"]),
        "interval_days": values["interval_days"],
        "updated_at": None if row is None else iso_time(row["updated_at"]),
    }


def _app_password_body(mailbox_id: int, row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "protocols": row["protocols"],
        "created": iso_time(row["created"]),
        "last_used": iso_time(row["last_used"]),
        "resource_uri": f"/api/mailbox/{mailbox_id}/apppassword/{row['id']}/",
    }


async def vacation_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    store: Store = request.app.state.store
    if request.method == "GET":
        async with store.read() as conn:
            return JSONResponse(_vacation_body(pk, await vacation.get(conn, caller.scope, pk)))
    require_write(caller)
    if request.method == "DELETE":
        async with store.write() as conn:
            await vacation.delete(conn, caller.actor, caller.scope, pk)
        return Response(status_code=204)
    data = await read_json_object(request)
    data.pop("mailbox", None)  # read-only fields sent back as they were read
    data.pop("updated_at", None)
    async with store.write() as conn:
        row = await vacation.put(conn, caller.actor, caller.scope, pk, data)
    return JSONResponse(_vacation_body(pk, row))


async def app_password_list_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    store: Store = request.app.state.store
    if request.method == "GET":
        async with store.read() as conn:
            rows = await apppasswords.list_for(conn, caller.scope, pk)
        return JSONResponse({"objects": [_app_password_body(pk, row) for row in rows]})
    require_write(caller)
    data = await read_json_object(request)
    for name in data:
        if name not in APP_PASSWORD_FIELDS:
            raise invalid(name, "is not a field of an app password (name, protocols)")
    async with store.read() as conn:
        await mailboxes.get(conn, caller.scope, pk)  # "not found" before any hashing
    if not isinstance(data.get("name"), str):
        raise invalid("name", "is required, as text")
    secret = apppasswords.new_secret()
    password_hash = await apppasswords.hash_secret(
        secret, request.app.state.settings.DINOMAIL_PASSWORD_SCHEME
    )
    async with store.write() as conn:
        row = await apppasswords.create(
            conn, caller.actor, caller.scope, pk, name=data["name"],
            protocols=data.get("protocols"),  # type: ignore[arg-type]  # checked by the store
            password_hash=password_hash,
        )
    # The only time the secret is shown: it is stored hashed.
    return JSONResponse({**_app_password_body(pk, row), "password": secret}, status_code=201,
                        headers={"Cache-Control": "no-store"})


async def app_password_detail_endpoint(request: Request) -> Response:
    check_parameters(request, ())
    pk = object_id(request)
    app_password_id = request.path_params["pw_id"]
    if not 0 < app_password_id <= MAX_ID:
        raise not_found("app password")
    caller = await authenticate(request)
    require_write(caller)
    store: Store = request.app.state.store
    async with store.write() as conn:
        await apppasswords.revoke(conn, caller.actor, caller.scope, pk, app_password_id)
    return Response(status_code=204)


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods)."""
    return [
        (f"{BASE}vacation/", vacation_endpoint, ["GET", "PUT", "DELETE"]),
        (f"{BASE}apppassword/", app_password_list_endpoint, ["GET", "POST"]),
        (f"{BASE}apppassword/{{pw_id:int}}/", app_password_detail_endpoint, ["DELETE"]),
    ]


# --- the OpenAPI document -------------------------------------------------------------------------

_DAY = {"type": ["string", "null"], "format": "date",
        "description": "A day, YYYY-MM-DD (the server's time zone); null: no bound."}
VACATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "mailbox": {"type": "string", "readOnly": True, "description": "The mailbox's URI."},
        "enabled": {"type": "boolean", "description": "Whether replies are sent."},
        "subject": {"type": "string", "maxLength": vacation.MAX_SUBJECT_LENGTH,
                    "description": "The replies' subject; empty: \"Auto: \" and the subject "
                    "of the message answered."},
        "body": {"type": "string", "maxLength": vacation.MAX_BODY_LENGTH,
                 "description": "The replies' text; required to enable them."},
        "starts": {**_DAY, "description": "The first day replies are sent; null: at once."},
        "ends": {**_DAY, "description": "The last day replies are sent; null: until disabled."},
        "interval_days": {"type": "integer", "minimum": vacation.MIN_INTERVAL_DAYS,
                          "maximum": vacation.MAX_INTERVAL_DAYS,
                          "description": "At most one reply per sender in this many days."},
        "updated_at": {"type": ["string", "null"], "format": "date-time", "readOnly": True},
    },
}
APP_PASSWORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "readOnly": True},
        "name": {"type": "string", "maxLength": apppasswords.MAX_NAME_LENGTH,
                 "description": "Unique per mailbox, e.g. the device it is for."},
        "protocols": {"type": "array", "minItems": 1,
                      "items": {"type": "string", "enum": list(apppasswords.PROTOCOLS)},
                      "description": "What it opens: imap, pop3, smtp (submission), sieve "
                      "(ManageSieve)."},
        "created": {"type": "string", "format": "date-time", "readOnly": True},
        "last_used": {"type": ["string", "null"], "format": "date-time", "readOnly": True,
                      "description": "Its last successful login (written every "
                      "APP_PASSWORD_FLUSH_INTERVAL seconds)."},
        "resource_uri": {"type": "string", "readOnly": True},
    },
}


def openapi_paths() -> dict[str, Any]:
    def json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def operation(operation_id: str, summary: str, description: str,
                  success: dict[str, Any], errors: list[int], **extra: Any) -> dict[str, Any]:
        return {"operationId": operation_id, "summary": summary, "description": description,
                "tags": [TAG], "security": KEY_SECURITY,
                "responses": {**success, **error_responses(errors)}, **extra}

    writes = [400, 401, 403, 404, 413, 503]
    # What GET shows may be sent back whole, read-only fields included (they are ignored).
    vacation_input = {"type": "object", "additionalProperties": False, "properties": {
        key: value for key, value in VACATION_SCHEMA["properties"].items()
        if not value.get("readOnly")
    }}
    created = {**APP_PASSWORD_SCHEMA, "properties": {
        **APP_PASSWORD_SCHEMA["properties"],
        "password": {"type": "string", "description": "The secret: shown this once only."},
    }}
    app_password_input = {
        "type": "object", "required": ["name", "protocols"], "additionalProperties": False,
        "properties": {key: APP_PASSWORD_SCHEMA["properties"][key] for key in APP_PASSWORD_FIELDS},
    }
    pw_parameter = {"name": "pw_id", "in": "path", "required": True,
                    "schema": {"type": "integer", "minimum": 1}}
    return {
        "/api/mailbox/{id}/vacation/": {
            "parameters": [ID_PARAMETER],
            "get": operation(
                "vacation_read", "Read a mailbox's vacation reply",
                "The defaults (disabled) and updated_at null when none was ever set.",
                {"200": json("The settings.", VACATION_SCHEMA)}, [400, 401, 404, 503]),
            "put": operation(
                "vacation_set", "Set a mailbox's vacation reply",
                "Fields left out keep their value. Dovecot's Sieve answers with it as soon as "
                "the change reaches the lookup daemon, never to automatic, list or bulk mail. "
                "Audited.",
                {"200": json("The settings.", VACATION_SCHEMA)}, writes,
                requestBody={"required": True, "content": {"application/json": {
                    "schema": vacation_input}}}),
            "delete": operation(
                "vacation_delete", "Remove a mailbox's vacation reply", "Audited.",
                {"204": {"description": "Removed (or there was none)."}}, writes),
        },
        "/api/mailbox/{id}/apppassword/": {
            "parameters": [ID_PARAMETER],
            "get": operation(
                "apppassword_list", "List a mailbox's app passwords",
                "Never their secret or hash.",
                {"200": json("The app passwords.", {"type": "object", "properties": {
                    "objects": {"type": "array", "items": APP_PASSWORD_SCHEMA}}})},
                [400, 401, 404, 503]),
            "post": operation(
                "apppassword_create", "Make an app password",
                f"At most {apppasswords.MAX_PER_MAILBOX} per mailbox (code limit_exceeded). "
                "The answer holds the secret, once; it is stored hashed. Audited.",
                {"201": json("Made; `password` is the secret.", created)}, [*writes, 409],
                requestBody={"required": True, "content": {"application/json": {
                    "schema": app_password_input}}}),
        },
        "/api/mailbox/{id}/apppassword/{pw_id}/": {
            "parameters": [ID_PARAMETER, pw_parameter],
            "delete": operation(
                "apppassword_revoke", "Revoke an app password",
                "Logins with it fail at once. Audited.",
                {"204": {"description": "Revoked."}}, writes),
        },
    }
