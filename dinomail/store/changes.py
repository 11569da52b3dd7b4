"""What the lookup daemon reads: every mail row at once, and the change log after that.

Mail rows: domains, alias domains, mailboxes, aliases, the app passwords' hashes (a login is
checked against the snapshot, never the database) and the vacation settings (whose Sieve
scripts the daemon makes from the snapshot).

The change log is written by database triggers (see the first migration, and 0018 for the app
passwords and vacations), so a row changed by
hand in `psql` or `sqlite3` is followed like one changed through the API.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    AppPasswordRow,
    DomainRow,
    MailboxRow,
    MailChanges,
    MailData,
    VacationRow,
)
from dinomail.schema import (
    aliasdomain,
    apppassword,
    changelog,
    state,
    vacation,
    virtualalias,
    virtualdomain,
    virtualuser,
)

HORIZON = "changelog_horizon"
# A random id given to the database the first time a lookup daemon loads from it: what names
# the database in lookupd's snapshot file, whatever address it is reached at.
DATABASE_ID = "database_id"
# Ids per `IN (...)` list when fetching changed rows: below SQLite's variable limit.
FETCH_CHUNK = 500
# Rows per query of a full load.
LOAD_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    table_name: str
    row_id: int
    op: str


_DOMAINS = sa.select(
    virtualdomain.c.id, virtualdomain.c.name, virtualdomain.c.active,
    virtualdomain.c.catchall_senders, virtualdomain.c.require_app_passwords,
)
_ALIAS_DOMAINS = sa.select(
    aliasdomain.c.id, aliasdomain.c.name, aliasdomain.c.target_domain_id, aliasdomain.c.active
)
_MAILBOXES = sa.select(
    virtualuser.c.id, virtualuser.c.domain_id, virtualuser.c.email, virtualuser.c.password,
    virtualuser.c.quota, virtualuser.c.active,
)
_ALIASES = sa.select(
    virtualalias.c.id, virtualalias.c.domain_id, virtualalias.c.source, virtualalias.c.destination
)
# Not the name, creation or last use: a login needs none of them (and the last-use writes are
# not logged, see migration 0018_apppassword_changelog).
_APP_PASSWORDS = sa.select(
    apppassword.c.id, apppassword.c.user_id, apppassword.c.protocols, apppassword.c.password
)
# Keyed by the mailbox's id (`user_id`), which is also the row id its change-log entries carry.
_VACATIONS = sa.select(
    vacation.c.user_id, vacation.c.enabled, vacation.c.subject, vacation.c.body,
    vacation.c.starts, vacation.c.ends, vacation.c.interval_days,
)


async def latest_seq(conn: AsyncConnection) -> int:
    value = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(changelog.c.seq), 0)))
    assert value is not None, "COALESCE(MAX(seq), 0) is never NULL"
    return int(value)


async def horizon(conn: AsyncConnection) -> int:
    """Changes up to this sequence number have been pruned from the log."""
    value = await conn.scalar(sa.select(state.c.value).where(state.c.name == HORIZON))
    return int(value) if value else 0


async def database_id(conn: AsyncConnection) -> str | None:
    value = await conn.scalar(sa.select(state.c.value).where(state.c.name == DATABASE_ID))
    return str(value) if value else None


async def ensure_database_id(conn: AsyncConnection) -> str:
    """The database's random id, made now if it has none yet (in a write transaction)."""
    existing = await database_id(conn)
    if existing is not None:
        return existing
    value = secrets.token_hex(16)
    await conn.execute(state.insert().values(name=DATABASE_ID, value=value))
    return value


async def load_mail_data(conn: AsyncConnection) -> tuple[int, MailData]:
    """Every mail row, and a change log position they are at least as new as.

    The position is read first: a change committed while the rows are read is then both in the
    rows and after the position, and applying it again later is harmless, because applying a
    change means reading the row's current state.
    """
    seq = await latest_seq(conn)
    # The driver makes a new int object for every value; a million rows hold only thousands of
    # distinct domain ids and quotas, so sharing them saves tens of megabytes of resident memory.
    # Each value is its own key (domain ids are ints, quotas ints or None), so what comes back
    # has the type of what went in: `Any` says that, a union of both would not.
    shared: dict[Any, Any] = {}
    share = shared.setdefault
    domains = [
        DomainRow(*row) async for rows in _pages(conn, _DOMAINS, virtualdomain.c.id) for row in rows
    ]
    alias_domains = [
        AliasDomainRow(*row)
        async for rows in _pages(conn, _ALIAS_DOMAINS, aliasdomain.c.id) for row in rows
    ]
    mailboxes = [
        MailboxRow(row[0], share(row[1], row[1]), row[2], row[3], share(row[4], row[4]), row[5])
        async for rows in _pages(conn, _MAILBOXES, virtualuser.c.id) for row in rows
    ]
    # Most aliases forward to a local mailbox: the destination then shares the mailbox's string
    # (about 80 bytes an alias). The index is dropped once the aliases are read.
    addresses = {row.email: row.email for row in mailboxes}
    aliases = [
        AliasRow(row[0], share(row[1], row[1]), row[2], addresses.get(row[3], row[3]))
        async for rows in _pages(conn, _ALIASES, virtualalias.c.id) for row in rows
    ]
    del addresses
    app_passwords = [
        AppPasswordRow(row[0], row[1], share(row[2], row[2]), row[3])
        async for rows in _pages(conn, _APP_PASSWORDS, apppassword.c.id) for row in rows
    ]
    vacations = [
        VacationRow(*row)
        async for rows in _pages(conn, _VACATIONS, vacation.c.user_id) for row in rows
    ]
    return seq, MailData(domains, alias_domains, mailboxes, aliases, app_passwords, vacations)


