"""`dinomail import`: an export document into this database, all of it or nothing.

First every row is checked (`checks.py`) and compared with what the database holds; if anything
is refused, nothing is written. Then everything is written in one transaction, in batches of
many rows per statement. Objects are matched by name (domain, address, user name), so ids are
the new database's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
from dinomail.store import Store, audit
from dinomail.transfer import document as d
from dinomail.transfer.checks import Checked, RowError, check_document

OnConflict = Literal["skip", "update", "fail"]
ON_CONFLICT: tuple[OnConflict, ...] = ("skip", "update", "fail")
# Rows per INSERT/UPDATE statement (executemany), and values per `IN (...)` list (SQLite's
# variable limit).
BATCH = 2000
IN_CHUNK = 500

Progress = Callable[[str, int, int], None]


class ImportRefused(ValueError):
    """The document cannot be imported; nothing was written. `errors` name the rows."""

    def __init__(self, errors: Sequence[RowError], refused: dict[str, int]) -> None:
        super().__init__(str(errors[0]) if errors else "refused")
        self.errors = list(errors)
        self.refused = refused


@dataclass
class Report:
    """What the import did (or, in a dry run, would do), per section."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(d.SECTIONS, 0))
    updated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(d.SECTIONS, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(d.SECTIONS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(d.SECTIONS, 0))
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def _existing(
    conn: AsyncConnection, column: sa.ColumnElement[Any], values: Iterable[Any],
    *extra: sa.ColumnElement[Any],
) -> dict[Any, Any]:
    """Of `values`, those the column holds, mapped to the row's `extra` columns (or id)."""
    wanted = sorted(set(values))
    found: dict[Any, Any] = {}
    for chunk in _chunks(wanted, IN_CHUNK):
        rows = await conn.execute(sa.select(column, *extra).where(column.in_(chunk)))
        for row in rows:
            found[row[0]] = tuple(row[1:]) if len(row) > 2 else (row[1] if extra else True)
    return found


@dataclass
class _Plan:
    """Which rows of each section are new (created) and which exist (matched)."""

    new: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {section: [] for section in d.SECTIONS})
    existing: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {section: [] for section in d.SECTIONS})
    new_api_keys: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


