"""A resource in the original API's style, described once and served by generic endpoints.

A `Resource` lists its fields (each with the JSON Schema of its value and how it maps to the
store) and the store calls behind it. From that one description come the list and detail
endpoints, the input checks and the OpenAPI document, so none of them can say something the
others do not.

Input rules, the same for every resource:
- unknown fields are refused (a misspelt field must not be silently dropped: the original's
  `"paswword"` bug);
- read-only fields (`id`, `resource_uri`, statuses, timestamps, usage) are accepted and ignored,
  so a client may PUT back the body of a GET;
- POST needs the required fields; a field left out of a POST gets its documented default;
- PUT and PATCH change only the fields they name and keep the stored value of every other one,
  as tastypie did (it filled absent fields from the stored object): a client that PUTs back an
  object without `quota` must not make a mailbox unlimited. They differ only in their status
  (PUT 204, PATCH 202). A PUT to an object that does not exist is a 404, never a create.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import Caller, authenticate, require_write
from adminapi.api.body import read_json_object
from adminapi.api.errors import forbidden, invalid, not_found
from adminapi.api.paging import (
    ListOptions,
    ListQuery,
    check_parameters,
    list_body,
    parse_list_query,
)
from adminapi.api.serialize import MAX_ID, list_uri, plain, resource_uri
from adminapi.api.values import check_schema, check_value
from dinomail.settings import Settings
from dinomail.store import NotFound, Store
from dinomail.store.common import Row, Window

Action = Literal["create", "replace", "update"]


@dataclass(frozen=True)
class Field:
    name: str
    schema: Mapping[str, Any]
    description: str
    read_only: bool = False
    write_only: bool = False
    # Needed on POST (`required`, also refused as null or empty by its schema on PUT and
    # PATCH); `required_on_post`: needed on POST only (an admin's password).
    required: bool = False
    required_on_post: bool = False
    # No two objects share the value (shown by the tastypie `schema/`).
    unique: bool = False
    # Accepted only on POST; `create_only` is the message that says where to change it later.
    create_only: str | None = None
    # The key in the store's data and rows, when it differs from `name`.
    column: str | None = None
    # Turns a checked input value into the store's (a URI into an id).
    to_store: Callable[[Any], Any] | None = None
    # Takes the output value from a row, when it is not simply `row[column]`.
    from_row: Callable[[Row], Any] | None = None
    # The schema of the output value, when it is not the input's (a reference is output as a
    # URI only). By default the input schema without its length and pattern limits: rows
    # written by hand (SQLite does not enforce lengths) must not make answers invalid.
    shown_schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_schema(self.schema)

    @property
    def key(self) -> str:
        return self.column or self.name

    @property
    def output_schema(self) -> dict[str, Any]:
        if self.shown_schema is not None:
            return dict(self.shown_schema)
        return _without_limits(self.schema)

    def output(self, row: Row) -> Any:
        return plain(self.from_row(row) if self.from_row else row[self.key])


_OUTPUT_KEYWORDS = ("type", "enum", "format", "items", "anyOf")


def _without_limits(schema: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for keyword in _OUTPUT_KEYWORDS:
        if keyword not in schema:
            continue
        value = schema[keyword]
        if keyword == "items":
            value = _without_limits(value)
        elif keyword == "anyOf":
            value = [_without_limits(option) for option in value]
        kept[keyword] = value
    return kept


DATETIME = {"type": "string", "format": "date-time"}
OPTIONAL_DATETIME = {"type": ["string", "null"], "format": "date-time"}
URI = {"type": "string", "pattern": "^/api/[a-z]+/[0-9]+/$"}


def id_field() -> Field:
    return Field("id", {"type": "integer", "minimum": 1}, "The object's id, as in its URI.",
                 read_only=True)


CreateCall = Callable[[AsyncConnection, Caller, dict[str, Any]], Awaitable[Row]]
UpdateCall = Callable[[AsyncConnection, Caller, int, dict[str, Any]], Awaitable[Row]]
ReadCall = Callable[[AsyncConnection, Caller, int], Awaitable[Row]]
DeleteCall = Callable[[AsyncConnection, Caller, int], Awaitable[Row]]
ListCall = Callable[[AsyncConnection, Caller, ListQuery], Awaitable[Window]]
# Work done before the write transaction opens, such as hashing a password (slow on purpose,
# so not while a domain row is locked).
PrepareCall = Callable[[Settings, Action, dict[str, Any]], Awaitable[dict[str, Any]]]
EnrichCall = Callable[[AsyncConnection, list[Row]], Awaitable[list[Row]]]


@dataclass(frozen=True)
class Resource:
    name: str
    title: str
    description: str
    fields: tuple[Field, ...]
    read_list: ListCall
    read_one: ReadCall
    list_options: ListOptions = field(default_factory=ListOptions)
    create: CreateCall | None = None
    update: UpdateCall | None = None
    delete: DeleteCall | None = None
    prepare: PrepareCall | None = None
    # Adds what the rows of a page need beyond the store's row (usage figures).
    enrich: EnrichCall | None = None
    superadmin_only: bool = False
    # Accepts HTTP Basic credentials besides keys (only /api/apikey/, as in the original).
    basic_auth: bool = False
    # Extra words for the documentation of each method.
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def list_methods(self) -> tuple[str, ...]:
        return ("GET", "POST") if self.create else ("GET",)

    @property
    def detail_methods(self) -> tuple[str, ...]:
        methods = ["GET"]
        if self.update:
            methods += ["PUT", "PATCH"]
        if self.delete:
            methods.append("DELETE")
        return tuple(methods)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    def field_named(self, name: str) -> Field | None:
        return next((spec for spec in self.fields if spec.name == name), None)

    def to_object(self, row: Row) -> dict[str, Any]:
        shown = {spec.name: spec.output(row) for spec in self.fields if not spec.write_only}
        shown["resource_uri"] = resource_uri(self.name, row["id"])
        return shown


def input_data(resource: Resource, body: Mapping[str, Any], action: Action) -> dict[str, Any]:
    """The store's data for `body`: checked and converted; only the fields it names, so an
    update never touches a field the request left out."""
    data: dict[str, Any] = {}
    for name, value in body.items():
        spec = resource.field_named(name)
        if spec is None:
            if name == "resource_uri":
                continue
            raise invalid(name, f"is not a field of {resource.name}")
        if spec.read_only:
            continue
        if spec.create_only and action != "create":
            raise invalid(name, spec.create_only)
        value = check_value(spec.schema, value, name)
        data[spec.key] = spec.to_store(value) if spec.to_store and value is not None else value
    if action != "create":
        return data
    for spec in resource.fields:
        if spec.read_only or spec.key in data:
            continue
        if spec.required or spec.required_on_post:
            raise invalid(spec.name, "is required")
    return data


def object_id(request: Request) -> int:
    value = request.path_params["pk"]
    if not 0 < value <= MAX_ID:
        raise not_found()
    return int(value)


async def object_call(request: Request) -> tuple[int, Caller]:
    """The object id in the path and the authenticated caller of an endpoint on one object that
    takes no query parameters (its own endpoint, outside the generic ones)."""
    check_parameters(request, ())
    pk = object_id(request)
    return pk, await authenticate(request)


def _store(request: Request) -> Store:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _caller(request: Request, resource: Resource, *, writing: bool) -> Caller:
    caller = await authenticate(request)
    if resource.superadmin_only and not caller.is_superadmin:
        raise forbidden(f"only a superadmin may use /api/{resource.name}/")
    if writing:
        require_write(caller)
    return caller


async def _objects(resource: Resource, conn: AsyncConnection, rows: list[Row]) -> list[dict]:
    if resource.enrich:
        rows = await resource.enrich(conn, rows)
    return [resource.to_object(row) for row in rows]


async def _body_and_data(
    request: Request, resource: Resource, action: Action
) -> dict[str, Any]:
    body = await read_json_object(request)
    data = input_data(resource, body, action)
    if resource.prepare:
        data = await resource.prepare(_settings(request), action, data)
    return data


def list_endpoint(resource: Resource) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            return await _create(request, resource)
        caller = await _caller(request, resource, writing=False)
        query = parse_list_query(
            request, _settings(request), resource.list_options, fields=resource.field_names
        )
        async with _store(request).read() as conn:
            window = await resource.read_list(conn, caller, query)
            objects = await _objects(resource, conn, window.rows)
        return JSONResponse(
            list_body(request, resource.name, query, window, objects, resource.list_options)
        )

    endpoint.__name__ = f"{resource.name}_list"
    return endpoint


async def _create(request: Request, resource: Resource) -> Response:
    assert resource.create is not None
    check_parameters(request, ())
    caller = await _caller(request, resource, writing=True)
    data = await _body_and_data(request, resource, "create")
    async with _store(request).write() as conn:
        row = await resource.create(conn, caller, data)
        created = (await _objects(resource, conn, [row]))[0]
    return JSONResponse(
        created, status_code=201, headers={"Location": created["resource_uri"]}
    )


def detail_endpoint(resource: Resource) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        check_parameters(request, ())
        pk = object_id(request)
        writing = request.method != "GET" and request.method != "HEAD"
        caller = await _caller(request, resource, writing=writing)
        if not writing:
            async with _store(request).read() as conn:
                row = await resource.read_one(conn, caller, pk)
                shown = (await _objects(resource, conn, [row]))[0]
            return JSONResponse(shown)
        if request.method == "DELETE":
            assert resource.delete is not None
            async with _store(request).write() as conn:
                await resource.delete(conn, caller, pk)
            return Response(status_code=204)
        assert resource.update is not None
        action: Action = "replace" if request.method == "PUT" else "update"
        # The object must be visible before the body is looked at: a 404 says nothing of what
        # the body would have done, and a password is not hashed for an object that is not there.
        async with _store(request).read() as conn:
            try:
                await resource.read_one(conn, caller, pk)
            except NotFound as error:
                if action != "replace":
                    raise
                # tastypie created the object here; say why nothing was.
                raise NotFound(f"{error.message}; PUT changes an existing object and never "
                               f"creates one: POST to {list_uri(resource.name)}",
                               code=error.code, params=error.params) from None
        data = await _body_and_data(request, resource, action)
        async with _store(request).write() as conn:
            row = await resource.update(conn, caller, pk, data)
            shown = (await _objects(resource, conn, [row]))[0]
        if action == "replace":
            return Response(status_code=204)
        return JSONResponse(shown, status_code=202)

    endpoint.__name__ = f"{resource.name}_detail"
    return endpoint
