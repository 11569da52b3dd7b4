"""The last loaded mail data on disk: what lookupd serves when it starts while the database is
unreachable (as sssd's offline cache), until the database answers again.

The file is JSON in two lines: a header, then the rows as arrays. JSON because it is fast enough
(see benchmarks/RESULTS.md) and, unlike pickle, reading it cannot run code, whoever wrote it.
The header says who wrote it and for what; a file written by another DinoMail version, in
another format, or for another database is ignored:

    {"format": "dinomail-lookupd-snapshot", "version": 3, "dinomail": "<version>",
     "database": "<backend>://<host>:<port>/<name>", "database_id": "<random id>",
     "seq": <change log position>, "saved_at": <unix time>}
    {"domains": [[id, name, active, catchall_senders, require_app_passwords], ...],
     "alias_domains": [[id, name, target, active], ...],
     "mailboxes": [[id, domain_id, email, password, quota, active], ...],
     "aliases": [[id, domain_id, source, destination], ...],
     "app_passwords": [[id, mailbox_id, protocols, password], ...],
     "vacations": [[mailbox_id, enabled, subject, body, starts, ends, interval_days], ...]}

(`starts` and `ends`: "YYYY-MM-DD" or null. Version 3 added the app passwords, the domains'
`require_app_passwords` and the vacations: a version 2 file, which lacks them, is ignored
rather than read as "no app passwords, no vacation".)

The database is named by its URL without the user and password, and by the random id kept in
its `dinomail_state` table (`dinomail.store.changes.database_id`), which is compared whenever
the daemon could read it. The file holds password hashes (mailboxes' and app passwords'): it
is created mode 0600, and written atomically (a temporary file in the same folder, fsync,
rename, fsync of the folder), so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from dinomail import __version__
from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    AppPasswordRow,
    DomainRow,
    MailboxRow,
    MailData,
    VacationRow,
)

log = logging.getLogger("dinomail.lookupd.snapshot_file")

FORMAT = "dinomail-lookupd-snapshot"
FORMAT_VERSION = 3
# Rows encoded at once when writing.
WRITE_CHUNK = 10_000
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def database_name(url: str) -> str:
    """The database a URL points at, without user or password: what a snapshot is for."""
    from dinomail.database import async_url

    parsed = async_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database or ""
        return f"sqlite:///{Path(path).resolve() if path and path != ':memory:' else path}"
    hosts = parsed.query.get("host")
    if isinstance(hosts, tuple):  # several servers (libpq's h1:p1,h2:p2)
        return f"{backend}://{','.join(hosts)}/{parsed.database or ''}"
    return f"{backend}://{parsed.host or ''}:{parsed.port or ''}/{parsed.database or ''}"


@dataclass(frozen=True)
class SavedSnapshot:
    data: MailData
    seq: int
    saved_at: float  # unix time
    database_id: str | None

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.saved_at)


def write_snapshot_file(
    path: Path, data: MailData, *, database: str, database_id: str | None, seq: int
) -> None:
    """Write `data` to `path` atomically, readable by this user only. Blocking: run it in a
    thread (the rows are immutable, so the loop may go on changing the snapshot meanwhile)."""
    header = {
        "format": FORMAT, "version": FORMAT_VERSION, "dinomail": __version__,
        "database": database, "database_id": database_id, "seq": seq, "saved_at": time.time(),
    }
    parts: dict[str, tuple[list[Any], Callable[[Any], tuple[Any, ...]]]] = {
        "domains": (
            data.domains,
            lambda r: (r.id, r.name, r.active, r.catchall_senders, r.require_app_passwords),
        ),
        "alias_domains": (
            data.alias_domains, lambda r: (r.id, r.name, r.target_domain_id, r.active)
        ),
        "mailboxes": (
            data.mailboxes,
            lambda r: (r.id, r.domain_id, r.email, r.password, r.quota, r.active),
        ),
        "aliases": (data.aliases, lambda r: (r.id, r.domain_id, r.source, r.destination)),
        "app_passwords": (
            data.app_passwords, lambda r: (r.id, r.mailbox_id, r.protocols, r.password)
        ),
        "vacations": (
            data.vacations,
            lambda r: (r.mailbox_id, r.enabled, r.subject, r.body, _day_text(r.starts),
                       _day_text(r.ends), r.interval_days),
        ),
    }
    folder = path.parent
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # whatever the umask, and an old temporary's mode
        with os.fdopen(descriptor, "wb", closefd=False) as file:
            file.write(json.dumps(header).encode() + b"\n")
            # Encoded a chunk at a time: a million rows never exist twice in memory as text.
            for number, (name, (rows, fields)) in enumerate(parts.items()):
                file.write(b'%s"%s":[' % (b"," if number else b"{", name.encode()))
                for start in range(0, len(rows), WRITE_CHUNK):
                    chunk = [fields(row) for row in rows[start:start + WRITE_CHUNK]]
                    text = _ENCODER.encode(chunk)[1:-1]
                    file.write((b"," if start else b"") + text.encode())
                file.write(b"]")
            file.write(b"}\n")
            file.flush()
            os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    os.replace(temporary, path)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_snapshot_file(
    path: Path, *, database: str, database_id: str | None = None
) -> SavedSnapshot | None:
    """The data saved in `path` if it was written by this version for this database (and, when
    `database_id` is known, for the database with that id); else None, saying why in the log."""
    # Hundreds of thousands of new containers would start the garbage collector again and
    # again (walking them all each time) for objects that hold no cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _read(path, database, database_id)
    finally:
        if enabled:
            gc.enable()


def _read(path: Path, database: str, database_id: str | None) -> SavedSnapshot | None:
    try:
        with path.open("rb") as file:
            header = _header(file.readline())
            if header is None:
                log.warning("ignoring %s: not a snapshot of this DinoMail's format", path)
                return None
            reason = _mismatch(header, database, database_id)
            if reason is not None:
                log.warning("ignoring %s: %s", path, reason)
                return None
            body = json.loads(file.readline())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring %s: cannot read it (%s)", path, error)
        return None
    try:
        # The rows as JSON typed them, unconverted (converting each field would double the
        # read time); the file is our own, and a wrong shape fails here, not in a lookup.
        data = MailData(
            domains=[DomainRow(*row) for row in body["domains"]],
            alias_domains=[AliasDomainRow(*row) for row in body["alias_domains"]],
            mailboxes=[MailboxRow(*row) for row in body["mailboxes"]],
            aliases=[AliasRow(*row) for row in body["aliases"]],
            app_passwords=[AppPasswordRow(*row) for row in body["app_passwords"]],
            vacations=[
                VacationRow(mailbox_id, enabled, subject, text, _day(starts), _day(ends), days)
                for mailbox_id, enabled, subject, text, starts, ends, days in body["vacations"]
            ],
        )
        _check_types(data)
    except (KeyError, TypeError, ValueError) as error:
        log.warning("ignoring %s: malformed rows (%s)", path, error)
        return None
    return SavedSnapshot(
        data, int(header["seq"]), float(header["saved_at"]), header.get("database_id")
    )


def _check_types(data: MailData) -> None:
    """Every field of the type the lookups expect (a file edited by hand is refused whole)."""
    for domain in data.domains:
        if not (type(domain.id) is int and type(domain.name) is str
                and type(domain.active) is bool and type(domain.catchall_senders) is bool
                and type(domain.require_app_passwords) is bool):
            raise TypeError(f"domain {domain!r}")
    for alias_domain in data.alias_domains:
        if not (type(alias_domain.id) is int and type(alias_domain.name) is str
                and type(alias_domain.target_domain_id) is int
                and type(alias_domain.active) is bool):
            raise TypeError(f"alias domain {alias_domain!r}")
    for mailbox in data.mailboxes:
        if not (type(mailbox.id) is int and type(mailbox.domain_id) is int
                and type(mailbox.email) is str and type(mailbox.password) is str
                and type(mailbox.active) is bool
                and (mailbox.quota is None or type(mailbox.quota) is int)):
            raise TypeError(f"mailbox {mailbox.id!r}")
    for alias in data.aliases:
        if not (type(alias.id) is int and type(alias.domain_id) is int
                and type(alias.source) is str and type(alias.destination) is str):
            raise TypeError(f"alias {alias.id!r}")
    for app_password in data.app_passwords:
        if not (type(app_password.id) is int and type(app_password.mailbox_id) is int
                and type(app_password.protocols) is str and type(app_password.password) is str):
            raise TypeError(f"app password {app_password.id!r}")
    for vacation in data.vacations:
        if not (type(vacation.mailbox_id) is int and type(vacation.enabled) is bool
                and type(vacation.subject) is str and type(vacation.body) is str
                and type(vacation.interval_days) is int):
            raise TypeError(f"vacation {vacation.mailbox_id!r}")


def _day_text(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _day(text: object) -> date | None:
    """A day written by `_day_text`; anything else is a malformed file (ValueError)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"not a day: {text!r}")
    return date.fromisoformat(text)


def _header(line: bytes) -> dict[str, Any] | None:
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None
    return header


def _mismatch(header: dict[str, Any], database: str, database_id: str | None) -> str | None:
    if header.get("version") != FORMAT_VERSION or header.get("dinomail") != __version__:
        return (f"written by DinoMail {header.get('dinomail')} (format "
                f"{header.get('version')}), this is {__version__} (format {FORMAT_VERSION})")
    if header.get("database") != database:
        return f"written for the database {header.get('database')}, not {database}"
    if database_id is not None and header.get("database_id") != database_id:
        return "written for another database at the same address"
    if not isinstance(header.get("seq"), int) or not isinstance(header.get("saved_at"), float):
        return "a malformed header"
    return None
