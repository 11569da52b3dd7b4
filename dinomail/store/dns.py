"""Per-domain mail client settings (`dinomail_clientconfig`), generated DKIM keys
(`dinomail_dkimkey`), the selectors of replaced keys still published (`dinomail_dkimretiring`)
and DNS check results (`dinomail_dnscheck`, `dinomail_dnscheckrun`).

A DKIM private key is read by one function only, `dkim_private_key`, which writes an audit
entry; every other read leaves the column out, so it cannot reach a list, a log or a page by
accident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import dkim
from dinomail import validation as v
from dinomail.dkim import KeyPair
from dinomail.schema import (
    clientconfig,
    dkimkey,
    dkimretiring,
    dnscheck,
    dnscheckrun,
    mtastspolicy,
    virtualdomain,
)
from dinomail.store import audit, domains
from dinomail.store.common import Row, changed_values, fetch_all, now
from dinomail.store.errors import Conflict, NotFound
from dinomail.store.fields import clean_fields
from dinomail.store.scope import Scope

# Ids per `IN (...)` list: below SQLite's variable limit.
CHUNK = 500
MAX_DNS_NAME_LENGTH = 253

# --- mail client settings -------------------------------------------------------------------------

PROTOCOLS = ("imap", "pop3", "smtp")
PORT_FIELDS = tuple(f"{protocol}_{mode}_port" for protocol in PROTOCOLS
                    for mode in ("ssl", "starttls"))
CLIENT_DEFAULTS: dict[str, Any] = {
    "imap_ssl_port": 993, "imap_starttls_port": 143,
    "pop3_ssl_port": 995, "pop3_starttls_port": 110,
    "smtp_ssl_port": 465, "smtp_starttls_port": 587,
    "mx_host": "",
}
# IMAP and SMTP must each be offered somehow; POP3 may be turned off entirely.
REQUIRED_PROTOCOLS = ("imap", "smtp")


def normalize_port(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise v.ValidationError(
            field, "must be a port number (0 turns the mode off)", code="port_invalid"
        )
    if not 0 <= value <= 65535:
        raise v.ValidationError(
            field, "must be from 1 to 65535, or 0 to turn the mode off", code="port_invalid"
        )
    return value


CLIENT_NORMALIZERS: dict[str, Any] = {name: normalize_port for name in PORT_FIELDS}
CLIENT_NORMALIZERS["mx_host"] = v.normalize_hostname


async def client_configs(conn: AsyncConnection, domain_ids: Sequence[int]) -> dict[int, Row]:
    """The settings of each domain; a domain without a row gets the defaults."""
    found: dict[int, Row] = {}
    ids = list(domain_ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        query = sa.select(clientconfig).where(clientconfig.c.domain_id.in_(chunk))
        for row in await fetch_all(conn, query):
            found[row["domain_id"]] = row
    return {
        domain_id: found.get(domain_id, {"domain_id": domain_id, **CLIENT_DEFAULTS,
                                         "updated_at": None})
        for domain_id in ids
    }


async def update_client_config(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, data: Mapping[str, Any]
) -> Row:
    """Change a domain's client settings; the domain admin of the domain may."""
    domain = await domains.get(conn, scope, domain_id)
    values = clean_fields(data, CLIENT_NORMALIZERS)
    old = (await client_configs(conn, [domain_id]))[domain_id]
    new = {name: values.get(name, old[name]) for name in CLIENT_DEFAULTS}
    for protocol in REQUIRED_PROTOCOLS:
        if not new[f"{protocol}_ssl_port"] and not new[f"{protocol}_starttls_port"]:
            raise v.ValidationError(
                f"{protocol}_ssl_port",
                f"{protocol.upper()} must be offered with implicit TLS or STARTTLS (or both)",
                code="protocol_port_required", params={"protocol": protocol.upper()},
            )
    before, after = changed_values(old, values)
    if after:
        await _upsert(conn, clientconfig, ("domain_id",),
                      {"domain_id": domain_id, **new, "updated_at": now()})
        await audit.record(conn, actor, "update", "clientconfig", domain_id, domain["name"],
                           old=before, new=after, domain_id=domain_id)
    return domain


