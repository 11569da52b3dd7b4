"""DNS health, DKIM keys and mail client settings in the API:

- `/api/clientconfig/<domain id>/`: what autoconfig offers a domain's clients (ports and TLS
  modes) and the host its MX should name; a resource like the others;
- `/api/virtualdomain/<id>/dkim/`: GET the domain's DKIM key and the TXT records to publish
  (the current key's, and those of replaced keys not yet retired); POST to generate a key pair,
  or a new one with a new selector (a rotation: the old selector stays published, retiring);
- `/api/virtualdomain/<id>/dkim/retire/`: POST `{"selector": ...}` to stop publishing the
  record of a replaced key, once mail signed with it has been delivered;
- `/api/virtualdomain/<id>/dkim/private/`: GET the private key and the signer's table lines
  (superadmins only, audited, never in a list);
- `/api/virtualdomain/<id>/dnscheck/`: GET the last results of the DNS checks; POST to have
  them run again soon (the background checker runs them, usually within seconds: poll GET
  until `pending` is false).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import Caller, require_superadmin, require_write
from adminapi.api.body import read_json_object
from adminapi.api.errors import invalid
from adminapi.api.mail import NO_ROWS, PER_DOMAIN_LIST, domain_of_object, list_request, read_domain
from adminapi.api.openapi import ERROR_MEANINGS, ID_PARAMETER, KEY_SECURITY
from adminapi.api.paging import ListQuery
from adminapi.api.resource import (
    OPTIONAL_DATETIME,
    Field,
    Resource,
    id_field,
    object_call,
)
from adminapi.api.serialize import resource_uri
from adminapi.api.values import check_value
from adminapi.autoconfig.servers import imap_host, pop3_host, smtp_host
from dinomail import dkim
from dinomail.dnscheck import CHECK_NAMES, CheckStatus, read_report, request_run
from dinomail.dnscheck.model import (
    ANSWER,
    ERROR,
    NODATA,
    NXDOMAIN,
    SERVFAIL,
    TIMEOUT,
    iso_time,
)
from dinomail.dnscheck.runner import DomainReport
from dinomail.settings import Settings
from dinomail.store import Store, domains
from dinomail.store import dns as dns_store
from dinomail.store.common import Row, Window, now

TAG = "DNS, DKIM and mail clients"
JSON = "application/json"

# --- clientconfig ---------------------------------------------------------------------------------


async def _list_client_configs(conn: AsyncConnection, caller: Caller, query: ListQuery) -> Window:
    request = await list_request(conn, caller, query)
    if request is None:
        return NO_ROWS
    return await domains.list_window(conn, caller.scope, request)


async def _with_client_config(conn: AsyncConnection, rows: list[Row]) -> list[Row]:
    configs = await dns_store.client_configs(conn, [row["id"] for row in rows])
    return [{**row, **configs[row["id"]]} for row in rows]


def _port(name: str, description: str) -> Field:
    return Field(name, {"type": "integer", "minimum": 0, "maximum": 65535},
                 f"{description} 0: not offered. Default {dns_store.CLIENT_DEFAULTS[name]}.")


def _host(name: str, description: str, host: Any) -> Field:
    return Field(name, {"type": "string"}, description, read_only=True, from_row=host)


clientconfig = Resource(
    name="clientconfig",
    title="Mail client settings",
    description="What autoconfig (Thunderbird), Autodiscover (Outlook) and .mobileconfig (Apple) "
    "offer a domain's mail clients, and the host its MX should name (checked by the DNS "
    "checks). The id is the domain's. Host names are the domain's imap_address, pop_address "
    "and smtp_address (shown here as clients get them). Implicit TLS is offered first, "
    "STARTTLS as the alternative; IMAP and SMTP need at least one of the two.",
    fields=(
        id_field(),
        *domain_of_object(),
        _host("imap_host", "The IMAP host clients get: imap_address, else imap.<domain>.",
              imap_host),
        _host("pop3_host", "The POP3 host clients get: pop_address; empty: no POP3 offered.",
              pop3_host),
        _host("smtp_host", "The SMTP host clients get: smtp_address, else smtp.<domain>.",
              smtp_host),
        _port("imap_ssl_port", "IMAP port with implicit TLS."),
        _port("imap_starttls_port", "IMAP port with STARTTLS."),
        _port("pop3_ssl_port", "POP3 port with implicit TLS."),
        _port("pop3_starttls_port", "POP3 port with STARTTLS."),
        _port("smtp_ssl_port", "Submission port with implicit TLS."),
        _port("smtp_starttls_port", "Submission port with STARTTLS."),
        Field("mx_host", {"type": "string", "maxLength": 253},
              "The host the domain's MX should name; empty: the MX_HOST setting."),
        Field("updated_at", OPTIONAL_DATETIME, "When the settings were last changed; null: "
              "never (the defaults).", read_only=True),
    ),
    list_options=PER_DOMAIN_LIST,
    read_list=_list_client_configs,
    read_one=read_domain,
    update=lambda conn, caller, pk, data: dns_store.update_client_config(
        conn, caller.actor, caller.scope, pk, data
    ),
    enrich=_with_client_config,
)


# --- DKIM -----------------------------------------------------------------------------------------

SELECTOR_PATTERN = (
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
DKIM_INPUT: dict[str, dict[str, Any]] = {
    "selector": {"type": "string", "minLength": 1, "maxLength": dkim.MAX_SELECTOR_LENGTH,
                 "pattern": SELECTOR_PATTERN,
                 "description": "The new key's selector; default dm<YYYYMMDD>. Use a new one "
                 "when rotating, so the old record can stay published a few days."},
    "algorithm": {"type": "string", "enum": list(dkim.ALGORITHMS),
                  "description": "rsa (default; every verifier knows it) or ed25519 (RFC "
                  "8463; many verifiers ignore it, so sign with an RSA key too)."},
    "key_bits": {"type": "integer", "enum": list(dkim.RSA_KEY_BITS),
                 "description": f"RSA key size; default {dkim.DEFAULT_RSA_BITS}."},
}


def _store(request: Request) -> Store:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _key_summary(domain: Mapping[str, Any], key: Mapping[str, Any] | None,
                 retiring: list[Row]) -> dict[str, Any]:
    summary = dns_store.key_summary(domain, key, retiring)
    shown = [{**old, "replaced_at": iso_time(old["replaced_at"])} for old in summary["retiring"]]
    return {**summary, "created_at": iso_time(summary["created_at"]), "retiring": shown}


async def _dkim_body(request: Request, pk: int, caller: Caller) -> dict[str, Any]:
    async with _store(request).read() as conn:
        domain = await domains.get(conn, caller.scope, pk)
        key = await dns_store.dkim_key(conn, caller.scope, pk)
        retiring = await dns_store.retiring_keys(conn, caller.scope, pk)
    report = await read_report(_store(request), _settings(request), caller.scope, pk)
    check = report.check("dkim")
    body = {"domain": resource_uri("virtualdomain", pk), "name": domain["name"],
            **_key_summary(domain, key, retiring), "dkim_status": domain["dkim_status"],
            "check": check.as_json() if check else None}
    return body


async def _optional_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or {} when there is none (POST with defaults)."""
    no_body = request.headers.get("content-length") in (None, "0")
    if no_body and "transfer-encoding" not in request.headers:
        return {}
    return await read_json_object(request)


