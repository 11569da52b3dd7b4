"""Admin accounts with their domain scopes, and the audit log: superadmins only."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from adminapi.api.auth import Caller
from adminapi.api.paging import ListOptions, ListQuery
from adminapi.api.resource import DATETIME, OPTIONAL_DATETIME, URI, Field, Resource, id_field
from adminapi.api.serialize import reference_id, reference_schema, resource_uri
from dinomail.store import admins, audit, twofactor
from dinomail.store.common import Page, Row, Window

# More domains than one admin would manage by hand; bounds the work of one request.
MAX_DOMAINS_PER_ADMIN = 10_000


def window_of(page: Page, offset: int) -> Window:
    """A store `Page` (exact count, offset paging) in the shape the list endpoints use."""
    more = offset + len(page.rows) < page.total_count
    last = page.rows[-1]["id"] if page.rows else 0
    return Window(page.rows, page.total_count, True, (last, last) if more else None)


async def _list_admins(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
    page = await admins.list_page(conn, limit=query.limit, offset=query.offset)
    return window_of(page, query.offset)


async def _with_domains(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    """The admins with their domains and what second factors they have."""
    factors = await twofactor.summaries(conn, [row["id"] for row in rows])
    return [
        {**row,
         "domain_ids": row["domain_ids"] if "domain_ids" in row else sorted(
             await admins.domain_ids(conn, row["id"])),
         "totp_enabled": factors[row["id"]].totp,
         "passkey_count": factors[row["id"]].passkeys}
        for row in rows
    ]


async def _create_admin(conn: AsyncConnection, caller: Caller, data: dict[str, Any]) -> Row:
    row = await admins.create(
        conn, caller.actor, username=data["username"], password=data["password"],
        email=data.get("email", ""), is_superadmin=data.get("is_superadmin", False),
        domain_ids=data.get("domain_ids", ()), read_only=data.get("read_only", False),
    )
    if data.get("is_active") is False:
        row = await admins.update(conn, caller.actor, row["id"], {"is_active": False})
    return row


async def _update_admin(
    conn: AsyncConnection, caller: Caller, admin_id: int, data: dict[str, Any]
) -> Row:
    return await admins.update(conn, caller.actor, admin_id, data,
                               acting_admin_id=caller.admin_id)


async def _delete_admin(conn: AsyncConnection, caller: Caller, admin_id: int) -> Row:
    return await admins.delete(conn, caller.actor, admin_id, acting_admin_id=caller.admin_id)


admin = Resource(
    name="admin",
    title="Admins",
    description="Admin accounts: superadmins see and change everything; a domain admin sees "
    "only the domains listed in `domains`. Superadmins only.",
    superadmin_only=True,
    fields=(
        id_field(),
        Field("username", {"type": "string", "pattern": r"^[A-Za-z0-9@.+_-]{1,150}$"},
              "The login name; cannot be changed.", required=True, unique=True),
        Field("email", {"type": "string", "maxLength": 254}, "A contact address, or empty."),
        Field("password", {"type": "string", "minLength": 1, "maxLength": 1024},
              "The password (8 characters or more), stored as an Argon2id hash. Needed on "
              "POST; a PUT or PATCH without it keeps the current one.",
              write_only=True, required_on_post=True),
        Field("is_superadmin", {"type": "boolean"}, "Sees and changes everything."),
        Field("is_active", {"type": "boolean"},
              "An inactive admin cannot log in, and their API keys stop working."),
        Field("read_only", {"type": "boolean"},
              "Reads everything in their scope and changes nothing, whatever key they use."),
        Field("domains",
              {"type": "array", "items": reference_schema("virtualdomain"),
               "maxItems": MAX_DOMAINS_PER_ADMIN},
              "The domains a domain admin manages, as URIs or ids.", column="domain_ids",
              to_store=lambda values: [reference_id("virtualdomain", value, "domains")
                                       for value in values],
              from_row=lambda row: [resource_uri("virtualdomain", domain_id)
                                    for domain_id in row["domain_ids"]],
              shown_schema={"type": "array", "items": URI}),
        Field("totp_enabled", {"type": "boolean"},
              "Logs in with an authenticator app (TOTP) as a second factor: one set up and "
              "confirmed with its first code.", read_only=True),
        Field("passkey_count", {"type": "integer", "minimum": 0},
              "How many passkeys or security keys the admin logs in with as a second factor.",
              read_only=True),
        Field("created_at", DATETIME, "When the account was created.", read_only=True),
        Field("last_login", OPTIONAL_DATETIME, "The last successful password login.",
              read_only=True),
    ),
    list_options=ListOptions(keyset=()),
    read_list=_list_admins,
    read_one=lambda conn, caller, pk: admins.get(conn, pk),
    create=_create_admin,
    update=_update_admin,
    delete=_delete_admin,
    enrich=_with_domains,
)


def _values(column: str) -> Any:
    def from_row(row: Row) -> Any:
        text = row[column]
        return None if text is None else json.loads(text)

    return from_row


async def _list_audit(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
    return await audit.list_window(
        conn, caller.scope, descending=query.descending, limit=query.limit,
        offset=query.offset, after=query.after,
    )


auditlog = Resource(
    name="auditlog",
    title="Audit log",
    description="Every change, newest first: who made it (`admin:<username>`, or "
    "`apikey:<prefix>(<username>)` for a key), what, and the values before and after (secrets "
    "are never written). Superadmins only; read-only.",
    superadmin_only=True,
    fields=(
        id_field(),
        Field("at", DATETIME, "When the change was made.", read_only=True),
        Field("actor", {"type": "string"}, "Who made it.", read_only=True),
        Field("action", {"type": "string"}, "create, update, delete, set_password, revoke, ...",
              read_only=True),
        Field("object_type", {"type": "string"}, "domain, mailbox, alias, alias_domain, admin, "
              "api_key.", read_only=True),
        Field("object_id", {"type": ["string", "null"]}, "The changed object's id.",
              read_only=True),
        Field("object_repr", {"type": "string"}, "The object's name when it changed.",
              read_only=True),
        Field("domain_id", {"type": ["integer", "null"]},
              "The id of the domain the change is about (null: none, e.g. an admin).",
              read_only=True),
        Field("address", {"type": ["string", "null"]},
              "The client address the change came from (null: the command line).",
              read_only=True),
        Field("old_values", {"type": ["object", "null"]}, "Changed fields before.",
              read_only=True, from_row=_values("old_values")),
        Field("new_values", {"type": ["object", "null"]}, "Changed fields after.",
              read_only=True, from_row=_values("new_values")),
    ),
    list_options=ListOptions(orderable=("id",), keyset=("id",), default_order="-id"),
    read_list=_list_audit,
    read_one=lambda conn, caller, pk: audit.get(conn, caller.scope, pk),
)