# --- DKIM keys ------------------------------------------------------------------------------------

# Every column but the private key.
_PUBLIC_KEY_COLUMNS = (
    dkimkey.c.domain_id, dkimkey.c.selector, dkimkey.c.algorithm, dkimkey.c.key_bits,
    dkimkey.c.public_key, dkimkey.c.created_at,
)


async def dkim_key(conn: AsyncConnection, scope: Scope, domain_id: int) -> Row | None:
    """The generated key of a visible domain, without its private half; None if none."""
    await domains.get(conn, scope, domain_id)
    row = (await conn.execute(
        sa.select(*_PUBLIC_KEY_COLUMNS).where(dkimkey.c.domain_id == domain_id)
    )).mappings().first()
    return dict(row) if row else None


async def retiring_keys(conn: AsyncConnection, scope: Scope, domain_id: int) -> list[Row]:
    """The selectors of a visible domain that a rotation replaced and that are still to be
    published (until an admin retires them), newest first."""
    await domains.get(conn, scope, domain_id)
    return await _retiring_rows(conn, [domain_id])


async def _retiring_rows(conn: AsyncConnection, domain_ids: Sequence[int]) -> list[Row]:
    found: list[Row] = []
    ids = list(domain_ids)
    for start in range(0, len(ids), CHUNK):
        found += await fetch_all(conn, (
            sa.select(dkimretiring)
            .where(dkimretiring.c.domain_id.in_(ids[start:start + CHUNK]))
            .order_by(dkimretiring.c.domain_id, dkimretiring.c.replaced_at.desc(),
                      dkimretiring.c.selector)
        ))
    return found


async def retiring_by_domain(conn: AsyncConnection, domain_ids: Sequence[int]
                             ) -> dict[int, list[Row]]:
    """The retiring selectors of each domain (for the DNS checks, which see every domain)."""
    found: dict[int, list[Row]] = {domain_id: [] for domain_id in domain_ids}
    for row in await _retiring_rows(conn, domain_ids):
        found[row["domain_id"]].append(row)
    return found


async def new_selector(
    conn: AsyncConnection, scope: Scope, domain_id: int, selector: str | None, moment: datetime
) -> str:
    """The selector of a new key for a visible domain: the one asked for (already normalized),
    else a dated one. Either way one the domain does not publish already, so a rotation leaves
    the old record published under its own name."""
    domain = await domains.get(conn, scope, domain_id)
    retiring = [row["selector"] for row in await _retiring_rows(conn, [domain_id])]
    taken = [*retiring, domain["dkim_key_name"]] if domain["dkim_key_name"] else retiring
    chosen = selector or dkim.default_selector(moment, taken)
    if len(dkim.record_name(chosen, domain["name"])) > MAX_DNS_NAME_LENGTH:
        raise v.ValidationError("selector", "the selector is too long for this domain's DNS name",
                                code="dkim_selector_too_long_for_domain")
    _check_selector_free(domain, retiring, chosen)
    return chosen


def _check_selector_free(domain: Mapping[str, Any], retiring: Sequence[str], selector: str
                         ) -> None:
    if selector == domain["dkim_key_name"] and domain["dkim_key"].strip():
        raise Conflict(
            f"the domain publishes its current key under the selector {selector}: a new key "
            "needs a new selector, so that the old record stays published",
            field="selector", code="dkim_selector_in_use", params={"selector": selector},
        )
    if selector in retiring:
        raise Conflict(
            f"the selector {selector} still publishes a previous key of the domain: retire it "
            "first, or choose another selector",
            field="selector", code="dkim_selector_retiring", params={"selector": selector},
        )


