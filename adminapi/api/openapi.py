"""The OpenAPI 3.1 document, built from the resource descriptions that the endpoints serve.

Fields, their schemas, the list parameters and the methods of each URL all come from the
`Resource` objects; a test compares the document's paths and methods with the application's
routes, so an endpoint cannot exist undocumented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adminapi.api.body import MAX_BODY_BYTES
from adminapi.api.paging import MAX_OFFSET, MAX_QUERY_LENGTH, ListOptions
from adminapi.api.resource import Resource
from adminapi.api.serialize import MAX_ID, list_uri
from dinomail import __version__
from dinomail.settings import MAX_PAGE_LIMIT

JSON = "application/json"
KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
BASIC_SECURITY: list[dict[str, list[str]]] = [{"Basic": []}, *KEY_SECURITY]

ERROR_MEANINGS = {
    400: "Invalid input, or over a domain limit (codes such as too_many_mailboxes); `field` "
    "names the input.",
    401: "No valid credentials.",
    403: "Not allowed: read-only key, superadmin only, or not for a domain admin.",
    404: "No such object among those the caller may see.",
    409: "The object would duplicate an existing one.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
    429: "Too many failed logins for this account or from this address (shared with the login "
    "page); retry after Retry-After seconds.",
    503: "The database is not answering; retry after Retry-After seconds.",
}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_MEANINGS[status],
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return response


def error_responses(statuses: Sequence[int]) -> dict[str, Any]:
    """The error responses of an operation, for endpoints described by their own module."""
    return {str(status): _error(status) for status in statuses}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _responses(success: dict[int, Any], errors: Sequence[int]) -> dict[str, Any]:
    responses = {str(status): response for status, response in success.items()}
    responses.update({str(status): _error(status) for status in errors})
    return responses


# --- schemas of a resource ------------------------------------------------------------------------


def object_schema(resource: Resource) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in resource.fields:
        if spec.write_only:
            continue
        properties[spec.name] = {**spec.output_schema, "description": spec.description}
        if spec.read_only:
            properties[spec.name]["readOnly"] = True
    properties["resource_uri"] = {
        "type": "string", "description": "The object's URI.", "readOnly": True,
    }
    return {
        "type": "object", "description": resource.description,
        "properties": properties, "required": list(properties),
    }


def input_schema(resource: Resource, action: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for spec in resource.fields:
        if spec.read_only:
            properties[spec.name] = {"description": "Read-only: accepted and ignored."}
            continue
        if spec.create_only and action != "create":
            continue
        properties[spec.name] = {**spec.schema, "description": spec.description}
        if action == "create" and (spec.required or spec.required_on_post):
            required.append(spec.name)
    properties["resource_uri"] = {"description": "Read-only: accepted and ignored."}
    schema: dict[str, Any] = {
        "type": "object", "properties": properties, "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def list_schema(resource: Resource) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "meta": _ref("ListMeta"),
            "objects": {"type": "array", "items": _ref(resource.name)},
        },
        "required": ["meta", "objects"],
    }


def list_parameters(options: ListOptions) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": "limit", "in": "query",
         "description": f"Objects per page; 0 means the largest page ({MAX_PAGE_LIMIT}); "
         f"larger values are lowered to {MAX_PAGE_LIMIT}. Default: API_LIMIT_PER_PAGE.",
         "schema": {"type": "integer", "minimum": 0, "maximum": 10**9}},
        {"name": "offset", "in": "query",
         "description": "Objects to skip. Deep offsets cost more; follow meta.next instead.",
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
        {"name": "order_by", "in": "query",
         "description": "Sort field; a leading - sorts in descending order.",
         "schema": {"type": "string", "enum": options.order_choices}},
        {"name": "format", "in": "query", "description": "Only json (the original's parameter).",
         "schema": {"type": "string", "enum": ["json"]}},
    ]
    if options.keyset:
        parameters.append(
            {"name": "after", "in": "query",
             "description": "A cursor from meta.next: the page after that row, at constant "
             f"cost. Works with order_by {', '.join(options.keyset)}.",
             "schema": {"type": "string"}}
        )
    if options.search:
        parameters.append(
            {"name": "q", "in": "query", "description": f"Substring search in {options.search}.",
             "schema": {"type": "string", "maxLength": MAX_QUERY_LENGTH}}
        )
    if options.domain_filter:
        parameters.append(
            {"name": "domain", "in": "query",
             "description": f"Only {options.domain_filter}: a domain name or URI.",
             "schema": {"type": "string"}}
        )
    return parameters


ID_PARAMETER = {
    "name": "id", "in": "path", "required": True, "description": "The object's id.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def resource_paths(resource: Resource) -> dict[str, Any]:
    name = resource.name
    security = BASIC_SECURITY if resource.basic_auth else KEY_SECURITY
    scoped = [403] if resource.superadmin_only else []
    writes = [400, 401, 403, 404, 409, 413, 503]

    def operation(method: str, summary: str, **parts: Any) -> dict[str, Any]:
        note = resource.notes.get(method)
        if resource.basic_auth and method in ("GET list", "POST") and "responses" in parts:
            # Basic credentials are checked against the failed-login limits.
            parts["responses"] = {**parts["responses"], "429": _error(429)}
        if resource.basic_auth and "responses" in parts and "403" not in parts["responses"]:
            # Basic credentials of an admin with two-factor login (code two_factor_required).
            parts["responses"] = {**parts["responses"], "403": _error(403)}
        return {
            "operationId": f"{name}_{summary.split()[0].lower()}",
            "summary": summary,
            "description": note or resource.description,
            "tags": [resource.title],
            "security": security,
            **parts,
        }

    listing: dict[str, Any] = {
        "get": operation(
            "GET list", f"List {resource.title.lower()}",
            parameters=list_parameters(resource.list_options),
            responses=_responses(
                {200: _json("A page of objects.", _ref(f"{name}_list"))},
                [400, 401, *scoped, 503],
            ),
        ),
    }
    if resource.create:
        listing["post"] = operation(
            "POST", f"Create a {name} object",
            requestBody=_body(_ref(f"{name}_create")),
            responses=_responses(
                {201: {
                    **_json("Created; the body is the new object.", _ref(name)),
                    "headers": {"Location": {
                        "description": "The new object's URI.", "required": True,
                        "schema": {"type": "string"},
                    }},
                }},
                [400, 401, 403, 409, 413, 503],
            ),
        )
    detail: dict[str, Any] = {
        "parameters": [ID_PARAMETER],
        "get": operation(
            "GET", f"Read one {name} object",
            responses=_responses(
                {200: _json("The object.", _ref(name))}, [400, 401, *scoped, 404, 503]
            ),
        ),
    }
    if resource.update:
        detail["put"] = operation(
            "PUT", f"Change a {name} object",
            requestBody=_body(_ref(f"{name}_replace")),
            responses=_responses({204: {"description": "Changed; fields left out of the body "
                                               "keep their stored values."}}, writes),
        )
        detail["patch"] = operation(
            "PATCH", f"Update a {name} object",
            requestBody=_body(_ref(f"{name}_update")),
            responses=_responses(
                {202: _json("Updated; the body is the object.", _ref(name))}, writes
            ),
        )
    if resource.delete:
        detail["delete"] = operation(
            "DELETE", f"Delete a {name} object",
            responses=_responses({204: {"description": "Deleted."}},
                                 [400, 401, 403, 404, 503]),
        )
    return {list_uri(name): listing, f"{list_uri(name)}{{id}}/": detail}


def resource_schemas(resource: Resource) -> dict[str, Any]:
    schemas = {
        resource.name: object_schema(resource),
        f"{resource.name}_list": list_schema(resource),
    }
    if resource.create:
        schemas[f"{resource.name}_create"] = input_schema(resource, "create")
    if resource.update:
        schemas[f"{resource.name}_replace"] = input_schema(resource, "replace")
        schemas[f"{resource.name}_update"] = input_schema(resource, "update")
    return schemas


# --- the endpoints that are not resources ---------------------------------------------------------


def _password_paths() -> dict[str, Any]:
    body = _body({
        "type": "object",
        "properties": {
            "password": {"type": "string", "minLength": 1, "maxLength": 1024,
                         "description": "The new plain password; required, never empty."},
            "id": {"description": "Read-only: accepted and ignored."},
            "resource_uri": {"description": "Read-only: accepted and ignored."},
        },
        "required": ["password"],
        "additionalProperties": False,
    })
    errors = [400, 401, 403, 404, 413, 503]
    described = {
        "description": "Sets a mailbox's password, hashed with DINOMAIL_PASSWORD_SCHEME. A "
        "missing or empty password is a 400 (the original re-hashed the old hash).",
        "tags": ["Mailboxes"], "security": KEY_SECURITY, "requestBody": body,
    }
    return {"/api/changeuserpassword/{id}/": {
        "parameters": [ID_PARAMETER],
        "put": {**described, "operationId": "changeuserpassword_put",
                "summary": "Set a mailbox's password",
                "responses": _responses({204: {"description": "Changed."}}, errors)},
        "post": {**described, "operationId": "changeuserpassword_post",
                 "summary": "Set a mailbox's password (as PUT)",
                 "responses": _responses({204: {"description": "Changed."}}, errors)},
        "patch": {**described, "operationId": "changeuserpassword_patch",
                  "summary": "Set a mailbox's password (the original's method)",
                  "responses": _responses({202: {"description": "Changed."}}, errors)},
    }}


def _service_paths(resources: Sequence[Resource]) -> dict[str, Any]:
    public: list[dict[str, list[str]]] = []
    index_schema = {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "list_endpoint": {"type": "string"},
                "schema": {"type": ["string", "object"],
                           "description": "The URL of its schema/; the schema itself with "
                           "?fullschema=true."},
            },
            "required": ["list_endpoint", "schema"],
        },
    }
    return {
        "/api/": {"get": {
            "operationId": "api_index", "summary": "The resources and their list URLs",
            "tags": ["Service"], "security": public,
            "parameters": [{"name": "fullschema", "in": "query",
                            "description": "Each resource's schema in place of its URL, unless "
                            "empty, false, null or none (tastypie's reading).",
                            "schema": {"type": "string"}}],
            "responses": _responses({200: _json("One entry per resource.", index_schema)}, [400]),
        }},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "tags": ["Service"],
            "security": public,
            "responses": _responses({200: _json("OpenAPI 3.1.", {"type": "object"})}, [400]),
        }},
        "/api/export-schema.json": {"get": {
            "operationId": "export_schema",
            "summary": "The JSON Schema of `dinomail export` documents", "tags": ["Service"],
            "security": public,
            "responses": {
                "200": {"description": "JSON Schema, draft 2020-12.", "content": {
                    "application/schema+json": {"schema": {"type": "object"}}}},
                "400": _error(400),
            },
        }},
        "/api/docs/": {"get": {
            "operationId": "docs", "summary": "The API's documentation page", "tags": ["Service"],
            "security": public,
            "responses": {
                "200": {"description": "HTML.", "content": {"text/html": {"schema": {
                    "type": "string"}}}},
                "400": _error(400),
            },
        }},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Is the service up and its database reachable",
            "tags": ["Service"], "security": public,
            "responses": {
                "200": _json("Up.", {"type": "object", "properties": {
                    "status": {"type": "string"}}, "required": ["status"]}),
                "503": _json("The database is not reachable.", {"type": "object"}),
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics of the HTTP service",
            "tags": ["Service"], "security": public,
            "responses": {"200": {"description": "Prometheus text format.", "content": {
                "text/plain": {"schema": {"type": "string"}}}}},
        }},
    }


def document(
    resources: Sequence[Resource],
    *,
    extra_paths: Mapping[str, Any] | None = None,
    extra_schemas: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The document; `extra_*` are endpoints described by their own module (DNS and DKIM)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "description": "What is wrong, for a person."},
                "field": {"type": ["string", "null"],
                          "description": "The input at fault, if one is."},
                "code": {"type": "string", "description": "A stable word for programs: the "
                         "refusal's own (mailbox_exists, domain_not_yours, too_many_mailboxes, "
                         "text_too_long, …), or one of the API's: invalid, not_found, "
                         "forbidden, read_only, unauthenticated, too_large, "
                         "method_not_allowed, unavailable."},
            },
            "required": ["error", "field", "code"],
        },
        "ListMeta": {
            "type": "object",
            "properties": {
                "limit": {"type": "integer"},
                "next": {"type": ["string", "null"], "description": "The next page's URL."},
                "offset": {"type": "integer"},
                "previous": {"type": ["string", "null"],
                             "description": "The previous page's URL."},
                "total_count": {"type": "integer",
                                "description": "Matching objects; estimated above 10,000."},
                "total_count_exact": {"type": "boolean",
                                      "description": "False when total_count is an estimate."},
            },
            "required": ["limit", "next", "offset", "previous", "total_count",
                         "total_count_exact"],
        },
    }
    for resource in resources:
        paths.update(resource_paths(resource))
        schemas.update(resource_schemas(resource))
    paths.update(_password_paths())
    paths.update(extra_paths or {})
    schemas.update(extra_schemas or {})
    paths.update(_service_paths(resources))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DinoMail admin API",
            "version": __version__,
            "description": "The original DinoMail (tastypie) API, compatible with its clients, "
            "plus domain scoping, new resources and strict validation. Every API URL also "
            "answers OPTIONS (200, its methods in the Allow header), without credentials. "
            "Read /api/docs/ for authentication, paging and the differences from the original.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                           "description": "Authorization: ApiKey <username>:<key> (the "
                           "original's form). As in the original, the key may instead come in "
                           "the URL, ?username=<username>&api_key=<key>, unless the "
                           "API_KEY_IN_QUERY setting is off."},
                "Bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer <key>."},
                "Basic": {"type": "http", "scheme": "basic",
                          "description": "Username and password; only for /api/apikey/."},
            },
        },
        "security": KEY_SECURITY,
    }
