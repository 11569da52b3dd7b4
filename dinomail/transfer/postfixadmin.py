"""`dinomail import-postfixadmin`: a PostfixAdmin 3.x database, read as an export document.

PostfixAdmin's tables (`domain`, `mailbox`, `alias`, `alias_domain`, `admin`, `domain_admins`)
are turned into the document `dinomail export` writes, which then goes through the same import:
the same checks, the same conflicts, one transaction. What PostfixAdmin does differently:

- every mailbox has an alias to itself (`goto` = its own address), which is dropped; `goto`
  lists several destinations separated by commas;
- password hashes are Dovecot `{SCHEME}` strings or bare crypt strings (`$1$` MD5-CRYPT, `$5$`
  SHA256-CRYPT, `$6$` SHA512-CRYPT, `$2y$` BLF-CRYPT, `$argon2i…$`), made `{SCHEME}` here;
- domain quotas are in megabytes of `quota_multiplier` bytes (1024000 by default), mailbox
  quotas in bytes; limits of -1 ("disabled") have no DinoMail equivalent and become 0;
- the pseudo-domain `ALL` marks superadmins; alias domains are also rows of `domain`; backup MX
  domains are relayed, not hosted, and are left out;
- admin passwords are the same kind of hashes: DinoMail's admin login verifies them (see
  `dinomail.store.admins`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import create_async_engine

from dinomail import validation as v
from dinomail.passwords import PasswordSchemeError, split_stored
from dinomail.passwords.schemes import lookup_scheme
from dinomail.transfer import document as d

DEFAULT_QUOTA_MULTIPLIER = 1024000
# What an admin whose hash DinoMail cannot verify gets: no password verifies it.
UNUSABLE_ADMIN_PASSWORD = "!postfixadmin-hash-not-recognised"
SUPERADMIN_DOMAIN = "ALL"

_DRIVERS = {
    "postgres": "postgresql+asyncpg", "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql", "mariadb": "mysql+aiomysql", "mysql+aiomysql": "mysql+aiomysql",
}
# Bare crypt strings, by the prefix PHP's crypt() gives them.
_CRYPT_SCHEMES = (
    ("$1$", "MD5-CRYPT"), ("$5$", "SHA256-CRYPT"), ("$6$", "SHA512-CRYPT"),
    ("$2y$", "BLF-CRYPT"), ("$2a$", "BLF-CRYPT"), ("$2b$", "BLF-CRYPT"),
    ("$argon2id$", "ARGON2ID"), ("$argon2i$", "ARGON2I"),
)


class PostfixAdminError(ValueError):
    """The PostfixAdmin database cannot be read or holds something DinoMail cannot take."""


def dovecot_hash(stored: str) -> str | None:
    """The `{SCHEME}data` form DinoMail verifies, or None when the hash is not recognised."""
    stored = stored.strip()
    if stored.startswith("{"):
        try:
            lookup_scheme(split_stored(stored)[0])
        except PasswordSchemeError:
            return None
        return stored
    for prefix, scheme in _CRYPT_SCHEMES:
        if stored.startswith(prefix):
            if scheme == "BLF-CRYPT":
                # $2a$, $2b$ and $2y$ are the same bcrypt for a correct implementation;
                # Dovecot's BLF-CRYPT (and DinoMail's) write and read $2y$.
                stored = "$2y$" + stored[len(prefix):]
            return f"{{{scheme}}}{stored}"
    return None


@dataclass
class Converted:
    """The document, with where each of its rows came from, and what was left out."""

    document: dict[str, Any]
    origins: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def origin(self, path: str) -> str:
        """`$.mailboxes[3].email` → `mailbox alice@example.org (email)`."""
        match = re.fullmatch(r"\$\.(\w+)\[(\d+)\]\.?(.*)", path)
        if match is None or match.group(1) not in self.origins:
            return path
        section, index, rest = match.group(1), int(match.group(2)), match.group(3)
        rows = self.origins[section]
        where = rows[index] if index < len(rows) else path
        return f"{where} ({rest})" if rest else where


def _engine_url(url: str) -> sa.URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise PostfixAdminError(f"{url!r} is not a database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise PostfixAdminError(
            f"unsupported database {parsed.drivername!r} (use postgresql:// or mysql://)")
    return parsed.set(drivername=driver)


def _limit(value: Any, what: str, notes: list[str], multiplier: int = 1) -> int:
    number = int(value or 0)
    if number < 0:
        notes.append(f"{what} is {number} (disabled) in PostfixAdmin: imported as 0, unlimited")
        return 0
    return number * multiplier


async def read_tables(url: str, prefix: str = "") -> dict[str, list[dict[str, Any]]]:
    """The rows DinoMail takes from each PostfixAdmin table."""
    queries = {
        "domain": "SELECT domain, description, aliases, mailboxes, maxquota, quota, backupmx, "
                  "active FROM {t} ORDER BY domain",
        "alias_domain": "SELECT alias_domain, target_domain, active FROM {t} "
                        "ORDER BY alias_domain",
        "mailbox": "SELECT username, password, quota, active FROM {t} ORDER BY username",
        "alias": "SELECT address, goto, active FROM {t} ORDER BY address",
        "admin": "SELECT username, password, superadmin, active FROM {t} ORDER BY username",
        "domain_admins": "SELECT username, domain FROM {t} WHERE active ORDER BY username, domain",
    }
    try:
        engine = create_async_engine(_engine_url(url))
    except (NoSuchModuleError, ModuleNotFoundError):
        raise PostfixAdminError(
            "reading MySQL/MariaDB needs the aiomysql driver: pip install 'dinomail[mysql]'"
        ) from None
    try:
        async with engine.connect() as conn:
            return {
                table: [dict(row) for row in
                        (await conn.execute(sa.text(query.format(t=prefix + table)))).mappings()]
                for table, query in queries.items()
            }
    finally:
        await engine.dispose()


def convert(
    tables: dict[str, list[dict[str, Any]]],
    *,
    quota_multiplier: int = DEFAULT_QUOTA_MULTIPLIER,
    vacation_domain: str = "",
) -> Converted:
    """PostfixAdmin's rows as an export document (not yet checked: the import checks it)."""
    notes: list[str] = []
    refusals: list[str] = []
    origins: dict[str, list[str]] = {section: [] for section in d.SECTIONS}
    alias_domain_names = {str(row["alias_domain"]).lower() for row in tables["alias_domain"]}

    domains = []
    hosted: set[str] = set()
    for row in tables["domain"]:
        name = str(row["domain"]).strip().lower()
        if name == SUPERADMIN_DOMAIN.lower() or name in alias_domain_names:
            continue
        if bool(row["backupmx"]):
            notes.append(f"domain {name}: a backup MX domain in PostfixAdmin (relayed, not "
                         "hosted): left out")
            continue
        hosted.add(name)
        origins["domains"].append(f"domain {row['domain']}")
        domains.append({
            "name": name, "active": bool(row["active"]),
            "display_name": str(row["description"] or "")[:200],
            "short_display_name": "", "imap_address": "", "pop_address": "", "smtp_address": "",
            "dkim_key_name": "", "dkim_key": "",
            "max_mailboxes": _limit(row["mailboxes"], f"domain {name}: mailboxes", notes),
            "max_aliases": _limit(row["aliases"], f"domain {name}: aliases", notes),
            "max_quota_per_mailbox": _limit(row["maxquota"], f"domain {name}: maxquota", notes,
                                            quota_multiplier),
            "total_quota": _limit(row["quota"], f"domain {name}: quota", notes,
                                  quota_multiplier),
            "default_quota": 0,
            # PostfixAdmin's sender login query matches exact addresses only.
            "catchall_senders": False,
            "dkim": None, "client_config": None, "send_limits": None,
        })

    alias_domains = []
    for row in tables["alias_domain"]:
        origins["alias_domains"].append(f"alias domain {row['alias_domain']}")
        alias_domains.append({"name": str(row["alias_domain"]).strip().lower(),
                              "target": str(row["target_domain"]).strip().lower(),
                              "active": bool(row["active"])})

    mailboxes = []
    emails: set[str] = set()
    for row in tables["mailbox"]:
        email = str(row["username"]).strip().lower()
        emails.add(email)
        password = dovecot_hash(str(row["password"] or ""))
        if password is None:
            refusals.append(f"mailbox {row['username']}: the password hash is not one DinoMail "
                            "recognises (a {SCHEME} hash or a $1$, $5$, $6$, $2y$ crypt string)")
            continue
        origins["mailboxes"].append(f"mailbox {row['username']}")
        mailboxes.append({"email": email, "password": password,
                          "quota": _limit(row["quota"], f"mailbox {email}: quota", notes),
                          "active": bool(row["active"]), "send_limits": None})

    aliases = []
    pairs: set[tuple[str, str]] = set()
    for row in tables["alias"]:
        source = str(row["address"]).strip().lower()
        destinations = [part.strip().lower() for part in str(row["goto"] or "").split(",")
                        if part.strip()]
        if vacation_domain:
            away = [dest for dest in destinations if v.domain_of(dest) == vacation_domain]
            if away:
                notes.append(f"alias {source}: the vacation auto-reply ({away[0]}) is left out")
                destinations = [dest for dest in destinations if dest not in away]
        others = [dest for dest in destinations if dest != source]
        if not bool(row["active"]):
            if others:
                notes.append(f"alias {source}: inactive in PostfixAdmin, left out")
            continue
        # A mailbox that forwards and keeps a copy: its own address stays among the
        # destinations, and Postfix delivers an address found in its own expansion.
        keeps_copy = source in emails and source in destinations and bool(others)
        for destination in [source, *others] if keeps_copy else others:
            if (source, destination) in pairs:
                continue
            pairs.add((source, destination))
            origins["aliases"].append(f"alias {row['address']} -> {destination}")
            aliases.append({"source": source, "destination": destination})

    rights: dict[str, list[str]] = {}
    for row in tables["domain_admins"]:
        rights.setdefault(str(row["username"]), []).append(str(row["domain"]).strip().lower())
    admins = []
    for row in tables["admin"]:
        username = str(row["username"]).strip()
        domains_of = rights.get(username, [])
        password = dovecot_hash(str(row["password"] or ""))
        if password is None:
            notes.append(f"admin {username}: the password hash is not recognised; imported "
                         "with no usable password (set one in DinoMail)")
            password = UNUSABLE_ADMIN_PASSWORD
        email = ""
        with contextlib.suppress(v.ValidationError):
            email = v.normalize_email(username) if "@" in username else ""
        origins["admins"].append(f"admin {username}")
        admins.append({
            "username": username, "email": email, "password": password,
            "is_superadmin": bool(row["superadmin"]) or SUPERADMIN_DOMAIN.lower() in domains_of,
            "is_active": bool(row["active"]),
            "domains": sorted({name for name in domains_of if name in hosted}),
            "api_keys": [],
        })

    document = {"format": d.FORMAT, "version": d.VERSION, "domains": domains,
                "alias_domains": alias_domains, "mailboxes": mailboxes, "aliases": aliases,
                "admins": admins}
    return Converted(document, origins, notes, refusals)


def describe(converted: Converted, errors: Sequence[Any]) -> list[str]:
    """Refusals of the import, naming PostfixAdmin's rows instead of document paths."""
    return [f"{converted.origin(error.path)}: {error.message}" for error in errors]
