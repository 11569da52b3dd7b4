"""What the Postfix policy service reads and writes: sending limits, sending counts, and which
mailboxes are full.

Limits: a domain's row gives the default limits of each of its mailboxes and the limits of the
domain as a whole; a mailbox's own row overrides the defaults one by one (NULL = the domain's
default). 0 means unlimited; a domain without a row, and a mailbox of such a domain without its
own row, are unlimited. Changing limits is a superadmin's decision: they are abuse control, and
a domain admin whose account is stolen must not be able to lift them.

Counts: `add_counts` adds to the stored totals atomically and returns the new totals, so any
number of lookup daemons writing the same rows add up; `load_counts` reads what the others wrote.
`reset_counts` zeroes a subject's rows as written by RESET_WRITER, which the daemons read like
another daemon's write (`lookupd.counters`, "Reset"); `window_counts` gives the figures the
daemons compare with the limits (`dinomail.sendwindows`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import (
    domainsendlimit,
    mailboxsendlimit,
    quotausage,
    sendcount,
    virtualdomain,
    virtualuser,
)
from dinomail.sendwindows import DAY, HOUR, oldest_bucket, window_totals
from dinomail.store import audit
from dinomail.store.common import Row, changed_values, conflict_insert
from dinomail.store.errors import Forbidden, NotFound
from dinomail.store.fields import clean_fields
from dinomail.store.scope import Scope

if TYPE_CHECKING:
    pass

LIMITS = ("messages_per_hour", "messages_per_day", "recipients_per_hour", "recipients_per_day")
MAILBOX_DEFAULTS = tuple(f"mailbox_{limit}" for limit in LIMITS)
DOMAIN_TOTALS = tuple(f"domain_{limit}" for limit in LIMITS)
REPLY_MAX_LENGTH = 200

# `kind` of a count row.
MAILBOX = "mailbox"
DOMAIN = "domain"
# The `writer` of rows an admin reset; a daemon's writer is 16 hexadecimal digits, never this.
RESET_WRITER = "admin-reset"
# The figures `window_counts` gives, in the daemons' windows.
COUNT_FIGURES = ("messages_last_hour", "recipients_last_hour", "messages_last_day",
                 "recipients_last_day")


# --- Postfix replies -----------------------------------------------------------------------------

# The access(5) actions that make sense for a sender over its limit or a full mailbox: defer or
# reject, by keyword or with an explicit SMTP code.
_ACTION = re.compile(r"(DEFER_IF_PERMIT|DEFER|REJECT|[45][0-9][0-9])(?: +(.*))?", re.IGNORECASE)
_STATUS = re.compile(r"([245])\.[0-9]{1,3}\.[0-9]{1,3}")
_ACTION_CLASS = {"DEFER_IF_PERMIT": "4", "DEFER": "4", "REJECT": "5"}


def normalize_policy_reply(value: object, field: str) -> str:
    """A Postfix action to answer with: `DEFER_IF_PERMIT 4.7.1 text`, `452 4.2.2 text`, ...;
    empty stays empty (the caller's default applies).

    The enhanced status code, when given, must be of the same class as the reply (4 or 5):
    Postfix would otherwise send a contradictory reply.
    """
    text = v.normalize_text(value, field, REPLY_MAX_LENGTH)
    if not text:
        return ""
    match = _ACTION.fullmatch(text)
    if match is None or not text.isascii():
        raise v.ValidationError(
            field,
            "must be a Postfix action: DEFER_IF_PERMIT, DEFER, REJECT or a 4xx/5xx code, then "
            "an optional status and text (ASCII), as in `452 4.2.2 Mailbox full`",
            code="policy_reply_invalid",
        )
    word = match.group(1).upper()
    reply_class = _ACTION_CLASS.get(word, word[0])
    detail = match.group(2) or ""
    status = _STATUS.match(detail)
    if status is not None and status.group(1) != reply_class:
        raise v.ValidationError(
            field, f"the status {status.group(0)} does not match a {reply_class}xx reply",
            code="policy_status_mismatch",
            params={"status": status.group(0), "reply_class": reply_class},
        )
    return f"{word} {detail}" if detail else word


def _normalize_optional_limit(value: object, field: str) -> int | None:
    return None if value is None else v.normalize_limit(value, field)


_DOMAIN_NORMALIZERS: dict[str, Any] = {
    **{name: v.normalize_limit for name in (*MAILBOX_DEFAULTS, *DOMAIN_TOTALS)},
    "reply": normalize_policy_reply,
}
_MAILBOX_NORMALIZERS: dict[str, Any] = {name: _normalize_optional_limit for name in LIMITS}


# --- limits, as admins set them ------------------------------------------------------------------


async def _visible_domain(conn: AsyncConnection, scope: Scope, domain_id: int) -> str:
    name = await conn.scalar(
        sa.select(virtualdomain.c.name).where(
            virtualdomain.c.id == domain_id, scope.filter(virtualdomain.c.id)
        )
    )
    if name is None:
        raise NotFound("domain not found", code="domain_not_found")
    return str(name)


async def _visible_mailbox(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> str:
    email = await conn.scalar(
        sa.select(virtualuser.c.email).where(
            virtualuser.c.id == mailbox_id, scope.filter(virtualuser.c.domain_id)
        )
    )
    if email is None:
        raise NotFound("mailbox not found", code="mailbox_not_found")
    return str(email)


def _domain_defaults(domain_id: int) -> Row:
    return {"domain_id": domain_id, **dict.fromkeys((*MAILBOX_DEFAULTS, *DOMAIN_TOTALS), 0),
            "reply": ""}


async def domain_limits_of(conn: AsyncConnection, domain_ids: Iterable[int]) -> dict[int, Row]:
    """Each domain's limits (all 0, reply empty, for a domain without a row); no scope check."""
    found = {domain_id: _domain_defaults(domain_id) for domain_id in domain_ids}
    if found:
        rows = await conn.execute(
            sa.select(domainsendlimit).where(domainsendlimit.c.domain_id.in_(sorted(found)))
        )
        for row in rows.mappings():
            found[row["domain_id"]] = {key: row[key] for key in _domain_defaults(0)}
    return found


def _require_superadmin(scope: Scope) -> None:
    """Limits are the server's: a domain admin may not raise their own."""
    if not scope.is_global:
        raise Forbidden(
            "only a superadmin can change sending limits", code="superadmin_only_send_limits"
        )


async def get_domain_limits(conn: AsyncConnection, scope: Scope, domain_id: int) -> Row:
    """The domain's limits (all 0, reply empty, when it has none)."""
    await _visible_domain(conn, scope, domain_id)
    return (await domain_limits_of(conn, [domain_id]))[domain_id]


async def _replace_row(
    conn: AsyncConnection, table: sa.Table, where: sa.ColumnElement[bool], old: Row,
    values: Mapping[str, Any], stored: Callable[[Row], Mapping[str, Any] | None],
) -> tuple[Row, Row, Row] | None:
    """Write `old` changed by `values` as the one row of `table` matched by `where`, or no row
    when `stored` (of the new limits) is None: only what has limits has a row, since the
    daemons reload these tables every few seconds. (new, before, after) for the audit log;
    None when nothing changes."""
    new = {**old, **values}
    before, after = changed_values(old, new)
    if not after:
        return None
    await conn.execute(table.delete().where(where))
    row = stored(new)
    if row is not None:
        await conn.execute(table.insert().values(**row))
    return new, before, after


async def set_domain_limits(
    conn: AsyncConnection, actor: str, scope: Scope, domain_id: int, data: Mapping[str, Any]
) -> Row:
    """Change some of a domain's limits; the others keep their values."""
    _require_superadmin(scope)
    name = await _visible_domain(conn, scope, domain_id)
    values = clean_fields(data, _DOMAIN_NORMALIZERS)
    old = await get_domain_limits(conn, scope, domain_id)
    changed = await _replace_row(
        conn, domainsendlimit, domainsendlimit.c.domain_id == domain_id, old, values,
        lambda new: new if any(new[key] for key in (*MAILBOX_DEFAULTS, *DOMAIN_TOTALS, "reply"))
        else None,
    )
    if changed is None:
        return old
    new, before, after = changed
    await audit.record(
        conn, actor, "update", "domain_send_limits", domain_id, name, old=before, new=after,
        domain_id=domain_id,
    )
    return new


async def mailbox_limits_of(conn: AsyncConnection, mailbox_ids: Iterable[int]) -> dict[int, Row]:
    """Each mailbox's own limits, None where its domain's default applies; no scope check."""
    found = {mailbox_id: {"mailbox_id": mailbox_id, **dict.fromkeys(LIMITS)}
             for mailbox_id in mailbox_ids}
    if found:
        rows = await conn.execute(
            sa.select(mailboxsendlimit).where(mailboxsendlimit.c.user_id.in_(sorted(found)))
        )
        for row in rows.mappings():
            found[row["user_id"]].update({key: row[key] for key in LIMITS})
    return found


async def get_mailbox_limits(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> Row:
    """The mailbox's own limits; None where its domain's default applies."""
    await _visible_mailbox(conn, scope, mailbox_id)
    return (await mailbox_limits_of(conn, [mailbox_id]))[mailbox_id]


def effective_mailbox_limits(own: Mapping[str, Any], domain: Mapping[str, Any] | None
                             ) -> dict[str, int]:
    """What a mailbox may send: its own limit where it has one, else its domain's default for
    each mailbox (`domain` is the domain's limits row; None or no row: unlimited)."""
    return {
        key: int(own[key]) if own.get(key) is not None
        else int(domain[f"mailbox_{key}"]) if domain is not None else 0
        for key in LIMITS
    }


async def set_mailbox_limits(
    conn: AsyncConnection, actor: str, scope: Scope, mailbox_id: int, data: Mapping[str, Any]
) -> Row:
    """Change some of a mailbox's own limits (None: back to the domain's default)."""
    _require_superadmin(scope)
    email = await _visible_mailbox(conn, scope, mailbox_id)
    values = clean_fields(data, _MAILBOX_NORMALIZERS)
    old = await get_mailbox_limits(conn, scope, mailbox_id)
    changed = await _replace_row(
        conn, mailboxsendlimit, mailboxsendlimit.c.user_id == mailbox_id, old, values,
        lambda new: {"user_id": mailbox_id, **{k: new[k] for k in LIMITS}}
        if any(new[key] is not None for key in LIMITS) else None,
    )
    if changed is None:
        return old
    new, before, after = changed
    await audit.record(
        conn, actor, "update", "mailbox_send_limits", mailbox_id, email, old=before, new=after
    )
    return new


# --- what the lookup daemon loads ----------------------------------------------------------------


class LimitRows(NamedTuple):
    """Every limit row: domains by name, mailboxes by address (only those that have a row)."""

    domains: list[Row]
    mailboxes: list[Row]


async def load_limits(conn: AsyncConnection) -> LimitRows:
    domains = await conn.execute(
        sa.select(virtualdomain.c.name, domainsendlimit).join(
            virtualdomain, virtualdomain.c.id == domainsendlimit.c.domain_id
        )
    )
    mailboxes = await conn.execute(
        sa.select(virtualuser.c.email, mailboxsendlimit).join(
            virtualuser, virtualuser.c.id == mailboxsendlimit.c.user_id
        )
    )
    return LimitRows(
        domains=[dict(row) for row in domains.mappings()],
        mailboxes=[dict(row) for row in mailboxes.mappings()],
    )


async def load_full_mailboxes(conn: AsyncConnection) -> dict[int, int]:
    """Mailbox id → bytes used, for the mailboxes whose stored usage (from Dovecot's
    quota_clone) has reached their quota. Usually a handful of rows, but the query reads the
    whole usage table: its cost at a million mailboxes is in benchmarks/RESULTS.md."""
    rows = await conn.execute(
        sa.select(quotausage.c.user_id, quotausage.c.bytes)
        .join(virtualuser, virtualuser.c.id == quotausage.c.user_id)
        .where(virtualuser.c.quota > 0, quotausage.c.bytes >= virtualuser.c.quota)
    )
    return {row.user_id: row.bytes for row in rows}


# --- sending counts ------------------------------------------------------------------------------


class SendCount(NamedTuple):
    """Messages and recipients of one subject (`kind`, `name`) in one time bucket."""

    kind: str
    name: str
    bucket_seconds: int
    bucket_start: int
    messages: int
    recipients: int


_COUNT_COLUMNS = (
    sendcount.c.kind, sendcount.c.name, sendcount.c.bucket_seconds, sendcount.c.bucket_start,
    sendcount.c.messages, sendcount.c.recipients,
)


@functools.cache
def _add_counts_statement(dialect: str) -> Any:
    statement = conflict_insert(dialect, sendcount)
    return statement.on_conflict_do_update(
        index_elements=["kind", "name", "bucket_seconds", "bucket_start"],
        set_={
            "messages": sendcount.c.messages + statement.excluded.messages,
            "recipients": sendcount.c.recipients + statement.excluded.recipients,
            "writer": statement.excluded.writer,
            "updated_at": sa.func.now(),
        },
    ).returning(*_COUNT_COLUMNS)


async def add_counts(
    conn: AsyncConnection, increments: Iterable[SendCount], *, writer: str = ""
) -> list[SendCount]:
    """Add each increment to its stored row (creating it) and return the rows' new totals,
    which include what other daemons added. `writer` names the daemon (see `load_counts`).

    One statement, executed for many rows: SQLAlchemy sends them as multi-row INSERTs ("insert
    many values") and compiles the statement once per process, which keeps a flush of thousands
    of rows to a few milliseconds of the event loop. Rows are written in key order, so two
    daemons adding to the same rows on PostgreSQL take their row locks in the same order and
    cannot deadlock.
    """
    rows = [{**row._asdict(), "writer": writer} for row in sorted(increments)]
    if not rows:
        return []
    result = await conn.execute(_add_counts_statement(conn.dialect.name), rows)
    return [SendCount(*row) for row in result]


async def load_counts(
    conn: AsyncConnection,
    *,
    since_bucket: int,
    changed_since: datetime | None = None,
    other_than: str | None = None,
) -> tuple[list[SendCount], datetime]:
    """The rows of buckets starting at `since_bucket` or later; only those written at
    `changed_since` or later when given, and only those another writer than `other_than` wrote
    last (a daemon knows the totals of the rows it wrote last: `add_counts` returned them).
    Also the database's time of the read, to pass as `changed_since` next time (less a margin
    for transactions that were under way)."""
    read_at = await conn.scalar(sa.select(sa.func.now()))
    assert read_at is not None, "now() is never NULL"
    query = sa.select(*_COUNT_COLUMNS).where(sendcount.c.bucket_start >= since_bucket)
    if changed_since is not None:
        query = query.where(sendcount.c.updated_at >= changed_since)
    if other_than is not None:
        query = query.where(sendcount.c.writer != other_than)
    rows = [SendCount(*row) for row in await conn.execute(query)]
    return rows, read_at


async def prune_counts(conn: AsyncConnection, before_bucket: int) -> int:
    """Delete the rows of buckets that started before `before_bucket`; return how many."""
    result = await conn.execute(sendcount.delete().where(sendcount.c.bucket_start < before_bucket))
    return int(result.rowcount or 0)


async def counts_of(
    conn: AsyncConnection, kind: str, name: str, *, since_bucket: int = 0
) -> list[SendCount]:
    """One subject's rows, oldest first (for admins' pages and tests)."""
    query = (
        sa.select(*_COUNT_COLUMNS)
        .where(sendcount.c.kind == kind, sendcount.c.name == name,
               sendcount.c.bucket_start >= since_bucket)
        .order_by(sendcount.c.bucket_seconds, sendcount.c.bucket_start)
    )
    return [SendCount(*row) for row in await conn.execute(query)]


async def window_counts(
    conn: AsyncConnection, kind: str, names: Iterable[str], now: float
) -> dict[str, Row]:
    """What each subject sent in the last hour and day before `now` (Unix time), every daemon's
    written counts included, with the daemons' math (`COUNT_FIGURES`, rounded to hundredths:
    the bucket at a window's old edge counts in part)."""
    wanted = sorted(set(names))
    rows: dict[str, list[SendCount]] = {name: [] for name in wanted}
    if wanted:
        query = sa.select(*_COUNT_COLUMNS).where(
            sendcount.c.kind == kind, sendcount.c.name.in_(wanted),
            sendcount.c.bucket_start >= oldest_bucket(now),
        )
        for row in await conn.execute(query):
            rows[row.name].append(SendCount(*row))
    figures = {}
    for name, buckets in rows.items():
        hour = window_totals(buckets, HOUR, now)
        day = window_totals(buckets, DAY, now)
        figures[name] = dict(zip(COUNT_FIGURES, (round(value, 2) for value in (*hour, *day)),
                                 strict=True))
    return figures


async def reset_counts(
    conn: AsyncConnection, actor: str, scope: Scope, kind: str, object_id: int
) -> str:
    """Start a domain's (its totals) or a mailbox's counts again from zero; the subject's name.

    The rows are zeroed, not deleted: the daemons only learn of rows that exist (a sync reads
    the rows changed since the last one). A superadmin's decision, as the limits are.
    """
    if kind == DOMAIN:
        name = await _visible_domain(conn, scope, object_id)
    elif kind == MAILBOX:
        name = await _visible_mailbox(conn, scope, object_id)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    # After the visibility check: outside their domains, an admin learns nothing (404).
    if not scope.is_global:
        raise Forbidden(
            "only a superadmin can reset sending counts", code="superadmin_only_reset_counts"
        )
    result = await conn.execute(
        sendcount.update()
        .where(sendcount.c.kind == kind, sendcount.c.name == name)
        .values(messages=0, recipients=0, writer=RESET_WRITER, updated_at=sa.func.now())
    )
    await audit.record(
        conn, actor, "reset", f"{kind}_send_counts", object_id, name,
        new={"rows": int(result.rowcount or 0)},
        domain_id=object_id if kind == DOMAIN else None,
    )
    return name