async def save_dkim_key(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, selector: str, pair: KeyPair
) -> Row:
    """Store a new key pair for the domain and make it the domain's published key
    (`dkim_key_name`, `dkim_key`). When the domain published a key already (a rotation), its
    selector and record are kept as retiring, still to be published, until an admin retires
    them (`retire_dkim_selector`; as for a selector changed by hand, `domains.update`); its
    private key is dropped, since the signer signs with the current key only. The new selector
    must differ from every published one."""
    domain = await domains.get(conn, scope, domain_id)
    previous = await dkim_key(conn, scope, domain_id)
    retiring = [row["selector"] for row in await _retiring_rows(conn, [domain_id])]
    _check_selector_free(domain, retiring, selector)
    old_selector, old_value = domain["dkim_key_name"], "".join(domain["dkim_key"].split())
    await _upsert(conn, dkimkey, ("domain_id",), {
        "domain_id": domain_id, "selector": selector, "algorithm": pair.algorithm,
        "key_bits": pair.key_bits, "dkim_private_key": pair.private_pem,
        "public_key": pair.public_value, "created_at": now(),
    })
    # The domain's update keeps the replaced record as retiring (`retiring.selector_changing`).
    await domains.update(conn, actor, scope, domain_id,
                         {"dkim_key_name": selector, "dkim_key": pair.public_value})
    shown = {"selector": selector, "algorithm": pair.algorithm, "key_bits": pair.key_bits}
    rotated = bool(previous) or bool(old_selector and old_value)
    await audit.record(
        conn, actor, "rotate_dkim" if rotated else "generate_dkim", "dkimkey", domain_id,
        domain["name"], old={"selector": old_selector} if rotated else None, new=shown,
        domain_id=domain_id,
    )
    saved = await dkim_key(conn, scope, domain_id)
    assert saved is not None
    return saved


async def retire_dkim_selector(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, selector: object
) -> Row:
    """Stop publishing a selector a rotation replaced: it leaves the domain's records and DNS
    check (the admin removes it from the zone). The current selector cannot be retired."""
    domain = await domains.get(conn, scope, domain_id)
    chosen = dkim.normalize_selector(selector)
    if chosen == domain["dkim_key_name"]:
        raise Conflict(
            f"{chosen} is the domain's current DKIM selector: only the selector of a replaced "
            "key can be retired",
            field="selector", code="dkim_selector_current", params={"selector": chosen},
        )
    removed = await conn.execute(dkimretiring.delete().where(
        dkimretiring.c.domain_id == domain_id, dkimretiring.c.selector == chosen,
    ))
    if not removed.rowcount:
        raise NotFound(
            f"the domain has no retiring DKIM selector {chosen}",
            field="selector", code="dkim_selector_unknown", params={"selector": chosen},
        )
    await audit.record(conn, actor, "retire_dkim", "dkimkey", domain_id, domain["name"],
                       old={"selector": chosen}, domain_id=domain_id)
    return domain


async def dkim_private_key(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int
) -> Row:
    """The private key of the domain's current DKIM key, for its signer. Audited; the caller
    decides who may (the API: superadmins only)."""
    domain = await domains.get(conn, scope, domain_id)
    row = (await conn.execute(
        sa.select(dkimkey).where(dkimkey.c.domain_id == domain_id)
    )).mappings().first()
    if row is None or not key_in_use(domain, row):
        raise NotFound(
            "DinoMail holds no private key for the domain's current DKIM key",
            code="dkim_private_key_missing",
        )
    await audit.record(conn, actor, "export_dkim", "dkimkey", domain_id, domain["name"],
                       new={"selector": row["selector"]}, domain_id=domain_id)
    return {**dict(row), "domain": domain["name"]}


