"""The URLs tastypie generated beside each resource, answered as it answered them.

- `/api/<resource>/schema/`: the resource's fields and methods, in tastypie's `build_schema`
  shape (`fields`, `default_format`, `allowed_list_http_methods`, ...), built from the same
  `Resource` description as the endpoints;
- `/api/<resource>/set/<id>;<id>/`: several objects at once, `{"objects": [...]}` in the order
  asked, with `not_found` listing the ids that name nothing the caller may see (another
  domain's objects included: a tenant learns nothing of them);
- `OPTIONS` on any API URL: 200 with the allowed methods in the `Allow` header and the body,
  without credentials, as tastypie's `method_check` did.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from adminapi.api.auth import Caller, authenticate
from adminapi.api.errors import forbidden, invalid
from adminapi.api.openapi import KEY_SECURITY, error_responses
from adminapi.api.paging import check_parameters
from adminapi.api.resource import Field, Resource
from adminapi.api.serialize import API_PREFIX, MAX_ID, list_uri
from dinomail.settings import MAX_PAGE_LIMIT
from dinomail.store import NotFound

Endpoint = Callable[[Request], Awaitable[Response]]

# What tastypie wrote for a field without a default (its NOT_PROVIDED object, as text).
NO_DEFAULT = "No default provided."
DEFAULT_FORMAT = "application/json"
SET_SEPARATOR = ";"
_REFERENCE = re.compile(rf"{re.escape(API_PREFIX)}([a-z]+)/")


# --- OPTIONS --------------------------------------------------------------------------------------


def allowed_methods(methods: Sequence[str]) -> str:
    """tastypie's `Allow` value: the methods, upper case, comma-separated."""
    return ",".join(method.upper() for method in methods if method not in ("HEAD", "OPTIONS"))


def with_options(endpoint: Endpoint, methods: Sequence[str]) -> Endpoint:
    """`endpoint`, answering OPTIONS itself with the methods of its URL."""
    allows = allowed_methods(methods)

    async def answer(request: Request) -> Response:
        if request.method == "OPTIONS":
            return PlainTextResponse(allows, headers={"Allow": allows})
        return await endpoint(request)

    answer.__name__ = getattr(endpoint, "__name__", "endpoint")
    return answer


# --- schema/ --------------------------------------------------------------------------------------


def _related(schema: dict[str, Any]) -> str | None:
    """The resource a reference field points to, from the pattern of its URI form."""
    for option in schema.get("anyOf", ()):
        match = _REFERENCE.search(option.get("pattern", ""))
        if match:
            return match.group(1)
    return None