def _dkim_choices(body: Mapping[str, Any]) -> dict[str, Any]:
    for name in body:
        if name not in DKIM_INPUT:
            raise invalid(name, "is not a field here (selector, algorithm, key_bits)")
    choices = {name: check_value(schema, body[name], name)
               for name, schema in DKIM_INPUT.items() if name in body}
    algorithm = choices.get("algorithm", dkim.RSA)
    if algorithm != dkim.RSA and "key_bits" in choices:
        raise invalid("key_bits", "only RSA keys have a choice of size")
    choices["algorithm"] = algorithm
    choices.setdefault("key_bits", dkim.DEFAULT_RSA_BITS)
    if "selector" in choices:
        choices["selector"] = dkim.normalize_selector(choices["selector"])
    return choices


async def dkim_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    if request.method != "POST":
        return JSONResponse(await _dkim_body(request, pk, caller))
    require_write(caller)
    async with _store(request).read() as conn:
        await domains.get(conn, caller.scope, pk)
    choices = _dkim_choices(await _optional_json_object(request))
    async with _store(request).read() as conn:
        selector = await dns_store.new_selector(conn, caller.scope, pk, choices.get("selector"),
                                                now())
    # A 4096-bit key takes a few tenths of a second: not on the event loop.
    pair = await asyncio.to_thread(dkim.generate_key, choices["algorithm"], choices["key_bits"])
    async with _store(request).write() as conn:
        await dns_store.save_dkim_key(conn, caller.actor, caller.scope, pk, selector, pair)
    location = f"{resource_uri('virtualdomain', pk)}dkim/"
    return JSONResponse(await _dkim_body(request, pk, caller), status_code=201,
                        headers={"Location": location})


