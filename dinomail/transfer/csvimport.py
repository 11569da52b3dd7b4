"""Bulk creation of mailboxes or aliases from a CSV file, through the store's own create calls.

Every line goes through `mailboxes.create` or `aliases.create` (the rules of the API: addresses,
domains, limits, quotas, audit) inside one transaction, each in its own savepoint so that every
wrong line is found and reported by its number; if any line is wrong, or in a dry run, the
transaction is rolled back and nothing is written. Passwords given in clear are hashed with
DINOMAIL_PASSWORD_SCHEME; a mailbox without one gets a generated password, returned once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import secrets
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.store import EVERYTHING, Scope, Store, StoreError, aliases, mailboxes

Kind = Literal["mailboxes", "aliases"]
KINDS: tuple[Kind, ...] = ("mailboxes", "aliases")
# The columns of each kind, the required ones first.
COLUMNS: dict[Kind, tuple[str, ...]] = {
    "mailboxes": ("email", "password", "quota", "active"),
    "aliases": ("source", "destination"),
}
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "mailboxes": ("email",), "aliases": ("source", "destination"),
}
GENERATED_PASSWORD_BYTES = 12  # 16 characters of URL-safe base64
_TRUE = {"true", "yes", "1", "y", "on"}
_FALSE = {"false", "no", "0", "n", "off"}


class CsvRefused(ValueError):
    """The file cannot be imported; `errors` are `line N: field: message`; nothing was written."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0] if errors else "refused")
        self.errors = errors


class _RollBack(Exception):
    """Leaves the transaction without committing (a dry run, or wrong lines)."""


@dataclass
class CsvResult:
    created: int = 0
    # (address, password) of each mailbox whose password was generated: shown once.
    generated: list[tuple[str, str]] = field(default_factory=list)
    dry_run: bool = False


def read_rows(text: str, kind: Kind) -> list[tuple[int, dict[str, str]]]:
    """(line number, values) of each data line; the first line names the columns."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if not header:
        raise CsvRefused(["line 1: the file is empty; the first line names the columns "
                          f"({', '.join(COLUMNS[kind])})"])
    unknown = [name for name in header if name not in COLUMNS[kind]]
    if unknown:
        raise CsvRefused([f"line 1: {unknown[0]!r} is not a column of {kind} (columns: "
                          f"{', '.join(COLUMNS[kind])})"])
    missing = [name for name in REQUIRED[kind] if name not in header]
    if missing:
        raise CsvRefused([f"line 1: the column {missing[0]} is required"])
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    errors: list[str] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(f"line {line}: more values than columns")
            continue
        values = {key: (value or "").strip() for key, value in row.items()}
        if not any(values.values()):
            continue
        rows.append((line, values))
    if errors:
        raise CsvRefused(errors)
    return rows


def _line_scope(conn: AsyncConnection) -> AbstractAsyncContextManager[Any]:
    """A savepoint per line on PostgreSQL, where a failed statement would abort the whole
    transaction. Not on SQLite: its Python driver opens the transaction only at the first write,
    so a savepoint taken before would be the outermost one and its release would commit. There
    a wrong line needs none: the store refuses before writing, and any refusal rolls back the
    whole transaction anyway."""
    if conn.dialect.name == "postgresql":
        return conn.begin_nested()
    return contextlib.nullcontext()


def _mailbox_data(values: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"email": values["email"]}
    if values.get("quota"):
        data["quota"] = values["quota"]
    active = values.get("active", "").lower()
    if active:
        if active not in _TRUE | _FALSE:
            raise v.ValidationError("active", "must be true or false", code="not_boolean")
        data["active"] = active in _TRUE
    return data


async def import_csv(
    store: Store, kind: Kind, text: str, *, scheme: str, min_password_length: int,
    dry_run: bool = False, actor: str = "cli", scope: Scope = EVERYTHING,
) -> CsvResult:
    """Create every line's object, or none; raises CsvRefused naming each wrong line."""
    rows = read_rows(text, kind)
    result = CsvResult(dry_run=dry_run)
    errors: list[str] = []
    hashes: dict[int, str] = {}
    if kind == "mailboxes":
        for line, values in rows:
            password = values.get("password", "")
            email = values["email"].lower()
            if not password:
                password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
                result.generated.append((email, password))
            try:
                hashes[line] = await mailboxes.hash_new_password(
                    password, scheme, email=email, min_length=min_password_length)
            except v.ValidationError as error:
                errors.append(f"line {line}: {error.field}: {error.message}")
    try:
        async with store.write() as conn:
            for line, values in rows:
                try:
                    async with _line_scope(conn):
                        if kind == "mailboxes":
                            if line not in hashes:
                                continue
                            await mailboxes.create(conn, actor, scope,
                                                   _mailbox_data(values),
                                                   password_hash=hashes[line])
                        else:
                            await aliases.create(conn, actor, scope, values)
                except v.ValidationError as error:
                    errors.append(f"line {line}: {error.field}: {error.message}")
                except StoreError as error:
                    where = f"{error.field}: " if error.field else ""
                    errors.append(f"line {line}: {where}{error.message}")
                else:
                    result.created += 1
            if errors or dry_run:
                raise _RollBack
    except _RollBack:
        pass
    if errors:
        errors.sort(key=lambda text: int(text.split(":")[0].removeprefix("line ")))
        raise CsvRefused(errors)
    if dry_run:
        result.generated = []
    return result
