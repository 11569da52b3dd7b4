"""`dinomail export`: the whole installation (or some domains) as one JSON document, streamed.

Rows are read in keyset pages (`WHERE id > last ORDER BY id LIMIT n`, the way the lookup
daemon's full load pages) inside one read transaction, and written out page by page: memory
stays bounded whatever the number of mailboxes, and the document is a consistent snapshot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import (
    admin,
    admin_domain,
    adminpasskey,
    adminrecoverycode,
    admintotp,
    aliasdomain,
    apikey,
    apppassword,
    clientconfig,
    dkimkey,
    dkimretiring,
    domainselfservice,
    domainsendlimit,
    mailboxrecoverycode,
    mailboxsendlimit,
    mailboxtotp,
    mtastspolicy,
    vacation,
    virtualalias,
    virtualdomain,
    virtualuser,
)
from dinomail.store import Store
from dinomail.store.common import aware
from dinomail.transfer import document as d

PAGE_SIZE = 5000
# Ids per `IN (...)` list: below SQLite's variable limit.
IN_CHUNK = 500


class ExportError(ValueError):
    """The export cannot be made as asked (an unknown --domain)."""


async def _pages(
    conn: AsyncConnection, query: sa.Select, id_column: sa.ColumnElement[int]
) -> AsyncIterator[list[sa.RowMapping]]:
    key = id_column.key
    assert key is not None, "the id column is a table's column, which has a name"
    last = 0
    while True:
        rows = list(
            (await conn.execute(query.where(id_column > last).order_by(id_column).limit(PAGE_SIZE)))
            .mappings()
        )
        if not rows:
            return
        yield rows
        last = rows[-1][key]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _pick(row: Any, fields: Iterable[str], prefix: str = "") -> dict[str, Any]:
    return {field: row[prefix + field] for field in fields}


def moment(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC, to the microsecond (`2026-12-06T04:30:00.123456Z`)."""
    if value is None:
        return None
    return aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _domain(row: Any) -> dict[str, Any]:
    out = _pick(row, d.DOMAIN_FIELDS)
    out["dkim"] = None if row["k_selector"] is None else {
        "selector": row["k_selector"], "algorithm": row["k_algorithm"],
        "key_bits": row["k_key_bits"], "private_key": row["k_private_key"],
        "public_key": row["k_public_key"],
    }
    out["client_config"] = (
        None if row["c_imap_ssl_port"] is None else _pick(row, d.CLIENT_CONFIG_FIELDS, "c_")
    )
    out["send_limits"] = (
        None if row["l_reply"] is None else _pick(row, d.DOMAIN_SEND_LIMIT_FIELDS, "l_")
    )
    if row["require_app_passwords"]:
        out[d.DOMAIN_REQUIRE_APP_PASSWORDS] = True
    if row["s_domain_id"] is not None:
        out[d.DOMAIN_SELF_SERVICE] = {
            field: bool(row["s_" + field]) for field in d.SELF_SERVICE_FIELDS}
    if row["t_mode"] is not None:
        out[d.DOMAIN_MTA_STS] = {"mode": row["t_mode"], "mx": row["t_mx"].split(),
                                 "max_age": row["t_max_age"]}
    return out


def _labelled(table: sa.Table, fields: Sequence[str], prefix: str) -> list[sa.Label]:
    return [table.c[field].label(prefix + field) for field in fields]


