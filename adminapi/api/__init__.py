"""The REST API under `/api/`: the route table, and the documents built from the same resources."""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adminapi.api import dns as dns_api
from adminapi.api import docs, openapi, sendlimits
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


@cache
def openapi_document() -> dict[str, Any]:
    return openapi.document(
        RESOURCES, extra_paths={**dns_api.openapi_paths(), **sendlimits.openapi_paths()},
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
    """Tastypie's top-level listing of the resources."""
    check_parameters(request, ())
    return JSONResponse({
        resource.name: {
            "list_endpoint": list_uri(resource.name),
            "schema": f"/api/openapi.json#/components/schemas/{resource.name}",
        }
        for resource in RESOURCES
    })


def _detail_path(name: str) -> str:
    return f"{list_uri(name)}{{pk:int}}/"


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/api/", index, methods=["GET"]),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/export-schema.json", export_schema_json, methods=["GET"]),
        Route("/api/docs/", docs_page, methods=["GET"]),
    ]
    for resource in GENERIC_RESOURCES:
        table.append(
            Route(list_uri(resource.name), list_endpoint(resource), methods=resource.list_methods)
        )
        table.append(
            Route(_detail_path(resource.name), detail_endpoint(resource),
                  methods=resource.detail_methods)
        )
    table += [
        Route(list_uri("apikey"), apikey_list, methods=apikey.list_methods),
        Route(_detail_path("apikey"), apikey_detail, methods=apikey.detail_methods),
        Route(_detail_path("changeuserpassword"), change_password,
              methods=["PUT", "PATCH", "POST"]),
    ]
    # A domain's DKIM key and DNS checks, under its URI.
    for suffix, endpoint, methods in dns_api.routes():
        table.append(Route(_detail_path("virtualdomain") + suffix, endpoint, methods=methods))
    # Resetting the sending counts of a domain or a mailbox.
    for path, endpoint, methods in sendlimits.routes():
        table.append(Route(path, endpoint, methods=methods))
    return table
