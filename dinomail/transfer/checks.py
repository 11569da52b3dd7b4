"""Checking an export document row by row, with the store's own normalisers, before any write.

Every problem is kept with the JSON path of the value at fault (`$.mailboxes[12].email`), so the
admin can find the row; nothing here touches the database.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dinomail import dkim
from dinomail import validation as v
from dinomail.passwords import PasswordSchemeError, split_stored
from dinomail.passwords.schemes import lookup_scheme
from dinomail.settings import LANGUAGES
from dinomail.store import (
    aliases,
    apppasswords,
    domains,
    mailboxes,
    policy,
    twofactor,
    vacation,
)
from dinomail.store.dns import CLIENT_NORMALIZERS
from dinomail.store.fields import clean_fields
from dinomail.store.mtasts import NORMALIZERS as STS_NORMALIZERS
from dinomail.transfer import document as d

_CONTROL = re.compile(r"[\x00-\x1f]")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_BASE32 = re.compile(r"[A-Z2-7]+")
# The largest BIGINT: TOTP steps and passkey signature counters are stored in one.
_MAX_BIGINT = 2**63 - 1
# Retiring DKIM selectors of one domain: a few rotations' worth, far more than any zone keeps.
MAX_RETIRING = 100
# Recovery codes of one admin or mailbox: ten a set, with room for sets made by other tools.
MAX_RECOVERY_CODES = 100
# Problems listed before the rest is only counted.
MAX_SHOWN = 20


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
    # The document's version: an earlier document says nothing of the fields later versions
    # added, so an update leaves them as they are rather than clearing them.
    version: int = d.VERSION
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


def _optional(row: object, names: Sequence[str]) -> tuple[object, dict[str, object]]:
    """The row without the fields it may leave out (those of versions 2 and later), and those it
    has."""
    if not isinstance(row, Mapping):
        return row, {}
    rest = dict(row)
    return rest, {name: rest.pop(name) for name in names if name in rest}


def _flag(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise RowError(path, "must be true or false")
    return value


def _whole(value: object, path: str, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_BIGINT:
        raise RowError(path, "must be a whole number, 0 or more"
                             + (", or null" if nullable else ""))
    return value


def _moment(value: object, path: str, *, nullable: bool = False) -> datetime | None:
    """A time as the export writes it: ISO 8601 with its offset (`...Z`)."""
    if value is None and nullable:
        return None
    problem = "must be a time in ISO 8601 with its offset, as 2026-12-06T04:30:00Z" + (
        ", or null" if nullable else "")
    if not isinstance(value, str):
        raise RowError(path, problem)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RowError(path, problem) from None
    if parsed.tzinfo is None:
        raise RowError(path, problem)
    return parsed.astimezone(UTC)


def _list(value: object, path: str, limit: int) -> list[object]:
    if not isinstance(value, list):
        raise RowError(path, "must be a list")
    if len(value) > limit:
        raise RowError(path, f"must hold at most {limit} entries")
    return value


def _self_service(value: object, path: str) -> dict[str, bool]:
    raw = _object(value, path, d.SELF_SERVICE_FIELDS)
    return {name: _flag(raw[name], f"{path}.{name}") for name in d.SELF_SERVICE_FIELDS}


def _mta_sts(value: object, path: str) -> dict[str, Any]:
    """A domain's MTA-STS policy, checked as the store's `mtasts.save` checks what it is given
    (the MX host it may fall back on is the target's, so an empty `mx` is taken as it is)."""
    raw = _object(value, path, d.MTA_STS_FIELDS)
    if not isinstance(raw["mx"], list):
        raise RowError(f"{path}.mx", "must be a list of MX host patterns")
    clean = _clean(raw, path, STS_NORMALIZERS)
    return {**clean, "mx": "\n".join(clean["mx"])}


def _domain(row: object, path: str) -> dict[str, Any]:
    row, extra = _optional(row, (d.DOMAIN_REQUIRE_APP_PASSWORDS, d.DOMAIN_SELF_SERVICE,
                                 d.DOMAIN_DKIM_RETIRING, d.DOMAIN_MTA_STS))
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
    out["require_app_passwords"] = _flag(
        extra.get(d.DOMAIN_REQUIRE_APP_PASSWORDS, False),
        f"{path}.{d.DOMAIN_REQUIRE_APP_PASSWORDS}")
    switches = extra.get(d.DOMAIN_SELF_SERVICE)
    out["self_service"] = None if switches is None else _self_service(
        switches, f"{path}.{d.DOMAIN_SELF_SERVICE}")
    sts = extra.get(d.DOMAIN_MTA_STS)
    out["mta_sts"] = None if sts is None else _mta_sts(sts, f"{path}.{d.DOMAIN_MTA_STS}")
    # Only the selector the domain publishes is current: a generated key a selector changed by
    # hand left behind keeps its old selector, which is retiring (`dinomail.store.retiring`).
    current = {str(out["dkim_key_name"]).strip().lower()}
    out["dkim_retiring"] = _dkim_retiring(
        extra.get(d.DOMAIN_DKIM_RETIRING, []), f"{path}.{d.DOMAIN_DKIM_RETIRING}",
        current - {""})
    return out


def _selector_and_algorithm(key: dict[str, Any], path: str) -> tuple[str, str]:
    """A DKIM key's selector (normalized) and algorithm, both checked."""
    try:
        selector = dkim.normalize_selector(key["selector"], "selector")
    except v.ValidationError as error:
        raise RowError(f"{path}.selector", error.message) from None
    algorithm = key["algorithm"]
    if algorithm not in dkim.ALGORITHMS:
        raise RowError(f"{path}.algorithm", f"must be one of {', '.join(dkim.ALGORITHMS)}")
    return selector, algorithm


def _retiring_key(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.DKIM_RETIRING_FIELDS)
    selector, algorithm = _selector_and_algorithm(raw, path)
    public = raw["public_key"]
    if not isinstance(public, str) or len(public) > 20_000:
        raise RowError(f"{path}.public_key", "must be a DKIM public key (the p= value)")
    try:
        dkim.public_key_of(public, algorithm)
    except dkim.DkimError as error:
        raise RowError(f"{path}.public_key", f"is not a {algorithm} DKIM public key "
                                             f"({error})") from None
    return {"selector": selector, "algorithm": algorithm, "public_key": "".join(public.split()),
            "replaced_at": _moment(raw["replaced_at"], f"{path}.replaced_at")}


def _dkim_retiring(value: object, path: str, current: set[str]) -> list[dict[str, Any]]:
    """The retiring selectors of a domain: none given twice, none the one it publishes now (the
    rotation moved it away from them)."""
    out: list[dict[str, Any]] = []
    for index, item in enumerate(_list(value, path, MAX_RETIRING)):
        clean = _retiring_key(item, f"{path}[{index}]")
        if clean["selector"] in current:
            raise RowError(f"{path}[{index}].selector",
                           f"{clean['selector']} is the domain's current DKIM selector")
        if any(other["selector"] == clean["selector"] for other in out):
            raise RowError(f"{path}[{index}].selector",
                           f"the selector {clean['selector']} is given twice")
        out.append(clean)
    return out


def _dkim(row: object, path: str) -> dict[str, Any]:
    key = _object(row, path, d.DKIM_FIELDS)
    selector, _algorithm = _selector_and_algorithm(key, path)
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


def _vacation(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.VACATION_FIELDS)
    out = _clean(raw, path, vacation.NORMALIZERS)
    try:
        vacation._check(out)
    except v.ValidationError as error:
        raise RowError(f"{path}.{error.field}", error.message) from None
    return out


def _app_password(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.APP_PASSWORD_FIELDS)
    name = _text(raw["name"], f"{path}.name", apppasswords.MAX_NAME_LENGTH, required=True)
    if name != name.strip():
        raise RowError(f"{path}.name", "must not begin or end with spaces")
    if not isinstance(raw["protocols"], list):
        raise RowError(f"{path}.protocols", "must be a list of protocols among "
                                            f"{', '.join(apppasswords.PROTOCOLS)}")
    try:
        protocols = apppasswords.normalize_protocols(raw["protocols"])
    except v.ValidationError as error:
        raise RowError(f"{path}.protocols", error.message) from None
    return {"name": name, "protocols": ",".join(protocols),
            "password": _mailbox_hash(raw["password"], f"{path}.password"),
            "created": _moment(raw["created"], f"{path}.created"),
            "last_used": _moment(raw["last_used"], f"{path}.last_used", nullable=True)}


def _app_passwords(value: object, path: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, item in enumerate(_list(value, path, apppasswords.MAX_PER_MAILBOX)):
        clean = _app_password(item, f"{path}[{index}]")
        if clean["name"] in names:
            raise RowError(f"{path}[{index}].name",
                           f"the app password {clean['name']} is given twice")
        names.add(clean["name"])
        out.append(clean)
    return out


def _mailbox(row: object, path: str) -> dict[str, Any]:
    row, extra = _optional(row, (d.MAILBOX_VACATION, d.MAILBOX_APP_PASSWORDS, d.MAILBOX_TOTP,
                                 d.MAILBOX_RECOVERY_CODES))
    raw = _object(row, path, (*d.MAILBOX_FIELDS, "send_limits"))
    out = _clean({key: raw[key] for key in ("email", "quota", "active")}, path,
                 mailboxes.NORMALIZERS)
    out["password"] = _mailbox_hash(raw["password"], f"{path}.password")
    limits = raw["send_limits"]
    out["send_limits"] = None if limits is None else _clean(
        _object(limits, f"{path}.send_limits", d.MAILBOX_SEND_LIMIT_FIELDS),
        f"{path}.send_limits", policy._MAILBOX_NORMALIZERS,
    )
    reply = extra.get(d.MAILBOX_VACATION)
    out["vacation"] = None if reply is None else _vacation(
        reply, f"{path}.{d.MAILBOX_VACATION}")
    out["app_passwords"] = _app_passwords(
        extra.get(d.MAILBOX_APP_PASSWORDS, []), f"{path}.{d.MAILBOX_APP_PASSWORDS}")
    owner_app = extra.get(d.MAILBOX_TOTP)
    out["totp"] = None if owner_app is None else _totp(owner_app, f"{path}.{d.MAILBOX_TOTP}")
    out["recovery_codes"] = _recovery_codes(extra.get(d.MAILBOX_RECOVERY_CODES, []),
                                            f"{path}.{d.MAILBOX_RECOVERY_CODES}")
    if out["recovery_codes"] and out["totp"] is None:
        # They stand in for the app's codes at the login, which asks for none without an app.
        raise RowError(f"{path}.{d.MAILBOX_RECOVERY_CODES}",
                       f"come with an authenticator app: give its {d.MAILBOX_TOTP} too")
    return out


def _alias(row: object, path: str) -> dict[str, Any]:
    out = _clean(_object(row, path, d.ALIAS_FIELDS), path, aliases.NORMALIZERS)
    return out


def _totp(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.TOTP_FIELDS)
    secret = raw["secret"]
    if not (isinstance(secret, str) and 16 <= len(secret) <= 64 and _BASE32.fullmatch(secret)):
        raise RowError(f"{path}.secret", "must be a base32 secret of 16 to 64 characters "
                                         "(A-Z, 2-7, no padding)")
    return {"secret": secret, "created_at": _moment(raw["created_at"], f"{path}.created_at"),
            "confirmed_at": _moment(raw["confirmed_at"], f"{path}.confirmed_at", nullable=True),
            "last_step": _whole(raw["last_step"], f"{path}.last_step", nullable=True)}


def _base64url(value: object, path: str, max_length: int) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= max_length
            and _BASE64URL.fullmatch(value)):
        raise RowError(path, f"must be base64url text (without padding) of 1 to {max_length} "
                             "characters")
    try:
        base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise RowError(path, "is not valid base64url") from None
    return value


def _passkey(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.PASSKEY_FIELDS)
    try:
        name = twofactor.normalize_passkey_name(raw["name"])
    except v.ValidationError as error:
        raise RowError(f"{path}.name", error.message) from None
    return {"name": name,
            "credential_id": _base64url(raw["credential_id"], f"{path}.credential_id", 1400),
            "public_key": _base64url(raw["public_key"], f"{path}.public_key", 20_000),
            "sign_count": _whole(raw["sign_count"], f"{path}.sign_count"),
            "created_at": _moment(raw["created_at"], f"{path}.created_at"),
            "last_used_at": _moment(raw["last_used_at"], f"{path}.last_used_at", nullable=True)}


def _recovery_code(value: object, path: str) -> dict[str, Any]:
    raw = _object(value, path, d.RECOVERY_CODE_FIELDS)
    if not (isinstance(raw["code_hash"], str) and _HEX_DIGEST.fullmatch(raw["code_hash"])):
        raise RowError(f"{path}.code_hash", "must be a SHA-256 digest in lowercase hexadecimal")
    return {"code_hash": raw["code_hash"],
            "used_at": _moment(raw["used_at"], f"{path}.used_at", nullable=True)}


def _recovery_codes(value: object, path: str) -> list[dict[str, Any]]:
    """An admin's or a mailbox owner's recovery codes (hashes)."""
    return [_recovery_code(item, f"{path}[{index}]")
            for index, item in enumerate(_list(value, path, MAX_RECOVERY_CODES))]


def _second_factors(extra: Mapping[str, object], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    totp = extra.get(d.ADMIN_TOTP)
    out["totp"] = None if totp is None else _totp(totp, f"{path}.{d.ADMIN_TOTP}")
    where = f"{path}.{d.ADMIN_PASSKEYS}"
    out["passkeys"] = [_passkey(item, f"{where}[{index}]") for index, item in
                       enumerate(_list(extra.get(d.ADMIN_PASSKEYS, []), where,
                                       twofactor.MAX_PASSKEYS))]
    for index, key in enumerate(out["passkeys"]):
        if any(other["name"] == key["name"] for other in out["passkeys"][:index]):
            raise RowError(f"{where}[{index}].name", f"the passkey {key['name']} is given twice")
    out["recovery_codes"] = _recovery_codes(extra.get(d.ADMIN_RECOVERY_CODES, []),
                                            f"{path}.{d.ADMIN_RECOVERY_CODES}")
    return out


def _admin(row: object, path: str) -> dict[str, Any]:
    row, extra = _optional(row, (d.ADMIN_READ_ONLY, d.ADMIN_LANGUAGE, d.ADMIN_TOTP,
                                 d.ADMIN_PASSKEYS, d.ADMIN_RECOVERY_CODES))
    read_only = extra.get(d.ADMIN_READ_ONLY, False)
    raw = _object(row, path, (*d.ADMIN_FIELDS, "domains", "api_keys"))
    try:
        out: dict[str, Any] = {
            "username": v.normalize_username(raw["username"], "username"),
            "email": v.normalize_email(raw["email"], "email") if raw["email"] else "",
            "is_superadmin": v.normalize_bool(raw["is_superadmin"], "is_superadmin"),
            "is_active": v.normalize_bool(raw["is_active"], "is_active"),
            "read_only": v.normalize_bool(read_only, d.ADMIN_READ_ONLY),
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
    language = extra.get(d.ADMIN_LANGUAGE)
    if language is not None and language not in LANGUAGES:
        raise RowError(f"{path}.{d.ADMIN_LANGUAGE}",
                       f"must be one of {', '.join(LANGUAGES)}, or absent")
    out["language"] = language
    out.update(_second_factors(extra, path))
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


def _refuse_later_fields(row: Mapping[str, object], path: str, section: str,
                        version: int) -> None:
    """A field that a later version than the document's added is not the document's."""
    for since, fields in d.FIELDS_SINCE.items():
        if since <= version:
            continue
        for name in fields.get(section, ()):
            if name in row:
                raise RowError(f"{path}.{name}",
                               f"is a field of version {since} documents, not version {version}")


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
    if doc.get("version") not in d.READABLE_VERSIONS or isinstance(doc.get("version"), bool):
        checked.errors.append(RowError(
            "$.version", f"version {doc.get('version')!r} is not one this DinoMail reads "
            f"({', '.join(map(str, d.READABLE_VERSIONS))})"))
        return checked
    checked.version = int(doc["version"])
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
                if isinstance(row, Mapping):
                    _refuse_later_fields(row, path, section, checked.version)
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
    credentials: set[str] = set()
    for row in checked.admins:
        for index, key in enumerate(row["api_keys"]):
            if key["key_hash"] in key_hashes:
                checked.refuse("admins", RowError(f"{row['path']}.api_keys[{index}]",
                                                  "this API key is given twice"))
            key_hashes.add(key["key_hash"])
        for index, passkey in enumerate(row["passkeys"]):
            if passkey["credential_id"] in credentials:
                checked.refuse("admins", RowError(
                    f"{row['path']}.passkeys[{index}].credential_id",
                    "this passkey is given twice"))
            credentials.add(passkey["credential_id"])
    return checked