async def _plan(
    conn: AsyncConnection, checked: Checked, on_conflict: OnConflict, report: Report
) -> _Plan:
    """Compare the checked rows with the database; refusals go to `report`."""
    plan = _Plan()

    def refuse(section: str, path: str, message: str) -> None:
        report.errors.append(RowError(path, message))
        report.refused[section] += 1

    def sort(section: str, row: dict[str, Any], exists: bool, what: str) -> None:
        if not exists:
            plan.new[section].append(row)
            report.created[section] += 1
        elif on_conflict == "fail":
            refuse(section, row["path"], f"{what} exists already (--on-conflict fail)")
        elif on_conflict == "update" and section != "aliases":
            plan.existing[section].append(row)
            report.updated[section] += 1
        else:
            report.skipped[section] += 1

    doc_domains = {row["name"] for row in checked.domains}
    db_domains = await _existing(
        conn, virtualdomain.c.name,
        [*doc_domains, *(row["target"] for row in checked.alias_domains),
         *(v.domain_of(row["email"]) for row in checked.mailboxes),
         *(v.domain_of(row["source"]) for row in checked.aliases),
         *(name for row in checked.admins for name in row["domains"])],
    )
    db_alias_domains = await _existing(
        conn, aliasdomain.c.name,
        [*doc_domains, *(row["name"] for row in checked.alias_domains),
         *(v.domain_of(row["email"]) for row in checked.mailboxes)],
    )
    known = doc_domains | set(db_domains)

    for row in checked.domains:
        if row["name"] in db_alias_domains:
            refuse("domains", f"{row['path']}.name", f"{row['name']} is an alias domain here")
            continue
        sort("domains", row, row["name"] in db_domains, f"the domain {row['name']}")
    for row in checked.alias_domains:
        if row["name"] in db_domains:
            refuse("alias_domains", f"{row['path']}.name", f"{row['name']} is a domain here")
        elif row["target"] not in known:
            refuse("alias_domains", f"{row['path']}.target",
                   f"{row['target']} is a domain neither of the document nor of this database")
        else:
            sort("alias_domains", row, row["name"] in db_alias_domains,
                 f"the alias domain {row['name']}")

    db_emails = await _existing(conn, virtualuser.c.email,
                                (row["email"] for row in checked.mailboxes))
    for row in checked.mailboxes:
        if v.domain_of(row["email"]) not in known:
            refuse("mailboxes", f"{row['path']}.email",
                   f"{v.domain_of(row['email'])} is a domain neither of the document nor of "
                   "this database")
        else:
            sort("mailboxes", row, row["email"] in db_emails, f"the mailbox {row['email']}")

    db_pairs: set[tuple[str, str]] = set()
    sources = sorted({row["source"] for row in checked.aliases})
    for chunk in _chunks(sources, IN_CHUNK):
        rows = await conn.execute(sa.select(virtualalias.c.source, virtualalias.c.destination)
                                  .where(virtualalias.c.source.in_(chunk)))
        db_pairs.update((source, destination) for source, destination in rows)
    for row in checked.aliases:
        if v.domain_of(row["source"]) not in known:
            refuse("aliases", f"{row['path']}.source",
                   f"{v.domain_of(row['source'])} is a domain neither of the document nor of "
                   "this database")
        else:
            pair = (row["source"], row["destination"])
            sort("aliases", row, pair in db_pairs, f"the alias {pair[0]} -> {pair[1]}")

    db_admins = await _existing(conn, admin.c.username, (row["username"] for row in checked.admins))
    db_keys = await _existing(conn, apikey.c.key_hash,
                              (key["key_hash"] for row in checked.admins
                               for key in row["api_keys"]))
    # A passkey is one credential of one authenticator: here, it may only be the same admin's.
    passkey_owners = await _existing(
        conn, adminpasskey.c.credential_id,
        (key["credential_id"] for row in checked.admins for key in row["passkeys"]),
        sa.select(admin.c.username).where(admin.c.id == adminpasskey.c.admin_id)
        .scalar_subquery())
    for row in checked.admins:
        missing = [name for name in row["domains"] if name not in known]
        if missing:
            refuse("admins", f"{row['path']}.domains",
                   f"{missing[0]} is a domain neither of the document nor of this database")
            continue
        exists = row["username"] in db_admins
        if exists and on_conflict == "skip":
            sort("admins", row, exists, f"the admin {row['username']}")
            continue
        taken = [index for index, key in enumerate(row["passkeys"])
                 if passkey_owners.get(key["credential_id"], row["username"]) != row["username"]]
        if taken:
            refuse("admins", f"{row['path']}.passkeys[{taken[0]}].credential_id",
                   "this passkey belongs to another admin here")
            continue
        sort("admins", row, exists, f"the admin {row['username']}")
        if exists and on_conflict != "update":
            continue
        for index, key in enumerate(row["api_keys"]):
            if key["key_hash"] not in db_keys:
                plan.new_api_keys.append((row["username"], key))
            elif on_conflict == "fail":
                refuse("admins", f"{row['path']}.api_keys[{index}]",
                       "this API key exists already (--on-conflict fail)")
    return plan


async def _domain_ids(conn: AsyncConnection, names: Iterable[str]) -> dict[str, int]:
    return await _existing(conn, virtualdomain.c.name, names, virtualdomain.c.id)


class _Writer:
    def __init__(self, conn: AsyncConnection, progress: Progress | None) -> None:
        self.conn = conn
        self.progress = progress

    async def many(self, statement: Any, rows: Sequence[dict[str, Any]], what: str = "") -> None:
        done = 0
        for chunk in _chunks(rows, BATCH):
            await self.conn.execute(statement, list(chunk))
            done += len(chunk)
            if what and self.progress is not None:
                self.progress(what, done, len(rows))

    async def by_key(
        self, table: sa.Table, key: str, columns: Sequence[str], rows: Sequence[dict[str, Any]],
        what: str = "",
    ) -> None:
        """UPDATE each row of `table` whose `key` column has the row's value."""
        if not rows:
            return
        statement = (table.update().where(table.c[key] == sa.bindparam("_key"))
                     .values({name: sa.bindparam(f"_{name}") for name in columns}))
        await self.many(statement, [
            {"_key": row[key], **{f"_{name}": row[name] for name in columns}} for row in rows
        ], what)


