"""The REST API under `/api/`: the route table, and the documents built from the same resources."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adminapi.api import dns as dns_api
from adminapi.api import (
    docs,
    forwarding,
    mailboxextras,
    mtasts,
    openapi,
    ownertwofactor,
    reports,
    sendlimits,
    tastypie,
    twofactor,
)
from adminapi.api.accounts import admin, auditlog
from adminapi.api.authblocks import authblock
from adminapi.api.keys import apikey, apikey_detail, apikey_list
from adminapi.api.mail import (
    aliasdomain,
    change_password,
    domainlimit,
    virtualalias,
    virtualdomain,
    virtualuser,
)
from adminapi.api.paging import check_parameters
from adminapi.api.resource import Resource, detail_endpoint, list_endpoint
from adminapi.api.serialize import list_uri
from dinomail.transfer.document import schema_text

# Served by the generic list and detail endpoints.
GENERIC_RESOURCES: tuple[Resource, ...] = (
    virtualdomain, virtualuser, virtualalias, aliasdomain, domainlimit, admin, auditlog,
    dns_api.clientconfig, *sendlimits.RESOURCES, authblock,
)
# Everything the OpenAPI document describes, in its order.
RESOURCES: tuple[Resource, ...] = (
    virtualdomain, virtualuser, virtualalias, aliasdomain, domainlimit, admin, apikey, auditlog,
    dns_api.clientconfig, *sendlimits.RESOURCES, authblock,
)


# The resources with tastypie's `set/` (changeuserpassword shows no objects, so has none).
SET_RESOURCES: tuple[Resource, ...] = (*GENERIC_RESOURCES, apikey)
# Listed by /api/, each with its `schema/`.
INDEX_NAMES: tuple[str, ...] = (*(resource.name for resource in RESOURCES), "changeuserpassword")


NOT_FULLSCHEMA = ("", "false", "False", "null", "none", "None")


@cache
def openapi_document() -> dict[str, Any]:
    return openapi.document(
        RESOURCES,
        extra_paths={
            **dns_api.openapi_paths(), **sendlimits.openapi_paths(),
            **tastypie.openapi_paths(SET_RESOURCES, ()),
            **mtasts.openapi_paths(), **reports.openapi_paths(),
            **twofactor.openapi_paths(), **ownertwofactor.openapi_paths(),
            **mailboxextras.openapi_paths(),
            **forwarding.openapi_paths(),
        },
        extra_schemas=dns_api.openapi_schemas(),
    )


async def openapi_json(request: Request) -> Response:
    check_parameters(request, ())
    return JSONResponse(openapi_document())


async def export_schema_json(request: Request) -> Response:
    """The JSON Schema of `dinomail export` documents: public, like the OpenAPI document (it
    describes a format and holds no data)."""
    check_parameters(request, ())
    return Response(schema_text(), media_type="application/schema+json")


async def docs_page(request: Request) -> Response:
    check_parameters(request, ())
    page_limit = request.app.state.settings.api_page_limit
    return HTMLResponse(docs.render(openapi_document(), page_limit))


async def index(request: Request) -> Response:
    """Tastypie's top-level listing of the resources; `?fullschema=true` puts each resource's
    schema in place of its URL, as there."""
    check_parameters(request, ("fullschema",))
    # tastypie read the value with `string_to_python`: any text but these means yes.
    full = request.query_params.get("fullschema", "") not in NOT_FULLSCHEMA
    limit = request.app.state.settings.api_page_limit
    schemas: dict[str, Any] = {
        resource.name: tastypie.resource_schema(resource, limit) for resource in RESOURCES
    }
    schemas["changeuserpassword"] = tastypie.password_schema(limit)
    return JSONResponse({
        name: {
            "list_endpoint": list_uri(name),
            "schema": schemas[name] if full else f"{list_uri(name)}schema/",
        }
        for name in INDEX_NAMES
    })


def _detail_path(name: str) -> str:
    return f"{list_uri(name)}{{pk:int}}/"


def _route(path: str, endpoint: Any, methods: Sequence[str]) -> Route:
    """A route that also answers OPTIONS with its methods, as tastypie did."""
    return Route(path, tastypie.with_options(endpoint, methods),
                 methods=[*methods, "OPTIONS"])


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        _route("/api/", index, ["GET"]),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/export-schema.json", export_schema_json, methods=["GET"]),
        Route("/api/docs/", docs_page, methods=["GET"]),
    ]
    for resource in GENERIC_RESOURCES:
        table.append(_route(list_uri(resource.name), list_endpoint(resource),
                            resource.list_methods))
        table.append(_route(_detail_path(resource.name), detail_endpoint(resource),
                            resource.detail_methods))
    table += [
        _route(list_uri("apikey"), apikey_list, apikey.list_methods),
        _route(_detail_path("apikey"), apikey_detail, apikey.detail_methods),
        # Listed by /api/ as in the original, which allowed no method on it.
        _route(list_uri("changeuserpassword"), _no_list, []),
        _route(_detail_path("changeuserpassword"), change_password,
               tastypie.PASSWORD_METHODS),
        _route(f"{list_uri('changeuserpassword')}schema/", tastypie.schema_endpoint(None),
               ["GET"]),
    ]
    for resource in RESOURCES:
        table.append(_route(f"{list_uri(resource.name)}schema/",
                            tastypie.schema_endpoint(resource), ["GET"]))
    for resource in SET_RESOURCES:
        table.append(_route(f"{list_uri(resource.name)}set/{{ids}}/",
                            tastypie.set_endpoint(resource), ["GET"]))
    # A domain's DKIM key and DNS checks, under its URI.
    for suffix, endpoint, methods in [*dns_api.routes(), *mtasts.routes()]:
        table.append(_route(_detail_path("virtualdomain") + suffix, endpoint, methods))
    # DMARC and TLS-RPT reports.
    for path, endpoint, methods in reports.routes():
        table.append(_route(path, endpoint, methods))
    # Resetting the sending counts of a domain or a mailbox.
    for path, endpoint, methods in sendlimits.routes():
        table.append(_route(path, endpoint, methods))
    # Removing an admin's second factors, or a mailbox owner's authenticator app.
    for path, endpoint, methods in [*twofactor.routes(), *ownertwofactor.routes()]:
        table.append(_route(path, endpoint, methods))
    # A mailbox's forwarding, a domain's self-service switches.
    for path, endpoint, methods in forwarding.routes():
        table.append(_route(path, endpoint, methods))
    # A mailbox's vacation reply and app passwords.
    for path, endpoint, methods in mailboxextras.routes():
        table.append(_route(path, endpoint, methods))
    return table


async def _no_list(request: Request) -> Response:  # pragma: no cover - no method reaches it
    raise AssertionError("a route without methods was called")