def key_summary(domain: Mapping[str, Any], key: Mapping[str, Any] | None,
                retiring: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The published key, whether DinoMail made it or an admin typed it in, and the TXT record
    to publish for it (`key` is the stored key, from `dkim_key`); `retiring` lists the records
    of replaced keys still to be published (rows of `retiring_keys`)."""
    selector, value = domain["dkim_key_name"], domain["dkim_key"]
    generated = key is not None and key_in_use(domain, key)
    summary: dict[str, Any] = {
        "selector": selector or None, "algorithm": None, "key_bits": None,
        "dkim_key": value, "generated": generated,
        "created_at": key["created_at"] if generated and key else None,
        "record_name": None, "txt_record": None, "txt_strings": [], "zone_line": None,
    }
    if generated and key:
        summary["algorithm"], summary["key_bits"] = key["algorithm"], key["key_bits"]
    elif value:
        summary["algorithm"], summary["key_bits"] = _read_key(value, None)
    if selector and value:
        summary |= _record(domain["name"], selector, summary["algorithm"] or dkim.RSA, value)
    summary["retiring"] = [
        {"selector": row["selector"], "algorithm": row["algorithm"],
         "key_bits": _read_key(row["public_key"], row["algorithm"])[1],
         "replaced_at": row["replaced_at"],
         **_record(domain["name"], row["selector"], row["algorithm"], row["public_key"])}
        # A selector typed back in on the domain is the current one again, shown once.
        for row in retiring if row["selector"] != selector
    ]
    return summary


def _read_key(value: str, algorithm: str | None) -> tuple[str | None, int | None]:
    try:
        public = dkim.public_key_of(value, algorithm)
    except dkim.DkimError:
        return algorithm, None  # shown as it is; the DNS check says what is wrong with it
    return public.algorithm, public.key_bits


def _record(domain: str, selector: str, algorithm: str, value: str) -> dict[str, Any]:
    text = dkim.record_text(algorithm, "".join(value.split()))
    return {
        "record_name": dkim.record_name(selector, domain),
        "txt_record": text,
        "txt_strings": dkim.split_txt(text),
        "zone_line": dkim.zone_line(selector, domain, text),
    }


def key_in_use(domain: Mapping[str, Any], key: Mapping[str, Any] | sa.RowMapping) -> bool:
    """The stored key is still what the domain publishes (the selector and key can be edited by
    hand on the domain, which leaves the stored private key behind)."""
    return (domain["dkim_key_name"] == key["selector"]
            and "".join(domain["dkim_key"].split()) == key["public_key"])


# --- DNS check results ----------------------------------------------------------------------------


def _targets_query() -> sa.Select:
    return (
        sa.select(
            virtualdomain.c.id, virtualdomain.c.name, virtualdomain.c.dkim_key_name,
            virtualdomain.c.dkim_key, virtualdomain.c.dkim_status, virtualdomain.c.dmarc_status,
            virtualdomain.c.spf_status, virtualdomain.c.dkim_last_update,
            virtualdomain.c.dmarc_last_update, virtualdomain.c.spf_last_update,
            clientconfig.c.mx_host, dnscheckrun.c.inputs, dnscheckrun.c.checked_at,
            dnscheckrun.c.requested_at, dnscheckrun.c.incomplete,
            mtastspolicy.c.mode.label("sts_mode"), mtastspolicy.c.mx.label("sts_mx"),
            mtastspolicy.c.max_age.label("sts_max_age"),
        )
        .select_from(virtualdomain)
        .outerjoin(clientconfig, clientconfig.c.domain_id == virtualdomain.c.id)
        .outerjoin(mtastspolicy, mtastspolicy.c.domain_id == virtualdomain.c.id)
        .outerjoin(dnscheckrun, dnscheckrun.c.domain_id == virtualdomain.c.id)
    )


async def check_targets(
    conn: AsyncConnection, *, after_id: int = 0, limit: int = CHUNK,
    domain_ids: Sequence[int] | None = None,
) -> list[Row]:
    """What the checks of each domain need and when it was last checked, in id order:
    `limit` domains after `after_id`, or the given ones. `mx_host` and the run's columns are
    None for a domain that has no row there yet; `dkim_retiring` lists the domain's retiring
    selectors (rows of `dinomail_dkimretiring`)."""
    query = _targets_query().order_by(virtualdomain.c.id)
    if domain_ids is not None:
        rows = await fetch_all(conn, query.where(virtualdomain.c.id.in_(list(domain_ids))))
    else:
        rows = await fetch_all(conn, query.where(virtualdomain.c.id > after_id).limit(limit))
    retiring = await retiring_by_domain(conn, [row["id"] for row in rows])
    return [{**row, "dkim_retiring": retiring[row["id"]]} for row in rows]


async def save_check_results(
    conn: AsyncConnection,
    domain_id: int,
    results: Sequence[Mapping[str, Any]],
    *,
    inputs: str,
    incomplete: bool,
    started_at: datetime,
    original: Mapping[str, int],
) -> bool:
    """Store one run of a domain's checks: `results` as `{"name", "status", "details"}`.

    `original` holds the statuses for the original columns (`dkim_status`, ...); they are
    written only when they change, because core_virtualdomain is a mail table and each write
    there wakes every lookup daemon. False if the domain was deleted meanwhile.
    """
    domain = (await conn.execute(
        sa.select(virtualdomain.c.dkim_status, virtualdomain.c.dmarc_status,
                  virtualdomain.c.spf_status).where(virtualdomain.c.id == domain_id)
    )).mappings().first()
    if domain is None:
        return False
    moment = now()
    for result in results:
        await _upsert(conn, dnscheck, ("domain_id", "name"), {
            "domain_id": domain_id, "name": result["name"], "status": result["status"],
            "details": json.dumps(result["details"], sort_keys=True, default=str),
            "checked_at": moment,
        })
    await _upsert(conn, dnscheckrun, ("domain_id",), {
        "domain_id": domain_id, "inputs": inputs, "checked_at": moment, "incomplete": incomplete,
    })
    # A request made while this run was under way asked for news this run may not have seen.
    await conn.execute(
        dnscheckrun.update()
        .where(dnscheckrun.c.domain_id == domain_id, dnscheckrun.c.requested_at <= started_at)
        .values(requested_at=None)
    )
    changed: dict[str, Any] = {}
    for column, status in original.items():
        if domain[column] != status:
            changed[column] = status
            changed[column.replace("_status", "_last_update")] = moment
    if changed:
        await domains.set_dns_status(conn, domain_id, changed)
    return True


async def check_results(conn: AsyncConnection, domain_id: int) -> tuple[Row | None, list[Row]]:
    """The last run of a domain's checks (None if never run) and its stored results."""
    run = (await conn.execute(
        sa.select(dnscheckrun).where(dnscheckrun.c.domain_id == domain_id)
    )).mappings().first()
    results = await fetch_all(
        conn, sa.select(dnscheck).where(dnscheck.c.domain_id == domain_id)
    )
    for row in results:
        row["details"] = json.loads(row["details"])
    return (dict(run) if run else None), results


async def request_check(conn: AsyncConnection, scope: Scope, domain_id: int) -> datetime:
    """Ask for the domain's checks to run soon (the background checker does them)."""
    await domains.get(conn, scope, domain_id)
    moment = now()
    await _upsert(conn, dnscheckrun, ("domain_id",), {"domain_id": domain_id,
                                                      "requested_at": moment})
    return moment


async def status_counts(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    """How many domains have each status for each check: (check, status, count)."""
    query = (
        sa.select(dnscheck.c.name, dnscheck.c.status, sa.func.count())
        .group_by(dnscheck.c.name, dnscheck.c.status)
    )
    return [(row[0], row[1], int(row[2])) for row in await conn.execute(query)]


async def _upsert(
    conn: AsyncConnection, table: sa.Table, keys: tuple[str, ...], values: Mapping[str, Any]
) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    updates = {name: statement.excluded[name] for name in values if name not in keys}
    await conn.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
        if updates else statement.on_conflict_do_nothing(index_elements=list(keys))
    )
