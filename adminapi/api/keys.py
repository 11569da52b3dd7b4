"""`/api/apikey/`: the original's way to obtain a key with a password, and key management.

The original stored each admin's one key in clear and returned it on every
`GET /api/apikey/` with Basic credentials; its Android client (and scripts written the same way)
log in like that and keep `objects[0].key`. DinoMail stores only a hash of each key, so the key
such a GET returns is derived again from SECRET_KEY (see `dinomail.store.apikeys.login_key`):
the same key at every call, in full, as `objects[0]`; the caller's other keys follow with their
prefix only. Revoking it (`DELETE /api/apikey/<id>/`) regenerates it: the next GET returns a
new key, and the old one no longer works.

The rest is new: `POST /api/apikey/` (Basic credentials: a key cannot mint keys) makes a named,
optionally read-only key; `DELETE /api/apikey/<id>/` revokes one. Everyone sees only their own
keys, whatever their rights: another admin's key is a 404 (the original let anyone read any key).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import Caller, authenticate, require_write
from adminapi.api.body import read_json_object
from adminapi.api.errors import ApiError, forbidden
from adminapi.api.paging import (
    ListOptions,
    ListQuery,
    check_parameters,
    list_body,
    parse_list_query,
)
from adminapi.api.resource import (
    DATETIME,
    OPTIONAL_DATETIME,
    Field,
    Resource,
    id_field,
    input_data,
    object_id,
)
from dinomail.store import apikeys
from dinomail.store.common import Row, Window

LOGIN_KEY_NAME = apikeys.LOGIN_KEY_NAME
# Shown in place of a secret that was given once and is not stored.
HIDDEN = "..."


def _shown_key(row: Row) -> str:
    return row["secret"] if row.get("secret") else f"{row['prefix']}{HIDDEN}"


async def _list_keys(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
    return await apikeys.list_window(
        conn, caller.admin_id, limit=query.limit, offset=query.offset, after=query.after
    )


async def _create_key(conn: AsyncConnection, caller: Caller, data: dict[str, Any]) -> Row:
    row, secret = await apikeys.create(
        conn, caller.actor, caller.admin_id, name=data.get("name", ""),
        read_only=data.get("read_only", False),
    )
    return {**row, "secret": secret}


async def _revoke_key(conn: AsyncConnection, caller: Caller, pk: int) -> Row:
    return await apikeys.revoke(conn, caller.actor, caller.admin_id, pk)


apikey = Resource(
    name="apikey",
    title="API keys",
    description="Your own API keys. `GET` with Basic credentials returns your login key in "
    "full as objects[0], the same key at every call until it is revoked (the original API's "
    "way to log in); `POST` with Basic credentials makes a named key, whose secret is shown "
    "once, in the answer that made it. Basic credentials of an admin with two-factor login "
    "are refused (403, code `two_factor_required`): a password alone gets them no key.",
    basic_auth=True,
    fields=(
        id_field(),
        Field("key", {"type": "string"},
              "The key: in full only in the answer that made it; afterwards its prefix and "
              "'...'.", read_only=True, from_row=_shown_key),
        Field("prefix", {"type": "string"}, "The key's first characters, to tell keys apart.",
              read_only=True),
        Field("name", {"type": "string", "maxLength": 100}, "What the key is for."),
        Field("read_only", {"type": "boolean"}, "A read-only key can read but not change."),
        Field("created", DATETIME, "When the key was made (the original's name).",
              read_only=True, from_row=lambda row: row["created_at"]),
        Field("last_used_at", OPTIONAL_DATETIME, "Last use, to the minute.", read_only=True),
        Field("revoked_at", OPTIONAL_DATETIME, "When the key was revoked, if it was.",
              read_only=True),
    ),
    list_options=ListOptions(orderable=("id",), keyset=("id",), default_order="-id"),
    read_list=_list_keys,
    read_one=lambda conn, caller, pk: apikeys.get(conn, caller.admin_id, pk),
    create=_create_key,
    delete=_revoke_key,
    notes={
        "GET list": "With Basic credentials, returns the login key in full as objects[0] (made "
        "at the first call), the same at every call until it is revoked. Refused (403, code "
        "`two_factor_required`) for an admin with two-factor login.",
        "POST": "Needs Basic credentials: a key cannot make keys.",
        "DELETE": "Revokes the key; it stays listed with its revoked_at. Revoking the login key "
        "regenerates it: the next GET with Basic credentials returns a new one.",
    },
)


def _secret_key(request: Request) -> str:
    secret_key: str = request.app.state.settings.SECRET_KEY
    if not secret_key:
        # `dinomail serve` and `dinomail adminapi` always set one; only a hand-made app lacks it.
        raise ApiError(503, "SECRET_KEY is not set, so no login key can be given",
                       code="unavailable")
    return secret_key


async def _login_key(request: Request, caller: Caller) -> Row:
    async with request.app.state.store.write() as conn:
        row, secret = await apikeys.login_key(
            conn, caller.actor, caller.account, _secret_key(request)
        )
    return {**row, "secret": secret}


async def apikey_list(request: Request) -> Response:
    if request.method == "POST":
        return await _post(request)
    caller = await authenticate(request, allow_basic=True)
    query = parse_list_query(
        request, request.app.state.settings, apikey.list_options, fields=apikey.field_names
    )
    login = None
    # The original's clients read their key from objects[0] of the first page.
    if caller.key is None and query.offset == 0 and not query.after:
        login = await _login_key(request, caller)
    async with request.app.state.store.read() as conn:
        window = await _list_keys(conn, caller, query)
    rows = window.rows
    if login is not None:
        rows = [login, *(row for row in rows if row["id"] != login["id"])][: query.limit]
    objects = [apikey.to_object(row) for row in rows]
    return JSONResponse(
        list_body(request, apikey.name, query, window, objects, apikey.list_options)
    )


async def _post(request: Request) -> Response:
    check_parameters(request, ())
    caller = await authenticate(request, allow_basic=True)
    if caller.key is not None:
        raise forbidden("making a key needs your password: send Basic credentials")
    data = input_data(apikey, await read_json_object(request), "create")
    async with request.app.state.store.write() as conn:
        row = await _create_key(conn, caller, data)
    shown = apikey.to_object(row)
    return JSONResponse(shown, status_code=201, headers={"Location": shown["resource_uri"]})


async def apikey_detail(request: Request) -> Response:
    check_parameters(request, ())
    pk = object_id(request)
    caller = await authenticate(request, allow_basic=True)
    store = request.app.state.store
    if request.method == "DELETE":
        require_write(caller)
        async with store.write() as conn:
            await _revoke_key(conn, caller, pk)
        return Response(status_code=204)
    async with store.read() as conn:
        row = await apikeys.get(conn, caller.admin_id, pk)
    return JSONResponse(apikey.to_object(row))