_DOMAINS = sa.select(
    virtualdomain.c.id, *[virtualdomain.c[field] for field in d.DOMAIN_FIELDS],
    dkimkey.c.selector.label("k_selector"), dkimkey.c.algorithm.label("k_algorithm"),
    dkimkey.c.key_bits.label("k_key_bits"), dkimkey.c.dkim_private_key.label("k_private_key"),
    dkimkey.c.public_key.label("k_public_key"),
    *_labelled(clientconfig, d.CLIENT_CONFIG_FIELDS, "c_"),
    *_labelled(domainsendlimit, d.DOMAIN_SEND_LIMIT_FIELDS, "l_"),
    virtualdomain.c.require_app_passwords, domainselfservice.c.domain_id.label("s_domain_id"),
    *_labelled(domainselfservice, d.SELF_SERVICE_FIELDS, "s_"),
    *_labelled(mtastspolicy, d.MTA_STS_FIELDS, "t_"),
).select_from(
    virtualdomain.outerjoin(dkimkey, dkimkey.c.domain_id == virtualdomain.c.id)
    .outerjoin(clientconfig, clientconfig.c.domain_id == virtualdomain.c.id)
    .outerjoin(domainsendlimit, domainsendlimit.c.domain_id == virtualdomain.c.id)
    .outerjoin(domainselfservice, domainselfservice.c.domain_id == virtualdomain.c.id)
    .outerjoin(mtastspolicy, mtastspolicy.c.domain_id == virtualdomain.c.id)
)
_ALIAS_DOMAINS = sa.select(
    aliasdomain.c.id, aliasdomain.c.name, virtualdomain.c.name.label("target"),
    aliasdomain.c.active,
).select_from(aliasdomain.join(virtualdomain, virtualdomain.c.id == aliasdomain.c.target_domain_id))
_MAILBOXES = sa.select(
    virtualuser.c.id, *[virtualuser.c[field] for field in d.MAILBOX_FIELDS],
    mailboxsendlimit.c.user_id.label("l_user_id"),
    *_labelled(mailboxsendlimit, d.MAILBOX_SEND_LIMIT_FIELDS, "l_"),
    vacation.c.user_id.label("v_user_id"), *_labelled(vacation, d.VACATION_FIELDS, "v_"),
).select_from(
    virtualuser.outerjoin(mailboxsendlimit, mailboxsendlimit.c.user_id == virtualuser.c.id)
    .outerjoin(vacation, vacation.c.user_id == virtualuser.c.id)
)
_ALIASES = sa.select(virtualalias.c.id, virtualalias.c.source, virtualalias.c.destination)
_ADMINS = sa.select(admin.c.id, admin.c.read_only, admin.c.language,
                    *[admin.c[field] for field in d.ADMIN_FIELDS])


def _mailbox(row: Any) -> dict[str, Any]:
    out = _pick(row, d.MAILBOX_FIELDS)
    out["send_limits"] = (
        None if row["l_user_id"] is None else _pick(row, d.MAILBOX_SEND_LIMIT_FIELDS, "l_")
    )
    if row["v_user_id"] is not None:
        out[d.MAILBOX_VACATION] = {
            "enabled": bool(row["v_enabled"]), "subject": row["v_subject"],
            "body": row["v_body"], "starts": _day(row["v_starts"]),
            "ends": _day(row["v_ends"]), "interval_days": row["v_interval_days"],
        }
    return out


Extras = Callable[[AsyncConnection, list[int]], Awaitable[dict[int, dict[str, Any]]]]


async def _rows_of(
    conn: AsyncConnection, table: sa.Table, owner: sa.ColumnElement[int], ids: list[int],
    *columns: sa.ColumnElement[Any],
) -> AsyncIterator[sa.RowMapping]:
    """The rows of `table` whose `owner` is one of `ids`, in the order they were made."""
    for start in range(0, len(ids), IN_CHUNK):
        rows = await conn.execute(
            sa.select(owner.label("owner"), *columns)
            .where(owner.in_(ids[start:start + IN_CHUNK])).order_by(table.c.id))
        for row in rows.mappings():
            yield row


def _totp(row: Any) -> dict[str, Any]:
    """A row of `admintotp` or `mailboxtotp` (the same columns), as `totp`."""
    return {"secret": row["secret"], "created_at": moment(row["created_at"]),
            "confirmed_at": moment(row["confirmed_at"]), "last_step": row["last_step"]}


def _recovery_code(row: Any) -> dict[str, Any]:
    """A row of `adminrecoverycode` or `mailboxrecoverycode` (the same columns)."""
    return {"code_hash": row["code_hash"], "used_at": moment(row["used_at"])}


