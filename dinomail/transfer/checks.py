"""Checking an export document row by row, with the store's own normalisers, before any write.

Every problem is kept with the JSON path of the value at fault (`$.mailboxes[12].email`), so the
admin can find the row; nothing here touches the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dinomail import dkim
from dinomail import validation as v
from dinomail.passwords import PasswordSchemeError, split_stored
from dinomail.passwords.schemes import lookup_scheme
from dinomail.store import aliases, domains, mailboxes, policy
from dinomail.store.dns import CLIENT_NORMALIZERS
from dinomail.store.fields import clean_fields
from dinomail.transfer import document as d

_CONTROL = re.compile(r"[\x00-\x1f]")


class RowError(ValueError):
    """One value of the document is wrong; `path` is where (JSON path)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class Checked:
    """The document's rows, normalised; `errors` holds every refusal found."""

    domains: list[dict[str, Any]] = field(default_factory=list)
    alias_domains: list[dict[str, Any]] = field(default_factory=list)
    mailboxes: list[dict[str, Any]] = field(default_factory=list)
    aliases: list[dict[str, Any]] = field(default_factory=list)
    admins: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    # How many rows of each section were refused.
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(d.SECTIONS, 0))

    def refuse(self, section: str, error: RowError) -> None:
        self.errors.append(error)
        self.refused[section] += 1