def _types(schema: dict[str, Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _type_name(spec: Field) -> str:
    kinds = [kind for kind in _types(dict(spec.schema)) if kind != "null"]
    if spec.schema.get("format") == "date-time":
        return "datetime"
    names = {"string": "string", "integer": "integer", "boolean": "boolean", "number": "float",
             "array": "list", "object": "dict"}
    return names.get(kinds[0], "string") if kinds else "string"


def field_schema(spec: Field) -> dict[str, Any]:
    """One field as tastypie's schema described it."""
    schema = dict(spec.schema)
    described: dict[str, Any] = {
        "default": NO_DEFAULT,
        "type": _type_name(spec),
        "nullable": "null" in _types(schema),
        "blank": not (spec.required or spec.required_on_post) and "string" in _types(schema),
        "readonly": spec.read_only,
        "help_text": spec.description,
        "unique": spec.unique or spec.name == "id",
        "primary_key": spec.name == "id",
        "verbose_name": spec.name.replace("_", " "),
    }
    related = _related(schema)
    items = schema.get("items")
    to_many = _related(dict(items)) if isinstance(items, dict) else None
    if related or to_many:
        described["type"] = "related"
        described["related_type"] = "to_one" if related else "to_many"
        described["related_schema"] = f"{list_uri(related or to_many or '')}schema/"
    return described


RESOURCE_URI_FIELD = {
    "default": NO_DEFAULT, "type": "string", "nullable": False, "blank": False,
    "readonly": True, "help_text": "The object's URI.", "unique": False,
    "primary_key": False, "verbose_name": "resource uri",
}


def build_schema(
    fields: dict[str, dict[str, Any]],
    list_methods: Sequence[str],
    detail_methods: Sequence[str],
    default_limit: int,
    *,
    ordering: Sequence[str] = (),
    filtering: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "fields": {**fields, "resource_uri": RESOURCE_URI_FIELD},
        "default_format": DEFAULT_FORMAT,
        "allowed_list_http_methods": [m.lower() for m in list_methods],
        "allowed_detail_http_methods": [m.lower() for m in detail_methods],
        "default_limit": default_limit,
    }
    if ordering:
        data["ordering"] = list(ordering)
    if filtering:
        data["filtering"] = filtering
    return data


def resource_schema(resource: Resource, default_limit: int) -> dict[str, Any]:
    return build_schema(
        {spec.name: field_schema(spec) for spec in resource.fields if not spec.write_only},
        resource.list_methods, resource.detail_methods, default_limit,
        ordering=resource.list_options.orderable,
        filtering={"domain": ["exact"]} if resource.list_options.domain_filter else None,
    )


# The original's changeuserpassword: only `password`, written, never shown.
PASSWORD_METHODS = ("PUT", "PATCH", "POST")


def password_schema(default_limit: int) -> dict[str, Any]:
    password = {
        "default": NO_DEFAULT, "type": "string", "nullable": False, "blank": False,
        "readonly": False, "unique": False, "primary_key": False, "verbose_name": "password",
        "help_text": "The new plain password, hashed with DINOMAIL_PASSWORD_SCHEME; never shown.",
    }
    return build_schema({"password": password}, (), PASSWORD_METHODS, default_limit)


async def _caller(request: Request, resource: Resource | None) -> Caller:
    caller = await authenticate(request, allow_basic=bool(resource and resource.basic_auth))
    if resource is not None and resource.superadmin_only and not caller.is_superadmin:
        raise forbidden(f"only a superadmin may use /api/{resource.name}/")
    return caller


def schema_endpoint(resource: Resource | None) -> Endpoint:
    """`schema/` of `resource`; None: of changeuserpassword. Credentials needed, as there."""

    async def endpoint(request: Request) -> Response:
        check_parameters(request)
        await _caller(request, resource)
        limit = request.app.state.settings.api_page_limit
        if resource is None:
            return JSONResponse(password_schema(limit))
        return JSONResponse(resource_schema(resource, limit))

    endpoint.__name__ = f"{resource.name if resource else 'changeuserpassword'}_schema"
    return endpoint


# --- set/ -----------------------------------------------------------------------------------------


def set_identifiers(text: str) -> list[str]:
    identifiers = text.split(SET_SEPARATOR)
    if len(identifiers) > MAX_PAGE_LIMIT:
        raise invalid("id", f"a set holds at most {MAX_PAGE_LIMIT} ids")
    return identifiers


def _object_id(identifier: str) -> int | None:
    if not identifier.isascii() or not identifier.isdigit() or len(identifier) > 10:
        return None
    value = int(identifier)
    return value if 0 < value <= MAX_ID else None


def set_endpoint(resource: Resource) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        check_parameters(request)
        identifiers = set_identifiers(request.path_params["ids"])
        caller = await _caller(request, resource)
        rows = []
        not_found = []
        async with request.app.state.store.read() as conn:
            for identifier in identifiers:
                pk = _object_id(identifier)
                try:
                    if pk is None:
                        raise NotFound("no such id", code="not_found")
                    rows.append(await resource.read_one(conn, caller, pk))
                except NotFound:
                    # Whether it does not exist or is outside the caller's scope: the same.
                    not_found.append(identifier)
            if resource.enrich:
                rows = await resource.enrich(conn, rows)
        body: dict[str, Any] = {"objects": [resource.to_object(row) for row in rows]}
        if not_found:
            body["not_found"] = not_found
        return JSONResponse(body)

    endpoint.__name__ = f"{resource.name}_set"
    return endpoint


# --- the OpenAPI description of these URLs -------------------------------------------------------

SCHEMA_DOCUMENT = {
    "type": "object",
    "description": "tastypie's description of a resource.",
    "properties": {
        "fields": {"type": "object", "additionalProperties": {"type": "object"}},
        "default_format": {"type": "string"},
        "allowed_list_http_methods": {"type": "array", "items": {"type": "string"}},
        "allowed_detail_http_methods": {"type": "array", "items": {"type": "string"}},
        "default_limit": {"type": "integer"},
        "ordering": {"type": "array", "items": {"type": "string"}},
        "filtering": {"type": "object"},
    },
    "required": ["fields", "default_format", "allowed_list_http_methods",
                 "allowed_detail_http_methods", "default_limit"],
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {DEFAULT_FORMAT: {"schema": schema}}}


def openapi_paths(
    with_set: Sequence[Resource], schema_only: Sequence[Resource]
) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for resource in [*with_set, *schema_only, None]:
        name = resource.name if resource else "changeuserpassword"
        title = resource.title if resource else "Mailboxes"
        security = (
            [{"Basic": []}, *KEY_SECURITY] if resource and resource.basic_auth else KEY_SECURITY
        )
        paths[f"{list_uri(name)}schema/"] = {"get": {
            "operationId": f"{name}_schema", "tags": [title], "security": security,
            "summary": f"tastypie's schema of {name}",
            "description": "The fields (type, nullable, readonly, help_text, ...) and allowed "
            "methods, in the shape tastypie gave.",
            "responses": {"200": _json("The schema.", SCHEMA_DOCUMENT),
                          **error_responses((400, 401, 403, 503))},
        }}
    for resource in with_set:
        name = resource.name
        paths[f"{list_uri(name)}set/{{ids}}/"] = {
            "parameters": [{
                "name": "ids", "in": "path", "required": True,
                "description": "Ids separated by ';', as in 1;3;7.",
                "schema": {"type": "string", "pattern": "^[^/]+$"},
            }],
            "get": {
                "operationId": f"{name}_set", "tags": [resource.title],
                "security": [{"Basic": []}, *KEY_SECURITY] if resource.basic_auth
                else KEY_SECURITY,
                "summary": f"Several {name} objects at once (tastypie's set/)",
                "description": "The objects in the order asked; `not_found` lists the ids that "
                "name no object the caller may see.",
                "responses": {
                    "200": _json("The objects found.", {
                        "type": "object",
                        "properties": {
                            "objects": {"type": "array",
                                        "items": {"$ref": f"#/components/schemas/{name}"}},
                            "not_found": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["objects"],
                    }),
                    **error_responses((400, 401, 403, 503)),
                },
            },
        }
    return paths