async def _write(
    conn: AsyncConnection, plan: _Plan, progress: Progress | None, version: int
) -> None:
    """Write the plan. From an earlier document, which knows nothing of the fields later
    versions added, the objects updated keep theirs (an admin's or an owner's second factor is
    not lost)."""
    w = _Writer(conn, progress)
    new, existing = plan.new, plan.existing
    carried = version >= 2
    # Version 3: the owners' authenticator apps with their recovery codes, and the domains'
    # MTA-STS policies.
    since_3 = version >= 3

    # Domains, then what hangs from them (replaced whole for updated domains).
    domain_columns = (*d.DOMAIN_FIELDS, "require_app_passwords")
    await w.many(virtualdomain.insert(),
                 [{name: row[name] for name in domain_columns} for row in new["domains"]],
                 "domains")
    await w.by_key(virtualdomain, "name", (domain_columns if carried else d.DOMAIN_FIELDS)[1:],
                   existing["domains"], "domains")
    touched = [*new["domains"], *existing["domains"]]
    domain_ids = await _domain_ids(conn, (row["name"] for row in touched))
    replaced = [domain_ids[row["name"]] for row in existing["domains"]]
    for table in (dkimkey, clientconfig, domainsendlimit,
                  *((domainselfservice, dkimretiring) if carried else ()),
                  *((mtastspolicy,) if since_3 else ())):
        for chunk in _chunks(replaced, IN_CHUNK):
            await conn.execute(table.delete().where(table.c.domain_id.in_(chunk)))
    await w.many(dkimkey.insert(), [
        {"domain_id": domain_ids[row["name"]], "selector": row["dkim"]["selector"],
         "algorithm": row["dkim"]["algorithm"], "key_bits": row["dkim"]["key_bits"],
         "dkim_private_key": row["dkim"]["private_key"],
         "public_key": row["dkim"]["public_key"]}
        for row in touched if row["dkim"] is not None])
    await w.many(clientconfig.insert(), [
        {"domain_id": domain_ids[row["name"]], **row["client_config"]}
        for row in touched if row["client_config"] is not None])
    await w.many(domainsendlimit.insert(), [
        {"domain_id": domain_ids[row["name"]], **row["send_limits"]}
        for row in touched if row["send_limits"] is not None])
    await w.many(domainselfservice.insert(), [
        {"domain_id": domain_ids[row["name"]], **row["self_service"]}
        for row in touched if row["self_service"] is not None])
    await w.many(dkimretiring.insert(), [
        {"domain_id": domain_ids[row["name"]], **key}
        for row in touched for key in row["dkim_retiring"]])
    await w.many(mtastspolicy.insert(), [
        {"domain_id": domain_ids[row["name"]], **row["mta_sts"]}
        for row in touched if row["mta_sts"] is not None])

    # Every domain a later row names, in the document or already here.
    referenced = {row["target"] for row in [*new["alias_domains"], *existing["alias_domains"]]}
    referenced |= {v.domain_of(row["email"]) for row in new["mailboxes"]}
    referenced |= {v.domain_of(row["source"]) for row in new["aliases"]}
    referenced |= {name for row in [*new["admins"], *existing["admins"]]
                   for name in row["domains"]}
    domain_ids |= await _domain_ids(conn, referenced - set(domain_ids))

    await w.many(aliasdomain.insert(), [
        {"name": row["name"], "target_domain_id": domain_ids[row["target"]],
         "active": row["active"]} for row in new["alias_domains"]], "alias domains")
    await w.by_key(aliasdomain, "name", ("target_domain_id", "active"), [
        {"name": row["name"], "target_domain_id": domain_ids[row["target"]],
         "active": row["active"]} for row in existing["alias_domains"]])

    await w.many(virtualuser.insert(), [
        {"domain_id": domain_ids[v.domain_of(row["email"])], "email": row["email"],
         "password": row["password"], "quota": row["quota"], "active": row["active"]}
        for row in new["mailboxes"]], "mailboxes")
    await w.by_key(virtualuser, "email", ("password", "quota", "active"),
                   existing["mailboxes"], "mailboxes")
    # The mailboxes with something hanging from them, and every updated one (whose sub-objects
    # are replaced whole).
    limited = [row for row in new["mailboxes"] if row["send_limits"] is not None
               or row["vacation"] is not None or row["app_passwords"]
               or row["totp"] is not None or row["recovery_codes"]]
    limited += existing["mailboxes"]
    if limited:
        mailbox_ids = await _existing(conn, virtualuser.c.email,
                                      (row["email"] for row in limited), virtualuser.c.id)
        replaced_tables = (mailboxsendlimit, *((vacation, apppassword) if carried else ()),
                           *((mailboxtotp, mailboxrecoverycode) if since_3 else ()))
        for chunk in _chunks([mailbox_ids[row["email"]] for row in existing["mailboxes"]],
                             IN_CHUNK):
            for table in replaced_tables:
                await conn.execute(table.delete().where(table.c.user_id.in_(chunk)))
        await w.many(mailboxsendlimit.insert(), [
            {"user_id": mailbox_ids[row["email"]], **row["send_limits"]}
            for row in limited if row["send_limits"] is not None])
        await w.many(vacation.insert(), [
            {"user_id": mailbox_ids[row["email"]], **row["vacation"]}
            for row in limited if row["vacation"] is not None])
        await w.many(apppassword.insert(), [
            {"user_id": mailbox_ids[row["email"]], **password}
            for row in limited for password in row["app_passwords"]])
        await w.many(mailboxtotp.insert(), [
            {"user_id": mailbox_ids[row["email"]], **row["totp"]}
            for row in limited if row["totp"] is not None])
        await w.many(mailboxrecoverycode.insert(), [
            {"user_id": mailbox_ids[row["email"]], **code}
            for row in limited for code in row["recovery_codes"]])

    await w.many(virtualalias.insert(), [
        {"domain_id": domain_ids[v.domain_of(row["source"])], "source": row["source"],
         "destination": row["destination"]} for row in new["aliases"]], "aliases")

    admin_columns = ("email", "password", "is_superadmin", "is_active", "read_only",
                     "language")
    await w.many(admin.insert(), [
        {"username": row["username"], **{name: row[name] for name in admin_columns}}
        for row in new["admins"]], "admins")
    await w.by_key(admin, "username", admin_columns if carried else admin_columns[:-1],
                   existing["admins"])
    admins = [*new["admins"], *existing["admins"]]
    admin_ids = await _existing(conn, admin.c.username, (row["username"] for row in admins),
                                admin.c.id)
    for chunk in _chunks([admin_ids[row["username"]] for row in existing["admins"]], IN_CHUNK):
        await conn.execute(admin_domain.delete().where(admin_domain.c.admin_id.in_(chunk)))
    await w.many(admin_domain.insert(), [
        {"admin_id": admin_ids[row["username"]], "domain_id": domain_ids[name]}
        for row in admins for name in row["domains"]])
    await w.many(apikey.insert(), [
        {"admin_id": admin_ids[username], **key} for username, key in plan.new_api_keys])
    # Second factors: replaced whole for updated admins, as their rights are.
    for chunk in _chunks([admin_ids[row["username"]] for row in existing["admins"]
                          if carried], IN_CHUNK):
        for table in (admintotp, adminpasskey, adminrecoverycode):
            await conn.execute(table.delete().where(table.c.admin_id.in_(chunk)))
    await w.many(admintotp.insert(), [
        {"admin_id": admin_ids[row["username"]], **row["totp"]}
        for row in admins if row["totp"] is not None])
    await w.many(adminpasskey.insert(), [
        {"admin_id": admin_ids[row["username"]], **key}
        for row in admins for key in row["passkeys"]])
    await w.many(adminrecoverycode.insert(), [
        {"admin_id": admin_ids[row["username"]], **code}
        for row in admins for code in row["recovery_codes"]])