async def dkim_retire_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    require_write(caller)
    async with _store(request).read() as conn:
        await domains.get(conn, caller.scope, pk)
    body = await read_json_object(request)
    for name in body:
        if name != "selector":
            raise invalid(name, "is not a field here (selector)")
    if "selector" not in body:
        raise invalid("selector", "the selector to retire is required")
    async with _store(request).write() as conn:
        await dns_store.retire_dkim_selector(conn, caller.actor, caller.scope, pk,
                                             body["selector"])
    return JSONResponse(await _dkim_body(request, pk, caller))


async def dkim_private_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    require_superadmin(caller)
    async with _store(request).write() as conn:
        row = await dns_store.dkim_private_key(conn, caller.actor, caller.scope, pk)
    key = dkim.SignerKey(row["domain"], row["selector"], row["dkim_private_key"])
    key_dir = _settings(request).DKIM_KEY_DIR
    body = {
        "domain": resource_uri("virtualdomain", pk), "name": row["domain"],
        "selector": row["selector"], "algorithm": row["algorithm"],
        "key_bits": row["key_bits"], "private_key": row["dkim_private_key"],
        "key_file": dkim.key_path(key, key_dir),
        "opendkim_key_table": dkim.opendkim_key_table([key], key_dir),
        "opendkim_signing_table": dkim.opendkim_signing_table([key]),
        "rspamd_selector_map": dkim.rspamd_selector_map([key]),
        "rspamd_path_map": dkim.rspamd_path_map([key], key_dir),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# --- DNS checks -----------------------------------------------------------------------------------


def _report_body(pk: int, report: DomainReport) -> dict[str, Any]:
    return {"domain": resource_uri("virtualdomain", pk), **report.as_json()}


async def dnscheck_endpoint(request: Request) -> Response:
    pk, caller = await object_call(request)
    status = 200
    if request.method == "POST":
        require_write(caller)
        await request_run(_store(request), caller.scope, pk)
        status = 202
    report = await read_report(_store(request), _settings(request), caller.scope, pk)
    return JSONResponse(_report_body(pk, report), status_code=status)


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods) under a domain's URI."""
    return [
        ("dkim/", dkim_endpoint, ["GET", "POST"]),
        ("dkim/private/", dkim_private_endpoint, ["GET"]),
        ("dkim/retire/", dkim_retire_endpoint, ["POST"]),
        ("dnscheck/", dnscheck_endpoint, ["GET", "POST"]),
    ]


# --- the OpenAPI document -------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": ERROR_MEANINGS[status],
                                "content": {JSON: {"schema": _ref("Error")}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 503:
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return response


def _operation(operation_id: str, summary: str, description: str,
               success: dict[int, dict[str, Any]], errors: list[int],
               **parts: Any) -> dict[str, Any]:
    responses = {str(status): response for status, response in success.items()}
    responses |= {str(status): _error(status) for status in errors}
    return {"operationId": operation_id, "summary": summary, "description": description,
            "tags": [TAG], "security": KEY_SECURITY, "responses": responses, **parts}


def _ok(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}, **extra}


