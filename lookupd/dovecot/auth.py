"""What Dovecot's passdb and userdb are told about a login: the fields, as plain dicts.

Both transports use these: the dict proxy (`lookupd.dovecot.dict`) and the HTTP endpoints the
Lua driver calls (`lookupd.http`). They hold Dovecot's rules; the address rules (case, alias
domains, IDNA) are `lookupd.resolve.find_login`'s.

passdb: `password` is the stored `{SCHEME}hash`, which Dovecot verifies itself. A mailbox that
exists but may not log in (inactive, or its domain inactive) is answered with its password,
`nologin` + `reason` (the reason is in Dovecot's log) and `fail`: `nologin` alone is enforced
only by Dovecot's own login processes (IMAP, POP3), while SASL clients such as Postfix's smtpd
and `doveadm auth test` would see a success; `fail` makes the auth server itself refuse, with
the same "authentication failed" as a wrong password, so it tells a stranger nothing about
which addresses exist. `user` is added when
the canonical address differs from the login (`local@alias.tld` → `local@target.tld`, a Unicode
domain → its ASCII form), so Dovecot continues with the mailbox's own name.

userdb: `uid`, `gid`, `home` and, for a limited mailbox, `quota_rule` (`*:bytes=N`; Dovecot
2.4, which dropped quota rules, gets `quota_storage_size` = N instead). It answers for inactive
mailboxes too: the userdb says where mail lives (doveadm still has to reach it to expunge or
export it); who may log in is the passdb's decision, and Postfix delivers nothing to an inactive
mailbox because the socketmap does not list it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string
from typing import Any

from lookupd.resolve import LoginRecord, find_login, iter_mailbox_emails
from lookupd.snapshot import Snapshot

INACTIVE_MAILBOX_REASON = "This mailbox is disabled."
INACTIVE_DOMAIN_REASON = "This mail domain is disabled."
NO_PASSWORD_REASON = "No password is set for this mailbox."


@dataclass(frozen=True, slots=True)
class UserdbSettings:
    """What every mailbox's userdb answer shares (settings MAIL_HOME, MAIL_UID, MAIL_GID)."""

    home: str = "/var/vmail/%d/%n"
    uid: int = 5000
    gid: int = 5000


def _path_safe(part: str) -> str:
    # A local part may hold `/` (RFC 5322 atext): `a/Maildir@d` must not get a home inside the
    # mailbox of `a@d`. Escaping `%` too keeps the mapping one-to-one.
    if "/" in part or "%" in part:
        return part.replace("%", "%25").replace("/", "%2F")
    return part


def expand_home(template: str, email: str) -> str:
    """Expand `%u` (address), `%n` (local part), `%d` (domain) and `%%` in a home template,
    as Dovecot's own variables would; any other `%x` is left as it is."""
    local, _, domain = email.rpartition("@")
    values = {"u": _path_safe(email), "n": _path_safe(local), "d": _path_safe(domain), "%": "%"}
    out: list[str] = []
    index = 0
    while True:
        at = template.find("%", index)
        if at < 0 or at + 1 >= len(template):
            out.append(template[index:])
            return "".join(out)
        out.append(template[index:at])
        code = template[at + 1]
        out.append(values.get(code, template[at:at + 2]))
        index = at + 2


def passdb_fields(record: LoginRecord, login: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    if record.password:
        fields["password"] = record.password
    if record.email != login:
        fields["user"] = record.email
    if not record.password:
        # Without a password Dovecot fails the login outright; say why in its log.
        fields["nologin"] = "y"
        fields["reason"] = NO_PASSWORD_REASON
    elif not record.active:
        fields["nologin"] = "y"
        fields["fail"] = "y"
        fields["reason"] = INACTIVE_MAILBOX_REASON
    elif not record.domain_active:
        fields["nologin"] = "y"
        fields["fail"] = "y"
        fields["reason"] = INACTIVE_DOMAIN_REASON
    return fields


def userdb_fields(
    record: LoginRecord, login: str, settings: UserdbSettings, *, dovecot24: bool = False
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "uid": settings.uid,
        "gid": settings.gid,
        "home": expand_home(settings.home, record.email),
    }
    if record.quota:  # 0 and None mean unlimited: no rule at all
        if dovecot24:
            fields["quota_storage_size"] = record.quota
        else:
            fields["quota_rule"] = f"*:bytes={record.quota}"
    if record.email != login:
        fields["user"] = record.email
    return fields


def lookup_passdb(snapshot: Snapshot, login: str) -> dict[str, str] | None:
    """The passdb fields for `login`, or None when no mailbox has that name."""
    record = find_login(snapshot, login)
    return None if record is None else passdb_fields(record, login)


def lookup_userdb(
    snapshot: Snapshot, login: str, settings: UserdbSettings, *, dovecot24: bool = False
) -> dict[str, Any] | None:
    """The userdb fields for `login`, or None when no mailbox has that name."""
    record = find_login(snapshot, login)
    if record is None:
        return None
    return userdb_fields(record, login, settings, dovecot24=dovecot24)


def iter_users(snapshot: Snapshot) -> Iterator[str]:
    """Every mailbox's address, active or not (as the userdb answers for each)."""
    return iter_mailbox_emails(snapshot)


def encode_fields(fields: dict[str, Any]) -> bytes:
    """One flat JSON object, as Dovecot's dict passdb/userdb (`format = json`) reads it.

    Written by hand over the C string encoder: the objects are flat, their values strings or
    integers, and `json.dumps` costs half of a whole lookup here.
    """
    parts = []
    for key, value in fields.items():
        if type(value) is str:
            parts.append(f"{_json_string(key)}:{_json_string(value)}")
        elif type(value) is int:
            parts.append(f"{_json_string(key)}:{value}")
        else:
            parts.append(f"{_json_string(key)}:{json.dumps(value)}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")