async def import_document(
    store: Store,
    doc: object,
    *,
    on_conflict: OnConflict = "fail",
    dry_run: bool = False,
    actor: str = "cli",
    source: str = "",
    progress: Progress | None = None,
) -> Report:
    """Import `doc` (the parsed JSON). Raises ImportRefused, naming the rows, when any row is
    refused; then nothing was written. With `dry_run`, the report says what would be done."""
    checked = check_document(doc)
    # The checked rows are all that is needed from here: let the parsed document go, which
    # halves the import's memory when the caller hands it over without keeping it.
    doc = None
    report = Report(dry_run=dry_run)
    report.errors.extend(checked.errors)
    for section, count in checked.refused.items():
        report.refused[section] += count
    if checked.errors and not any(checked.refused.values()):
        # The document itself is wrong (not an export, another version): nothing to compare.
        raise ImportRefused(checked.errors, report.refused)
    if dry_run:
        async with store.read() as conn:
            await _plan(conn, checked, on_conflict, report)
        return report
    async with store.write() as conn:
        plan = await _plan(conn, checked, on_conflict, report)
        if report.errors:
            raise ImportRefused(report.errors, report.refused)
        await _write(conn, plan, progress, checked.version)
        counts = {kind: {section: getattr(report, kind)[section] for section in d.SECTIONS}
                  for kind in ("created", "updated", "skipped")}
        await audit.record(conn, actor, "import", "export_document", None, source, new=counts)
    return report