def openapi_paths() -> dict[str, Any]:
    base = "/api/virtualdomain/{id}/"
    dkim_body = {"required": False, "content": {JSON: {"schema": _ref("dkim_create")}}}
    location = {"Location": {"description": "The domain's DKIM URI.", "required": True,
                             "schema": {"type": "string"}}}
    return {
        f"{base}dkim/": {
            "parameters": [ID_PARAMETER],
            "get": _operation(
                "dkim_read", "Read a domain's DKIM key and its DNS record",
                "The domain's selector and public key, the TXT record to publish (whole, and "
                "split into strings of 255 bytes as zone files need), the records of replaced "
                "keys still to be published (retiring), and the last DNS check.",
                {200: _ok("The key.", "dkim")}, [400, 401, 404, 503]),
            "post": _operation(
                "dkim_generate", "Generate (or rotate) a domain's DKIM key",
                "Makes a new key pair, stores its private half for the signer, and makes it "
                "the domain's published key (dkim_key_name and dkim_key). The body is "
                "optional. Publish the new record before the signer uses the new key. When "
                "the domain had a key (a rotation), its selector and record stay listed in "
                "retiring, to keep published until mail signed with the old key has been "
                "delivered; then retire it (dkim/retire/). The new selector must differ from "
                "every published one (409 otherwise). The old private key is not kept: the "
                "signer signs with the current key only.",
                {201: _ok("The new key.", "dkim", headers=location)},
                [400, 401, 403, 404, 409, 413, 503], requestBody=dkim_body),
        },
        f"{base}dkim/retire/": {
            "parameters": [ID_PARAMETER],
            "post": _operation(
                "dkim_retire", "Retire a replaced DKIM selector",
                "Stops listing (and checking) the record of a key a rotation replaced; remove "
                "it from the zone too. Audited. 400 (field selector) for a selector that is not "
                "retiring; 409 for the current selector, which a rotation replaces first.",
                {200: _ok("The domain's DKIM key and the records left.", "dkim")},
                [400, 401, 403, 404, 409, 413, 503],
                requestBody={"required": True,
                             "content": {JSON: {"schema": _ref("dkim_retire")}}}),
        },
        f"{base}dkim/private/": {
            "parameters": [ID_PARAMETER],
            "get": _operation(
                "dkim_private", "Export a domain's DKIM private key for the signer",
                "Superadmins only; audited. The PEM key and the OpenDKIM and Rspamd lines "
                "that use it (key files under DKIM_KEY_DIR). 404 when DinoMail did not make "
                "the domain's current key.",
                {200: _ok("The private key.", "dkim_private")}, [400, 401, 403, 404, 503]),
        },
        f"{base}dnscheck/": {
            "parameters": [ID_PARAMETER],
            "get": _operation(
                "dnscheck_read", "Read a domain's DNS check results",
                "The last results of each check (DKIM, SPF, DMARC, MX, MTA-STS, TLS-RPT, "
                "autoconfig and autodiscover names). Checks run in the background on a "
                "schedule and after the domain's DNS-relevant fields change.",
                {200: _ok("The results.", "dnscheck")}, [400, 401, 404, 503]),
            "post": _operation(
                "dnscheck_run", "Have a domain's DNS checks run now",
                "Asks the background checker to check the domain now; the answer is the "
                "current results with pending true. Read them again until pending is false.",
                {202: _ok("Asked; the current results.", "dnscheck")},
                [400, 401, 403, 404, 503]),
        },
    }


