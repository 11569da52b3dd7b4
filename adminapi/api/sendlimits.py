"""Sending limits and counts in the API: `domainsendlimit` and `mailboxsendlimit`.

Like `domainlimit` and `clientconfig`, each is an object per domain (per mailbox) whose id is the
domain's (the mailbox's): GET shows the limits, what applies (a mailbox's own limits merged with
its domain's defaults) and what was sent in the last hour and day, as the Postfix policy service
counts it; PUT and PATCH change the limits (superadmins only, as in the store). A POST to
`<uri>reset/` starts the counts again from zero; running lookup daemons drop their counts
within POLICY_SYNC_INTERVAL seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import Caller, require_write
from adminapi.api.mail import (
    MAX_COUNT,
    PER_DOMAIN_LIST,
    domain_of_object,
    list_with_domain,
    read_domain,
)
from adminapi.api.openapi import ID_PARAMETER, KEY_SECURITY, error_responses
from adminapi.api.paging import ListOptions
from adminapi.api.resource import Field, Resource, id_field, object_call
from adminapi.api.serialize import list_uri, resource_uri
from dinomail.store import domains, mailboxes
from dinomail.store import policy as policy_store
from dinomail.store.common import Row

COUNT_DESCRIPTIONS = {
    "messages_last_hour": "Messages sent in the last 3600 seconds",
    "recipients_last_hour": "Recipients of the messages sent in the last 3600 seconds",
    "messages_last_day": "Messages sent in the last 86400 seconds",
    "recipients_last_day": "Recipients of the messages sent in the last 86400 seconds",
}
LIMIT_DESCRIPTIONS = {
    "messages_per_hour": "messages in any hour",
    "messages_per_day": "messages in any day",
    "recipients_per_hour": "recipients in any hour",
    "recipients_per_day": "recipients in any day",
}
COUNT_NOTE = ", every lookup daemon's written counts included (they write every "\
    "POLICY_FLUSH_INTERVAL seconds). The bucket at the window's old edge counts in part, as "\
    "the policy service counts it, hence fractions."


def _count_fields() -> tuple[Field, ...]:
    return tuple(
        Field(name, {"type": "number"}, description + COUNT_NOTE, read_only=True)
        for name, description in COUNT_DESCRIPTIONS.items()
    )


def _limit(name: str, description: str) -> Field:
    return Field(name, {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                 f"{description} 0 is unlimited.")


# --- domainsendlimit ------------------------------------------------------------------------------


async def _with_domain_limits(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    limits = await policy_store.domain_limits_of(conn, [row["id"] for row in rows])
    counts = await policy_store.window_counts(
        conn, policy_store.DOMAIN, [row["name"] for row in rows], time.time()
    )
    return [{**row, **limits[row["id"]], **counts[row["name"]]} for row in rows]


async def _update_domain_limits(
    conn: AsyncConnection, caller: Caller, pk: int, data: dict[str, Any]
) -> Row:
    await policy_store.set_domain_limits(conn, caller.actor, caller.scope, pk, data)
    return await domains.get(conn, caller.scope, pk)


domainsendlimit = Resource(
    name="domainsendlimit",
    title="Sending limits",
    description="Each domain's sending limits, for its mailboxes (defaults) and for the domain "
    "as a whole, and what the domain sent in the last hour and day; the id is the domain's. "
    "Only a superadmin changes the limits or resets the counts (POST <uri>reset/): they are "
    "abuse control. Enforced by the Postfix policy service on authenticated submissions.",
    fields=(
        id_field(),
        *domain_of_object(),
        *(_limit(f"mailbox_{key}", f"The default limit of each mailbox: {text}; a mailbox's "
                 "own limit (mailboxsendlimit) overrides it.")
          for key, text in LIMIT_DESCRIPTIONS.items()),
        *(_limit(f"domain_{key}", f"The limit of the whole domain: {text}.")
          for key, text in LIMIT_DESCRIPTIONS.items()),
        Field("reply", {"type": "string", "maxLength": policy_store.REPLY_MAX_LENGTH},
              "What Postfix answers a sender over a limit: DEFER_IF_PERMIT, DEFER, REJECT or a "
              "4xx/5xx code, then an optional status and text. Empty: the "
              "POLICY_RATE_LIMIT_REPLY setting."),
        *_count_fields(),
    ),
    list_options=PER_DOMAIN_LIST,
    read_list=list_with_domain(domains.list_window),
    read_one=read_domain,
    update=_update_domain_limits,
    enrich=_with_domain_limits,
)


# --- mailboxsendlimit -----------------------------------------------------------------------------


async def _with_mailbox_limits(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    own = await policy_store.mailbox_limits_of(conn, [row["id"] for row in rows])
    defaults = await policy_store.domain_limits_of(conn, {row["domain_id"] for row in rows})
    counts = await policy_store.window_counts(
        conn, policy_store.MAILBOX, [row["email"] for row in rows], time.time()
    )
    enriched = []
    for row in rows:
        limits = own[row["id"]]
        applied = policy_store.effective_mailbox_limits(limits, defaults[row["domain_id"]])
        enriched.append({
            **row, **{key: limits[key] for key in policy_store.LIMITS},
            **{f"effective_{key}": value for key, value in applied.items()},
            **counts[row["email"]],
        })
    return enriched


async def _update_mailbox_limits(
    conn: AsyncConnection, caller: Caller, pk: int, data: dict[str, Any]
) -> Row:
    await policy_store.set_mailbox_limits(conn, caller.actor, caller.scope, pk, data)
    return await mailboxes.get(conn, caller.scope, pk)


mailboxsendlimit = Resource(
    name="mailboxsendlimit",
    title="Sending limits",
    description="Each mailbox's own sending limits, the limits that apply to it (its own, else "
    "its domain's defaults) and what it sent in the last hour and day; the id is the "
    "mailbox's. Only a superadmin changes the limits or resets the counts (POST <uri>reset/).",
    fields=(
        id_field(),
        Field("mailbox", {"type": "string"}, "The mailbox's URI.", read_only=True,
              from_row=lambda row: resource_uri("virtualuser", row["id"])),
        Field("email", {"type": "string"}, "The mailbox's address.", read_only=True),
        Field("domain", {"type": "string"}, "The domain's URI.", read_only=True,
              from_row=lambda row: resource_uri("virtualdomain", row["domain_id"])),
        *(Field(key, {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_COUNT},
                f"The mailbox's own limit: {text}; 0 is unlimited; null: its domain's default.")
          for key, text in LIMIT_DESCRIPTIONS.items()),
        *(Field(f"effective_{key}", {"type": "integer"},
                f"The limit that applies: {text}; 0 is unlimited.", read_only=True)
          for key, text in LIMIT_DESCRIPTIONS.items()),
        *_count_fields(),
    ),
    list_options=ListOptions(
        orderable=("id", "email"), keyset=("id", "email"), search="the address",
        domain_filter="the mailboxes of this domain (name or URI)",
    ),
    read_list=list_with_domain(mailboxes.list_window),
    read_one=lambda conn, caller, pk: mailboxes.get(conn, caller.scope, pk),
    update=_update_mailbox_limits,
    enrich=_with_mailbox_limits,
)

RESOURCES = (domainsendlimit, mailboxsendlimit)
_KINDS = {domainsendlimit.name: policy_store.DOMAIN, mailboxsendlimit.name: policy_store.MAILBOX}


# --- resetting the counts -------------------------------------------------------------------------


def reset_endpoint(resource: Resource) -> Callable[[Request], Any]:
    kind = _KINDS[resource.name]

    async def endpoint(request: Request) -> Response:
        pk, caller = await object_call(request)
        require_write(caller)
        store = request.app.state.store
        async with store.write() as conn:
            await policy_store.reset_counts(conn, caller.actor, caller.scope, kind, pk)
            row = await resource.read_one(conn, caller, pk)
            assert resource.enrich is not None
            shown = resource.to_object((await resource.enrich(conn, [row]))[0])
        return JSONResponse(shown)

    endpoint.__name__ = f"{resource.name}_reset"
    return endpoint


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods) beside the generic endpoints of these resources."""
    return [(f"{list_uri(resource.name)}{{pk:int}}/reset/", reset_endpoint(resource), ["POST"])
            for resource in RESOURCES]


def openapi_paths() -> dict[str, Any]:
    paths = {}
    for resource in RESOURCES:
        name = resource.name
        responses = {"200": {"description": "Reset; the body is the object, counts at 0.",
                             "content": {"application/json": {"schema": {
                                 "$ref": f"#/components/schemas/{name}"}}}}}
        responses |= error_responses((400, 401, 403, 404, 503))
        paths[f"{list_uri(name)}{{id}}/reset/"] = {
            "parameters": [ID_PARAMETER],
            "post": {
                "operationId": f"{name}_reset", "tags": [resource.title],
                "summary": f"Reset the sending counts of a {name} object",
                "description": "Superadmins only; audited. Starts the counts of the last hour "
                "and day again from zero; running lookup daemons drop theirs within "
                "POLICY_SYNC_INTERVAL seconds (sends they had not written yet, at most "
                "POLICY_FLUSH_INTERVAL seconds' worth, still count). A domain's reset is of "
                "the domain's totals; each mailbox has its own. No body.",
                "security": KEY_SECURITY, "responses": responses,
            },
        }
    return paths