async def _pages(
    conn: AsyncConnection, query: sa.Select, key: sa.Column
) -> AsyncIterator[Sequence[sa.Row]]:
    """The rows of `query`, LOAD_CHUNK at a time in the order of their `key` (keyset pages; the
    key is each row's first column).

    Fetched whole, a million rows' driver records would all be alive at once and then freed:
    the process would keep that peak as resident memory. A page at a time, each reuses the
    memory of the one before. Pages are read in one transaction but, on PostgreSQL, not from
    one snapshot: a row changed between two pages is after the position `load_mail_data` read
    first, so the change log brings it anyway.
    """
    page = query.order_by(key).limit(LOAD_CHUNK)
    rows = (await conn.execute(page)).all()
    while rows:
        yield rows
        if len(rows) < LOAD_CHUNK:
            return
        rows = (await conn.execute(page.where(key > rows[-1][0]))).all()


async def changes_since(conn: AsyncConnection, seq: int, limit: int) -> list[Change]:
    query = (
        sa.select(changelog.c.seq, changelog.c.table_name, changelog.c.row_id, changelog.c.op)
        .where(changelog.c.seq > seq)
        .order_by(changelog.c.seq)
        .limit(limit)
    )
    return [Change(*row) for row in await conn.execute(query)]


async def _fetch(
    conn: AsyncConnection, query: sa.Select, key: sa.Column, ids: list[int]
) -> list[sa.Row]:
    rows: list[sa.Row] = []
    for start in range(0, len(ids), FETCH_CHUNK):
        chunk = ids[start:start + FETCH_CHUNK]
        rows.extend(await conn.execute(query.where(key.in_(chunk))))
    return rows


async def fetch_changes(conn: AsyncConnection, changed: Iterable[Change]) -> MailChanges:
    """The current rows behind a batch of change log entries: present ones are upserts, gone
    ones are removals (whatever the op said: the row's state now is what counts)."""
    ids: dict[str, set[int]] = {name: set() for name in _TABLES}
    for change in changed:
        if change.table_name in ids:
            ids[change.table_name].add(change.row_id)

    async def current(name: str) -> tuple[list, list[int]]:
        query, key, make = _TABLES[name]
        wanted = sorted(ids[name])
        found = await _fetch(conn, query, key, wanted)
        present = {row[0] for row in found}  # each query's first column is its key
        rows = [make(row) for row in found]
        return rows, [row_id for row_id in wanted if row_id not in present]

    domains, removed_domains = await current(virtualdomain.name)
    alias_domains, removed_alias_domains = await current(aliasdomain.name)
    mailboxes, removed_mailboxes = await current(virtualuser.name)
    aliases, removed_aliases = await current(virtualalias.name)
    app_passwords, removed_app_passwords = await current(apppassword.name)
    vacations, removed_vacations = await current(vacation.name)
    return MailChanges(
        domains=domains,
        removed_domains=removed_domains,
        alias_domains=alias_domains,
        removed_alias_domains=removed_alias_domains,
        mailboxes=mailboxes,
        removed_mailboxes=removed_mailboxes,
        aliases=aliases,
        removed_aliases=removed_aliases,
        app_passwords=app_passwords,
        removed_app_passwords=removed_app_passwords,
        vacations=vacations,
        removed_vacations=removed_vacations,
    )


_TABLES: dict[str, tuple[sa.Select, sa.Column, Callable[[sa.Row], object]]] = {
    virtualdomain.name: (_DOMAINS, virtualdomain.c.id, lambda row: DomainRow(*row)),
    aliasdomain.name: (_ALIAS_DOMAINS, aliasdomain.c.id, lambda row: AliasDomainRow(*row)),
    virtualuser.name: (_MAILBOXES, virtualuser.c.id, lambda row: MailboxRow(*row)),
    virtualalias.name: (_ALIASES, virtualalias.c.id, lambda row: AliasRow(*row)),
    apppassword.name: (_APP_PASSWORDS, apppassword.c.id, lambda row: AppPasswordRow(*row)),
    vacation.name: (_VACATIONS, vacation.c.user_id, lambda row: VacationRow(*row)),
}


async def prune(conn: AsyncConnection, through_seq: int) -> None:
    """Forget changes up to `through_seq`; a daemon behind that point must reload in full."""
    await conn.execute(changelog.delete().where(changelog.c.seq <= through_seq))
    updated = await conn.execute(
        state.update().where(state.c.name == HORIZON).values(value=str(through_seq))
    )
    if updated.rowcount == 0:
        await conn.execute(state.insert().values(name=HORIZON, value=str(through_seq)))


async def prune_older_than(conn: AsyncConnection, seconds: float) -> int:
    """Prune the changes older than `seconds`; returns the new horizon (0 if nothing to do)."""
    cutoff = sa.func.now() - sa.text(f"INTERVAL '{int(seconds)} seconds'")
    if conn.dialect.name == "sqlite":
        cutoff = sa.func.datetime("now", f"-{int(seconds)} seconds")
    through = await conn.scalar(
        sa.select(sa.func.max(changelog.c.seq)).where(changelog.c.changed_at < cutoff)
    )
    if not through:
        return 0
    await prune(conn, int(through))
    return int(through)