def openapi_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    nullable_text = {"type": ["string", "null"]}
    nullable_time = {"type": ["string", "null"], "format": "date-time"}
    query = {
        "type": "object",
        "properties": {
            "name": text, "type": text,
            "outcome": {"type": "string",
                        "enum": [ANSWER, NXDOMAIN, NODATA, TIMEOUT, SERVFAIL, ERROR]},
            "records": {"type": "array", "items": text},
            "error": nullable_text,
            "canonical_name": {**text, "description": "Where a CNAME chain led."},
        },
        "required": ["name", "type", "outcome", "records", "error"],
    }
    check = {
        "type": "object",
        "description": "One check's last result: what was asked, what came back, what was "
        "expected and what is wrong.",
        "properties": {
            "name": {"type": "string", "enum": list(CHECK_NAMES)},
            "status": {"type": "string", "enum": [str(status) for status in CheckStatus],
                       "description": "ok, warning, missing, absent (optional record not "
                       "published), invalid, mismatch, not_configured, could_not_check (DNS "
                       "did not answer: nothing is known about the record)."},
            "checked_at": nullable_time,
            "summary": text,
            "queries": {"type": "array", "items": _ref("DnsQuery")},
            "expected": nullable_text,
            "found": nullable_text,
            "problems": {"type": "array", "items": text},
            "data": {"type": "object", "description": "What the check read from the records."},
        },
        "required": ["name", "status", "checked_at", "summary", "queries", "expected", "found",
                     "problems", "data"],
    }
    report = {
        "type": "object",
        "properties": {
            "domain": text, "name": text,
            "pending": {"type": "boolean",
                        "description": "A check will run soon (asked for, never run, or the "
                        "domain's DKIM key or mail host changed since)."},
            "requested_at": nullable_time, "checked_at": nullable_time,
            "dkim_status": {"type": "integer", "description": "The original column."},
            "dmarc_status": {"type": "integer", "description": "The original column."},
            "spf_status": {"type": "integer", "description": "The original column."},
            "checks": {"type": "array", "items": _ref("DnsCheck")},
        },
        "required": ["domain", "name", "pending", "requested_at", "checked_at", "dkim_status",
                     "dmarc_status", "spf_status", "checks"],
    }
    key = {
        "type": "object",
        "properties": {
            "domain": text, "name": text,
            "selector": nullable_text,
            "algorithm": {"type": ["string", "null"], "enum": [*dkim.ALGORITHMS, None]},
            "key_bits": {"type": ["integer", "null"]},
            "dkim_key": {**text, "description": "The p= value (the domain's dkim_key)."},
            "generated": {"type": "boolean",
                          "description": "DinoMail made this key and holds its private half."},
            "created_at": nullable_time,
            "record_name": nullable_text,
            "txt_record": {**nullable_text, "description": "The TXT record's text."},
            "txt_strings": {"type": "array", "items": text,
                            "description": "The text as strings of at most 255 bytes."},
            "zone_line": {**nullable_text, "description": "The record as a zone file line."},
            "dkim_status": {"type": "integer", "description": "The original column."},
            "check": {"anyOf": [_ref("DnsCheck"), {"type": "null"}]},
            "retiring": {"type": "array", "items": _ref("dkim_retiring"),
                         "description": "Records of keys a rotation replaced, newest first: "
                         "keep them published until mail signed with them has been delivered "
                         "(a few days), then retire them."},
        },
        "required": ["domain", "name", "selector", "algorithm", "key_bits", "dkim_key",
                     "generated", "created_at", "record_name", "txt_record", "txt_strings",
                     "zone_line", "dkim_status", "check", "retiring"],
    }
    retiring = {
        "type": "object",
        "properties": {
            "selector": text,
            "algorithm": {"type": "string", "enum": list(dkim.ALGORITHMS)},
            "key_bits": {"type": ["integer", "null"]},
            "replaced_at": {"type": "string", "format": "date-time"},
            "record_name": text, "txt_record": text,
            "txt_strings": {"type": "array", "items": text},
            "zone_line": text,
        },
        "required": ["selector", "algorithm", "key_bits", "replaced_at", "record_name",
                     "txt_record", "txt_strings", "zone_line"],
    }
    retire = {"type": "object", "properties": {"selector": DKIM_INPUT["selector"] | {
        "description": "The retiring selector to stop publishing."}},
        "required": ["selector"], "additionalProperties": False}
    private = {
        "type": "object",
        "properties": {
            name: text for name in (
                "domain", "name", "selector", "algorithm", "private_key", "key_file",
                "opendkim_key_table", "opendkim_signing_table", "rspamd_selector_map",
                "rspamd_path_map",
            )
        } | {"key_bits": {"type": "integer"}},
        "required": ["domain", "name", "selector", "algorithm", "key_bits", "private_key",
                     "key_file", "opendkim_key_table", "opendkim_signing_table",
                     "rspamd_selector_map", "rspamd_path_map"],
    }
    create = {"type": "object", "properties": DKIM_INPUT, "additionalProperties": False}
    return {"DnsQuery": query, "DnsCheck": check, "dnscheck": report, "dkim": key,
            "dkim_private": private, "dkim_create": create, "dkim_retiring": retiring,
            "dkim_retire": retire}
