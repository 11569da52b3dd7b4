"""The mail resources: the original three (`virtualdomain`, `virtualuser`, `virtualalias`),
`changeuserpassword`, and what DinoMail adds beside them (`aliasdomain`, `domainlimit`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from adminapi.api.auth import Caller, require_write
from adminapi.api.body import read_json_object
from adminapi.api.errors import invalid
from adminapi.api.paging import ListOptions, ListQuery
from adminapi.api.resource import (
    DATETIME,
    OPTIONAL_DATETIME,
    URI,
    Action,
    Field,
    Resource,
    id_field,
    object_call,
)
from adminapi.api.serialize import is_reference, reference_id, reference_schema, resource_uri
from dinomail import validation as v
from dinomail.settings import Settings
from dinomail.store import NotFound, aliasdomains, aliases, domains, limits, mailboxes
from dinomail.store.common import ListRequest, Row, StoreList, Window

MAX_BYTES = 2**63 - 1
MAX_COUNT = 2**31 - 1
NO_ROWS = Window(rows=[], total_count=0, count_is_exact=True, next_after=None)

def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _domain_reference(*, required: bool = False, name: str = "domain",
                      column: str = "domain_id", description: str) -> Field:
    return Field(
        name, reference_schema("virtualdomain"), description, required=required, column=column,
        to_store=lambda value: reference_id("virtualdomain", value, name),
        from_row=lambda row: resource_uri("virtualdomain", row[column]),
        shown_schema=URI,
    )


# --- looking up the domain of a list filter or of a new address -----------------------------------


async def filtered_domain_id(conn: AsyncConnection, caller: Caller, query: ListQuery) -> int | None:
    """The id named by `?domain=` (a name or a URI); NotFound if the caller sees no such domain."""
    assert query.domain is not None
    if is_reference(query.domain):
        domain_id = reference_id("virtualdomain", query.domain, "domain")
        return int((await domains.get(conn, caller.scope, domain_id))["id"])
    name = v.normalize_domain(query.domain, "domain")
    return int((await domains.get_by_name(conn, caller.scope, name))["id"])


ReadList = Callable[[AsyncConnection, Caller, ListQuery], Awaitable[Window]]


async def list_request(
    conn: AsyncConnection, caller: Caller, query: ListQuery
) -> ListRequest | None:
    """The store's list request for the API's list options; None when `?domain=` names no
    domain the caller sees (the list is then empty)."""
    domain_id = None
    if query.domain is not None:
        try:
            domain_id = await filtered_domain_id(conn, caller, query)
        except NotFound:
            return None
    return ListRequest(
        limit=query.limit, domain_id=domain_id, q=query.q, order_by=query.order_by,
        descending=query.descending, offset=query.offset, after=query.after,
    )


# The listing and reading of the objects per domain (domainlimit, domainsendlimit,
# clientconfig), whose ids are the domains'.
PER_DOMAIN_LIST = ListOptions(
    orderable=("id", "name"), keyset=("id", "name"), search="the domain name",
    domain_filter="this one domain",
)


async def read_domain(conn: AsyncConnection, caller: Caller, pk: int) -> Row:
    return await domains.get(conn, caller.scope, pk)


def domain_of_object() -> tuple[Field, Field]:
    """The read-only URI and name of the domain an object per domain stands for (whose id is
    the domain's: domainlimit, domainsendlimit, clientconfig)."""
    return (
        Field("domain", {"type": "string"}, "The domain's URI.", read_only=True,
              from_row=lambda row: resource_uri("virtualdomain", row["id"])),
        Field("name", {"type": "string"}, "The domain's name.", read_only=True),
    )


def list_with_domain(store_list: StoreList) -> ReadList:
    """A `read_list` that applies `?domain=` and the remaining list options to `store_list`."""

    async def read_list(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
        request = await list_request(conn, caller, query)
        if request is None:
            return NO_ROWS
        return await store_list(conn, caller.scope, request)

    return read_list


# --- virtualdomain --------------------------------------------------------------------------------

DKIM_STATUS = "0 not set, 1 DNS record not found, 2 no DNS key in the record, 3 key and record " \
    "differ, 4 ok"

virtualdomain = Resource(
    name="virtualdomain",
    title="Domains",
    description="The mail domains (the original `core_virtualdomain`). Every original field is "
    "here with its original name; `active` and `created_at` are DinoMail's. A domain admin sees "
    "only their domains and cannot create, rename or delete one.",
    fields=(
        id_field(),
        Field("name", {"type": "string", "minLength": 1, "maxLength": 253},
              "The domain name; Unicode names are stored in their IDNA (xn--) form.",
              required=True, unique=True),
        Field("dkim_key_name", _text(200), "The DKIM selector."),
        Field("dkim_key", _text(10_000), "The DKIM public key (the p= value)."),
        Field("dkim_status", {"type": "integer", "enum": [0, 1, 2, 3, 4]},
              f"Result of the last DKIM check: {DKIM_STATUS}. Read-only (ignored on input).",
              read_only=True),
        Field("dkim_last_update", DATETIME, "When DKIM was last checked.", read_only=True),
        Field("display_name", _text(200), "Name shown by mail clients (autoconfig)."),
        Field("short_display_name", _text(50), "Short name for mail clients."),
        Field("imap_address", _text(255), "IMAP server host name for autoconfig."),
        Field("pop_address", _text(255), "POP3 server host name for autoconfig."),
        Field("smtp_address", _text(255), "SMTP server host name for autoconfig."),
        Field("dmarc_status", {"type": "integer", "enum": [0, 1, 2]},
              "Last DMARC check: 0 no record, 1 record without v=DMARC1, 2 ok. Read-only.",
              read_only=True),
        Field("dmarc_last_update", DATETIME, "When DMARC was last checked.", read_only=True),
        Field("spf_status", {"type": "integer", "enum": [0, 1]},
              "Last SPF check: 0 no record, 1 ok. Read-only.", read_only=True),
        Field("spf_last_update", DATETIME, "When SPF was last checked.", read_only=True),
        Field("active", {"type": "boolean"},
              "An inactive domain receives and sends nothing but keeps its data. True when a "
              "POST leaves it out."),
        Field("catchall_senders", {"type": "boolean"},
              "Whether the destinations of the domain's catch-all (`@domain` alias) may send as "
              "any address of the domain that is neither a mailbox nor an alias. Off unless "
              "turned on. Left unchanged by a PUT that omits it."),
        Field("require_app_passwords", {"type": "boolean"},
              "Whether the domain's mailboxes log in to IMAP, POP3, SMTP and ManageSieve with "
              "app passwords only (the main password then opens only the self-service pages). "
              "Off unless turned on. Left unchanged by a PUT that omits it."),
        Field("created_at", DATETIME, "When the domain was created.", read_only=True),
    ),
    list_options=ListOptions(
        orderable=domains.ORDERABLE, keyset=("id", "name"), search="the domain name",
        domain_filter="this one domain (by name or URI)",
    ),
    read_list=list_with_domain(domains.list_window),
    read_one=read_domain,
    create=lambda conn, caller, data: domains.create(conn, caller.actor, caller.scope, data),
    update=lambda conn, caller, pk, data: domains.update(
        conn, caller.actor, caller.scope, pk, data
    ),
    delete=lambda conn, caller, pk: domains.delete(conn, caller.actor, caller.scope, pk),
    notes={"DELETE": "Deletes the domain with its mailboxes, aliases and alias domains."},
)


# --- virtualuser ----------------------------------------------------------------------------------

CHANGE_PASSWORD = "a password is changed with /api/changeuserpassword/<id>/"


async def _hash_mailbox_password(
    settings: Settings, action: Action, data: dict[str, Any]
) -> dict[str, Any]:
    if action == "create":
        data["password_hash"] = await mailboxes.new_mailbox_password(
            data.pop("password", None), settings.DINOMAIL_PASSWORD_SCHEME,
            email=str(data.get("email", "")), min_length=settings.MAILBOX_PASSWORD_MIN_LENGTH,
        )
    return data


async def _create_mailbox(conn: AsyncConnection, caller: Caller, data: dict[str, Any]) -> Row:
    password_hash = data.pop("password_hash")
    return await mailboxes.create(
        conn, caller.actor, caller.scope, data, password_hash=password_hash
    )


virtualuser = Resource(
    name="virtualuser",
    title="Mailboxes",
    description="The mailboxes (the original `core_virtualuser`). The password is never "
    "returned. Quota usage comes from Dovecot's quota_clone.",
    fields=(
        id_field(),
        Field("email", {"type": "string", "minLength": 1, "maxLength": 254},
              "The address; its domain must be the mailbox's domain.", required=True,
              unique=True),
        Field("quota", {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_BYTES},
              "Quota in bytes; 0 is unlimited; null (or absent on POST) takes the domain's "
              "default quota."),
        _domain_reference(description="The domain, as a URI (/api/virtualdomain/1/, also "
                          "with scheme and host) or an id. On POST it may be left out: the "
                          "address's domain is used."),
        Field("password", {"type": "string", "minLength": 1, "maxLength": 1024},
              "On POST only: the plain password, hashed with the configured scheme. Without "
              "it the mailbox gets a random password nobody knows.",
              write_only=True, create_only=CHANGE_PASSWORD),
        Field("active", {"type": "boolean"},
              "An inactive mailbox cannot log in or receive. True when a POST leaves it "
              "out."),
        Field("created_at", DATETIME, "When the mailbox was created.", read_only=True),
        Field("quota_used_bytes", {"type": "integer", "minimum": 0},
              "Bytes in the mailbox, as Dovecot last reported.", read_only=True),
        Field("quota_used_messages", {"type": "integer", "minimum": 0},
              "Messages in the mailbox, as Dovecot last reported.", read_only=True),
        Field("quota_updated_at", OPTIONAL_DATETIME, "When Dovecot last reported the usage.",
              read_only=True),
    ),
    list_options=ListOptions(
        orderable=mailboxes.ORDERABLE, keyset=("id", "email", "quota"),
        search="the address", domain_filter="the mailboxes of this domain (name or URI)",
    ),
    read_list=list_with_domain(mailboxes.list_window),
    read_one=lambda conn, caller, pk: mailboxes.get(conn, caller.scope, pk),
    create=_create_mailbox,
    update=lambda conn, caller, pk, data: mailboxes.update(
        conn, caller.actor, caller.scope, pk, data
    ),
    delete=lambda conn, caller, pk: mailboxes.delete(conn, caller.actor, caller.scope, pk),
    prepare=_hash_mailbox_password,
)


# --- virtualalias ---------------------------------------------------------------------------------


virtualalias = Resource(
    name="virtualalias",
    title="Aliases",
    description="Aliases (the original `core_virtualalias`): one object per source and "
    "destination; several destinations are several objects. A source `@domain` is the "
    "domain's catch-all.",
    fields=(
        id_field(),
        Field("source", {"type": "string", "minLength": 1, "maxLength": 254},
              "The address that is forwarded, or @domain for a catch-all; its domain must be "
              "the alias's domain.", required=True),
        Field("destination", {"type": "string", "minLength": 1, "maxLength": 254},
              "Where mail to the source goes.", required=True),
        _domain_reference(description="The source's domain, as a URI or an id. On POST it may "
                          "be left out: the source's domain is used."),
        Field("created_at", DATETIME, "When the alias was created.", read_only=True),
    ),
    list_options=ListOptions(
        orderable=aliases.ORDERABLE, keyset=("id", "source", "destination"),
        search="the source and the destination", domain_filter="the aliases of this domain",
    ),
    read_list=list_with_domain(aliases.list_window),
    read_one=lambda conn, caller, pk: aliases.get(conn, caller.scope, pk),
    create=lambda conn, caller, data: aliases.create(conn, caller.actor, caller.scope, data),
    update=lambda conn, caller, pk, data: aliases.update(
        conn, caller.actor, caller.scope, pk, data
    ),
    delete=lambda conn, caller, pk: aliases.delete(conn, caller.actor, caller.scope, pk),
)


# --- aliasdomain ----------------------------------------------------------------------------------

aliasdomain = Resource(
    name="aliasdomain",
    title="Alias domains",
    description="Alias domains: mail to local@name goes to local@target (a domain of "
    "/api/virtualdomain/). A domain admin manages those of their domains.",
    fields=(
        id_field(),
        Field("name", {"type": "string", "minLength": 1, "maxLength": 253},
              "The alias domain's name (not a mail domain as well).", required=True),
        _domain_reference(name="target_domain", column="target_domain_id", required=True,
                          description="The domain it stands for, as a URI or an id."),
        Field("active", {"type": "boolean"}, "An inactive alias domain resolves nothing."),
        Field("created_at", DATETIME, "When the alias domain was created.", read_only=True),
    ),
    list_options=ListOptions(
        orderable=aliasdomains.ORDERABLE, keyset=("id", "name"), search="the name",
        domain_filter="the alias domains of this target domain",
    ),
    read_list=list_with_domain(aliasdomains.list_window),
    read_one=lambda conn, caller, pk: aliasdomains.get(conn, caller.scope, pk),
    create=lambda conn, caller, data: aliasdomains.create(
        conn, caller.actor, caller.scope, data
    ),
    update=lambda conn, caller, pk, data: aliasdomains.update(
        conn, caller.actor, caller.scope, pk, data
    ),
    delete=lambda conn, caller, pk: aliasdomains.delete(conn, caller.actor, caller.scope, pk),
)


# --- domainlimit ----------------------------------------------------------------------------------


async def _with_usage(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    used = await limits.usage(conn, [row["id"] for row in rows])
    return [{**row, **used[row["id"]]} for row in rows]


async def _update_limits(
    conn: AsyncConnection, caller: Caller, pk: int, data: dict[str, Any]
) -> Row:
    return await domains.update(conn, caller.actor, caller.scope, pk, data)


def _limit(name: str, maximum: int, description: str) -> Field:
    return Field(name, {"type": "integer", "minimum": 0, "maximum": maximum},
                 f"{description} 0 is unlimited.")


def _usage(name: str, description: str) -> Field:
    return Field(name, {"type": "integer", "minimum": 0}, description, read_only=True)


domainlimit = Resource(
    name="domainlimit",
    title="Domain limits and usage",
    description="Each domain's limits and what it uses of them; the id is the domain's. Only a "
    "superadmin changes the limits; a domain admin may change the default quota of their "
    "domains. Byte usage is what Dovecot's quota_clone last reported.",
    fields=(
        id_field(),
        *domain_of_object(),
        _limit("max_mailboxes", MAX_COUNT, "How many mailboxes the domain may have."),
        _limit("max_aliases", MAX_COUNT, "How many aliases the domain may have."),
        _limit("max_quota_per_mailbox", MAX_BYTES,
               "The largest quota of one mailbox, in bytes; with it, every mailbox needs a "
               "quota."),
        _limit("total_quota", MAX_BYTES,
               "The sum of the mailboxes' quotas may not exceed this, in bytes."),
        _limit("default_quota", MAX_BYTES, "The quota of a mailbox created without one."),
        _usage("mailboxes", "How many mailboxes the domain has."),
        _usage("aliases", "How many aliases the domain has."),
        _usage("quota_allocated", "The sum of the mailboxes' quotas, in bytes."),
        _usage("quota_used_bytes", "Bytes stored in the domain's mailboxes."),
        _usage("quota_used_messages", "Messages stored in the domain's mailboxes."),
    ),
    list_options=PER_DOMAIN_LIST,
    read_list=list_with_domain(domains.list_window),
    read_one=read_domain,
    update=_update_limits,
    enrich=_with_usage,
)


# --- changeuserpassword ---------------------------------------------------------------------------

PASSWORD_STATUS = {"PUT": 204, "POST": 204, "PATCH": 202}


async def change_password(request: Request) -> Response:
    """`{"password": "<plain>"}` sets a mailbox's password, hashed with the configured scheme.

    Unlike the original, a missing or empty password is refused: the original re-hashed the
    stored hash, leaving a password nobody knew.
    """
    pk, caller = await object_call(request)
    require_write(caller)
    store = request.app.state.store
    async with store.read() as conn:
        # An unknown or foreign id is answered before the body is read.
        await mailboxes.get(conn, caller.scope, pk)
    body = await read_json_object(request)
    for name in body:
        if name not in ("password", "id", "resource_uri"):
            raise invalid(name, "is not a field of changeuserpassword (only password)")
    settings = request.app.state.settings
    await mailboxes.change_password(
        store, caller.actor, caller.scope, pk, body.get("password"),
        scheme=settings.DINOMAIL_PASSWORD_SCHEME, min_length=settings.MAILBOX_PASSWORD_MIN_LENGTH,
    )
    return Response(status_code=PASSWORD_STATUS[request.method])


RESOURCES = (virtualdomain, virtualuser, virtualalias, aliasdomain, domainlimit)