async def _mailbox_extras(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The app passwords and the owner's authenticator app and recovery codes of a page of
    mailboxes, for those that have some."""
    out: dict[int, dict[str, Any]] = {}
    async for row in _rows_of(conn, apppassword, apppassword.c.user_id, ids,
                              *[apppassword.c[field] for field in d.APP_PASSWORD_FIELDS]):
        out.setdefault(row["owner"], {}).setdefault(d.MAILBOX_APP_PASSWORDS, []).append({
            "name": row["name"], "protocols": row["protocols"].split(","),
            "password": row["password"], "created": moment(row["created"]),
            "last_used": moment(row["last_used"])})
    for start in range(0, len(ids), IN_CHUNK):
        rows = await conn.execute(
            sa.select(mailboxtotp).where(mailboxtotp.c.user_id.in_(ids[start:start + IN_CHUNK])))
        for row in rows.mappings():
            out.setdefault(row["user_id"], {})[d.MAILBOX_TOTP] = _totp(row)
    async for row in _rows_of(conn, mailboxrecoverycode, mailboxrecoverycode.c.user_id, ids,
                              mailboxrecoverycode.c.code_hash, mailboxrecoverycode.c.used_at):
        out.setdefault(row["owner"], {}).setdefault(d.MAILBOX_RECOVERY_CODES, []).append(
            _recovery_code(row))
    return out


async def _domain_extras(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The retiring DKIM selectors of a page of domains, for those that have some, newest
    first (as the DNS page lists them)."""
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), IN_CHUNK):
        rows = await conn.execute(
            sa.select(dkimretiring)
            .where(dkimretiring.c.domain_id.in_(ids[start:start + IN_CHUNK]))
            .order_by(dkimretiring.c.domain_id, dkimretiring.c.replaced_at.desc(),
                      dkimretiring.c.selector))
        for row in rows.mappings():
            out.setdefault(row["domain_id"], {d.DOMAIN_DKIM_RETIRING: []})[
                d.DOMAIN_DKIM_RETIRING].append({
                    **_pick(row, ("selector", "algorithm", "public_key")),
                    "replaced_at": moment(row["replaced_at"])})
    return out