def _object(value: object, path: str, fields: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RowError(path, "must be an object")
    for name in value:
        if name not in fields:
            raise RowError(f"{path}.{name}", "is not a field of this object")
    for name in fields:
        if name not in value:
            raise RowError(f"{path}.{name}", "is missing")
    return dict(value)


def _clean(
    value: Mapping[str, Any], path: str, normalizers: Mapping[str, Callable[[Any, str], Any]]
) -> dict[str, Any]:
    try:
        return clean_fields(value, normalizers)
    except v.ValidationError as error:
        raise RowError(f"{path}.{error.field}", error.message) from None


def _text(value: object, path: str, max_length: int, *, required: bool = False) -> str:
    if not isinstance(value, str) or len(value) > max_length or (required and not value):
        raise RowError(path, f"must be text of {'1' if required else '0'} to {max_length} "
                             "characters")
    if _CONTROL.search(value):
        raise RowError(path, "must not contain control characters")
    return value


def _mailbox_hash(value: object, path: str) -> str:
    stored = _text(value, path, 300, required=True)
    try:
        scheme, _ = split_stored(stored)
        lookup_scheme(scheme)
    except PasswordSchemeError as error:
        raise RowError(path, f"is not a Dovecot password hash DinoMail knows ({error})") from None
    return stored


def _domain(row: object, path: str) -> dict[str, Any]:
    raw = _object(row, path, (*d.DOMAIN_FIELDS, "dkim", "client_config", "send_limits"))
    out = _clean({key: raw[key] for key in d.DOMAIN_FIELDS}, path, domains.NORMALIZERS)
    out["dkim"] = None if raw["dkim"] is None else _dkim(raw["dkim"], f"{path}.dkim")
    config = raw["client_config"]
    out["client_config"] = None if config is None else _clean(
        _object(config, f"{path}.client_config", d.CLIENT_CONFIG_FIELDS),
        f"{path}.client_config", CLIENT_NORMALIZERS,
    )
    limits = raw["send_limits"]
    out["send_limits"] = None if limits is None else _clean(
        _object(limits, f"{path}.send_limits", d.DOMAIN_SEND_LIMIT_FIELDS),
        f"{path}.send_limits", policy._DOMAIN_NORMALIZERS,
    )
    return out


def _dkim(row: object, path: str) -> dict[str, Any]:
    key = _object(row, path, d.DKIM_FIELDS)
    try:
        selector = dkim.normalize_selector(key["selector"], "selector")
    except v.ValidationError as error:
        raise RowError(f"{path}.selector", error.message) from None
    if key["algorithm"] not in dkim.ALGORITHMS:
        raise RowError(f"{path}.algorithm", f"must be one of {', '.join(dkim.ALGORITHMS)}")
    if isinstance(key["key_bits"], bool) or not isinstance(key["key_bits"], int):
        raise RowError(f"{path}.key_bits", "must be a whole number")
    private = key["private_key"]
    if not isinstance(private, str) or len(private) > 20_000:
        raise RowError(f"{path}.private_key", "must be a PEM private key")
    try:
        public = dkim.public_value_of_private(private)
    except (ValueError, TypeError):
        raise RowError(f"{path}.private_key", "is not a PKCS#8 PEM private key") from None
    if public != key["public_key"]:
        raise RowError(f"{path}.public_key", "is not the public half of private_key")
    return {"selector": selector, "algorithm": key["algorithm"], "key_bits": key["key_bits"],
            "private_key": private, "public_key": public}


def _alias_domain(row: object, path: str) -> dict[str, Any]:
    raw = _object(row, path, d.ALIAS_DOMAIN_FIELDS)
    try:
        return {"name": v.normalize_domain(raw["name"], "name"),
                "target": v.normalize_domain(raw["target"], "target"),
                "active": v.normalize_bool(raw["active"], "active")}
    except v.ValidationError as error:
        raise RowError(f"{path}.{error.field}", error.message) from None


def _mailbox(row: object, path: str) -> dict[str, Any]:
    raw = _object(row, path, (*d.MAILBOX_FIELDS, "send_limits"))
    out = _clean({key: raw[key] for key in ("email", "quota", "active")}, path,
                 mailboxes.NORMALIZERS)
    out["password"] = _mailbox_hash(raw["password"], f"{path}.password")
    limits = raw["send_limits"]
    out["send_limits"] = None if limits is None else _clean(
        _object(limits, f"{path}.send_limits", d.MAILBOX_SEND_LIMIT_FIELDS),
        f"{path}.send_limits", policy._MAILBOX_NORMALIZERS,
    )
    return out


def _alias(row: object, path: str) -> dict[str, Any]:
    out = _clean(_object(row, path, d.ALIAS_FIELDS), path, aliases.NORMALIZERS)
    return out


def _admin(row: object, path: str) -> dict[str, Any]:
    raw = _object(row, path, (*d.ADMIN_FIELDS, "domains", "api_keys"))
    try:
        out: dict[str, Any] = {
            "username": v.normalize_username(raw["username"], "username"),
            "email": v.normalize_email(raw["email"], "email") if raw["email"] else "",
            "is_superadmin": v.normalize_bool(raw["is_superadmin"], "is_superadmin"),
            "is_active": v.normalize_bool(raw["is_active"], "is_active"),
        }
    except v.ValidationError as error:
        raise RowError(f"{path}.{error.field}", error.message) from None
    out["password"] = _text(raw["password"], f"{path}.password", 300, required=True)
    if not isinstance(raw["domains"], list):
        raise RowError(f"{path}.domains", "must be a list of domain names")
    names = []
    for index, name in enumerate(raw["domains"]):
        try:
            names.append(v.normalize_domain(name, "domain"))
        except v.ValidationError as error:
            raise RowError(f"{path}.domains[{index}]", error.message) from None
    out["domains"] = sorted(set(names))
    if not isinstance(raw["api_keys"], list):
        raise RowError(f"{path}.api_keys", "must be a list")
    out["api_keys"] = [_api_key(key, f"{path}.api_keys[{index}]")
                       for index, key in enumerate(raw["api_keys"])]
    return out


def _api_key(row: object, path: str) -> dict[str, Any]:
    key = _object(row, path, d.API_KEY_FIELDS)
    key_hash = key["key_hash"]
    if not (isinstance(key_hash, str) and len(key_hash) == 64
            and all(char in "0123456789abcdef" for char in key_hash)):
        raise RowError(f"{path}.key_hash", "must be a SHA-256 digest in lowercase hexadecimal")
    if not isinstance(key["read_only"], bool):
        raise RowError(f"{path}.read_only", "must be true or false")
    return {"name": _text(key["name"], f"{path}.name", 100),
            "prefix": _text(key["prefix"], f"{path}.prefix", 16),
            "key_hash": key_hash, "read_only": key["read_only"]}


_ROW_CHECKS: dict[str, Callable[[object, str], dict[str, Any]]] = {
    "domains": _domain,
    "alias_domains": _alias_domain,
    "mailboxes": _mailbox,
    "aliases": _alias,
    "admins": _admin,
}
# What makes two rows of a section the same object.
_KEYS: dict[str, Callable[[dict[str, Any]], object]] = {
    "domains": lambda row: row["name"],
    "alias_domains": lambda row: row["name"],
    "mailboxes": lambda row: row["email"],
    "aliases": lambda row: (row["source"], row["destination"]),
    "admins": lambda row: row["username"],
}


def check_document(doc: object) -> Checked:
    """Every row normalised, or refused with its path. Cross-row rules that need no database
    (duplicates, a name both a domain and an alias domain, an API key given twice) too."""
    checked = Checked()
    if not isinstance(doc, Mapping):
        checked.errors.append(RowError("$", "the document is not a JSON object"))
        return checked
    if doc.get("format") != d.FORMAT:
        checked.errors.append(RowError("$.format", f"must be {d.FORMAT!r}: not a DinoMail export"))
        return checked
    if doc.get("version") != d.VERSION:
        checked.errors.append(RowError(
            "$.version", f"version {doc.get('version')!r} is not one this DinoMail reads "
            f"({d.VERSION})"))
        return checked
    for name in doc:
        if name not in (*d.SECTIONS, "format", "version", "exported_at"):
            checked.errors.append(RowError(f"$.{name}", "is not a part of the document"))
    for section in d.SECTIONS:
        rows = doc.get(section, [])
        if not isinstance(rows, list):
            checked.errors.append(RowError(f"$.{section}", "must be a list"))
            continue
        seen: set[object] = set()
        kept: list[dict[str, Any]] = getattr(checked, section)
        for index, row in enumerate(rows):
            path = f"$.{section}[{index}]"
            try:
                clean = _ROW_CHECKS[section](row, path)
            except RowError as error:
                checked.refuse(section, error)
                continue
            key = _KEYS[section](clean)
            if key in seen:
                checked.refuse(section, RowError(path, "is given twice in the document"))
                continue
            seen.add(key)
            clean["path"] = path
            kept.append(clean)
    names = {row["name"] for row in checked.domains}
    for row in checked.alias_domains:
        if row["name"] in names:
            checked.refuse("alias_domains", RowError(
                f"{row['path']}.name", f"{row['name']} is also a domain of the document"))
    # An alias to its own address is only the copy a forwarding mailbox keeps (Postfix
    # delivers an address found in its own expansion); on any other address it loops.
    emails = {row["email"] for row in checked.mailboxes}
    for row in checked.aliases:
        if row["source"] == row["destination"] and row["source"] not in emails:
            checked.refuse("aliases", RowError(
                f"{row['path']}.destination",
                "an alias cannot deliver to its own address, except a mailbox's (keeping a copy)"))
    key_hashes: set[str] = set()
    for row in checked.admins:
        for index, key in enumerate(row["api_keys"]):
            if key["key_hash"] in key_hashes:
                checked.refuse("admins", RowError(f"{row['path']}.api_keys[{index}]",
                                                  "this API key is given twice"))
            key_hashes.add(key["key_hash"])
    return checked
