"""The documentation page (`/api/docs/`): the rules in prose, then every endpoint, rendered from
the OpenAPI document so the two say the same thing. Self-contained HTML: no script, no CDN."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from adminapi.api.keys import LOGIN_KEY_NAME
from adminapi.api.paging import MAX_OFFSET
from dinomail.settings import MAX_PAGE_LIMIT
from dinomail.store.common import EXACT_COUNT_LIMIT

METHODS = ("get", "post", "put", "patch", "delete")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("adminapi.api", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _schema_name(reference: dict[str, Any]) -> str | None:
    ref = reference.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else None


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    schemas = document["components"]["schemas"]
    operations = []
    for path, item in document["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            body_schema = None
            if body:
                name = _schema_name(body["schema"])
                body_schema = schemas[name] if name else body["schema"]
            operations.append({
                "method": method.upper(),
                "path": path,
                "summary": operation.get("summary", ""),
                "description": operation.get("description", ""),
                "parameters": operation.get("parameters", []),
                "body": body_schema,
                "statuses": sorted(operation.get("responses", {}).items()),
                "public": operation.get("security") == [],
            })
    return operations


def render(document: dict[str, Any], settings_page_limit: int) -> str:
    template = _environment().get_template("docs.html")
    resources = [
        (name, schema) for name, schema in document["components"]["schemas"].items()
        if "_" not in name and name not in ("Error", "ListMeta")
    ]
    return template.render(
        title=document["info"]["title"],
        version=document["info"]["version"],
        operations=_operations(document),
        resources=resources,
        max_page=MAX_PAGE_LIMIT,
        page_limit=settings_page_limit,
        max_offset=MAX_OFFSET,
        exact_count_limit=EXACT_COUNT_LIMIT,
        login_key_name=LOGIN_KEY_NAME,
    )