async def _second_factors(conn: AsyncConnection, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The TOTP, passkeys and recovery codes of a page of admins, for those that have some."""
    out: dict[int, dict[str, Any]] = {admin_id: {} for admin_id in ids}
    for start in range(0, len(ids), IN_CHUNK):
        rows = await conn.execute(
            sa.select(admintotp).where(admintotp.c.admin_id.in_(ids[start:start + IN_CHUNK])))
        for row in rows.mappings():
            out[row["admin_id"]][d.ADMIN_TOTP] = _totp(row)
    async for row in _rows_of(conn, adminpasskey, adminpasskey.c.admin_id, ids,
                              *[adminpasskey.c[field] for field in d.PASSKEY_FIELDS]):
        out[row["owner"]].setdefault(d.ADMIN_PASSKEYS, []).append({
            **_pick(row, ("name", "credential_id", "public_key", "sign_count")),
            "created_at": moment(row["created_at"]),
            "last_used_at": moment(row["last_used_at"])})
    async for row in _rows_of(conn, adminrecoverycode, adminrecoverycode.c.admin_id, ids,
                              adminrecoverycode.c.code_hash, adminrecoverycode.c.used_at):
        out[row["owner"]].setdefault(d.ADMIN_RECOVERY_CODES, []).append(_recovery_code(row))
    return out


async def _admin_extras(
    conn: AsyncConnection, admin_ids: list[int], domain_filter: Callable[[int], bool]
) -> tuple[dict[int, list[str]], dict[int, list[dict[str, Any]]]]:
    """The domains and live API keys of a page of admins."""
    rights: dict[int, list[str]] = {admin_id: [] for admin_id in admin_ids}
    keys: dict[int, list[dict[str, Any]]] = {admin_id: [] for admin_id in admin_ids}
    for start in range(0, len(admin_ids), IN_CHUNK):
        chunk = admin_ids[start:start + IN_CHUNK]
        rows = await conn.execute(
            sa.select(admin_domain.c.admin_id, admin_domain.c.domain_id, virtualdomain.c.name)
            .select_from(admin_domain.join(virtualdomain,
                                           virtualdomain.c.id == admin_domain.c.domain_id))
            .where(admin_domain.c.admin_id.in_(chunk))
            .order_by(virtualdomain.c.name)
        )
        for admin_id, domain_id, name in rows:
            if domain_filter(domain_id):
                rights[admin_id].append(name)
        rows = await conn.execute(
            sa.select(apikey.c.admin_id, *[apikey.c[field] for field in d.API_KEY_FIELDS])
            .where(apikey.c.admin_id.in_(chunk), apikey.c.revoked_at.is_(None))
            .order_by(apikey.c.id)
        )
        for row in rows.mappings():
            keys[row["admin_id"]].append(_pick(row, d.API_KEY_FIELDS))
    return rights, keys


async def _domain_ids(conn: AsyncConnection, names: Sequence[str]) -> set[int]:
    ids: set[int] = set()
    for raw in names:
        try:
            name = v.normalize_domain(raw, "domain")
        except v.ValidationError as error:
            raise ExportError(f"--domain {raw}: {error.message}") from None
        found = await conn.scalar(sa.select(virtualdomain.c.id).where(virtualdomain.c.name == name))
        if found is None:
            raise ExportError(f"--domain {raw}: no such domain")
        ids.add(found)
    return ids


async def export_document(store: Store, domains: Sequence[str] = ()) -> AsyncIterator[str]:
    """The document, in pieces to write one after the other.

    With `domains`, only those domains, their alias domains, mailboxes and aliases, and the
    domain admins of any of them (with only those domains as their rights; superadmins are left
    out, being admins of the whole installation).
    """
    async with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every page.
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            async for piece in _write(conn, domains):
                yield piece


async def _write(conn: AsyncConnection, wanted: Sequence[str]) -> AsyncIterator[str]:
    selected = await _domain_ids(conn, wanted) if wanted else None

    def only(column: sa.ColumnElement[int]) -> list[sa.ColumnElement[bool]]:
        return [] if selected is None else [column.in_(sorted(selected))]

    def in_selection(domain_id: int) -> bool:
        return selected is None or domain_id in selected

    exported_at = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    yield (f'{{"format":{_dumps(d.FORMAT)},"version":{d.VERSION},'
           f'"exported_at":{_dumps(exported_at)}')

    async def section(
        name: str, query: sa.Select, id_column: sa.ColumnElement[int],
        shape: Callable[[Any], dict[str, Any]], extras: Extras | None = None,
    ) -> AsyncIterator[str]:
        yield f',\n"{name}":['
        first = True
        async for rows in _pages(conn, query, id_column):
            more = {} if extras is None else await extras(conn, [row["id"] for row in rows])
            text = ",\n".join(_dumps({**shape(row), **more.get(row["id"], {})})
                               for row in rows)
            yield text if first else ",\n" + text
            first = False
        yield "]"

    sections: tuple[tuple[str, sa.Select, sa.ColumnElement[int],
                          Callable[[Any], dict[str, Any]], Extras | None], ...] = (
        ("domains", _DOMAINS.where(*only(virtualdomain.c.id)), virtualdomain.c.id, _domain,
         _domain_extras),
        ("alias_domains", _ALIAS_DOMAINS.where(*only(aliasdomain.c.target_domain_id)),
         aliasdomain.c.id, lambda row: _pick(row, d.ALIAS_DOMAIN_FIELDS), None),
        ("mailboxes", _MAILBOXES.where(*only(virtualuser.c.domain_id)), virtualuser.c.id,
         _mailbox, _mailbox_extras),
        ("aliases", _ALIASES.where(*only(virtualalias.c.domain_id)), virtualalias.c.id,
         lambda row: _pick(row, d.ALIAS_FIELDS), None),
    )
    for name, query, id_column, shape, extras in sections:
        async for piece in section(name, query, id_column, shape, extras):
            yield piece

    admins = _ADMINS
    if selected is not None:
        admins = admins.where(
            admin.c.is_superadmin.is_(False),
            admin.c.id.in_(sa.select(admin_domain.c.admin_id)
                           .where(admin_domain.c.domain_id.in_(sorted(selected)))),
        )
    yield ',\n"admins":['
    first = True
    async for rows in _pages(conn, admins, admin.c.id):
        ids = [row["id"] for row in rows]
        rights, keys = await _admin_extras(conn, ids, in_selection)
        factors = await _second_factors(conn, ids)
        text = ",\n".join(
            _dumps({**_pick(row, d.ADMIN_FIELDS),
                    **({d.ADMIN_READ_ONLY: True} if row["read_only"] else {}),
                    **({d.ADMIN_LANGUAGE: row["language"]} if row["language"] else {}),
                    "domains": rights[row["id"]], "api_keys": keys[row["id"]],
                    **factors[row["id"]]})
            for row in rows
        )
        yield text if first else ",\n" + text
        first = False
    yield "]}\n"
