"""A mailbox's forwarding: alias rows whose source is the mailbox's own address.

An alias on a mailbox's address takes its mail (aliases are looked up first), which is why
`aliases.create` refuses one; forwarding is the explicit form of it, with its own rules. To
keep a copy, the mailbox's address is one of the destinations: Postfix does not expand an
address found in its own expansion, so the copy goes to the mailbox and the rest is forwarded.
The socketmap therefore answers forwarding like any alias, with nothing new in `lookupd`.

Rules: at most `max_destinations` addresses (the FORWARDING_MAX_DESTINATIONS setting; the kept
copy is not counted), no forwarding to the mailbox itself (that is "keep a copy"), the domain's
alias limit, and, when the domain forbids it, no destination outside the domains DinoMail hosts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.schema import aliasdomain, virtualalias, virtualdomain
from dinomail.store import audit, limits, mailboxes, selfservice
from dinomail.store.common import Row
from dinomail.store.errors import LimitExceeded, StoreError
from dinomail.store.scope import Scope

OBJECT_TYPE = "forwarding"
DEFAULT_MAX_DESTINATIONS = 10
FIELDS = ("destinations", "keep_copy")


async def _rows(conn: AsyncConnection, email: str) -> list[str]:
    query = (
        sa.select(virtualalias.c.destination)
        .where(virtualalias.c.source == email)
        .order_by(virtualalias.c.id)
    )
    return list(await conn.scalars(query))


def _answer(mailbox: Row, stored: list[str], switches: Mapping[str, bool]) -> Row:
    email = mailbox["email"]
    others = [address for address in stored if address != email]
    return {
        "mailbox_id": mailbox["id"],
        "email": email,
        "destinations": others,
        # A lone row to itself (left by hand) forwards nothing: the mail stays.
        "keep_copy": bool(others) and email in stored,
        "external_allowed": switches["external_forwarding"],
    }


async def get(conn: AsyncConnection, scope: Scope, mailbox_id: int) -> Row:
    """The mailbox's forwarding: `destinations` (empty: none), `keep_copy`, and whether its
    domain allows destinations outside the hosted domains (`external_allowed`)."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    switches = await selfservice.switches_of(conn, mailbox["domain_id"])
    return _answer(mailbox, await _rows(conn, mailbox["email"]), switches)


def _normalize_destinations(value: object) -> list[str]:
    """Addresses as a list, or as text with one or more per line (commas also separate)."""
    if isinstance(value, str):
        items: list[object] = [part for part in value.replace(",", "\n").split()]
    elif isinstance(value, list):
        items = list(value)
    else:
        raise v.ValidationError("destinations", "must be a list of email addresses",
                                code="addresses_invalid")
    addresses: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise v.ValidationError("destinations", "must be a list of email addresses",
                                    code="addresses_invalid")
        if not item.strip():
            continue
        address = v.normalize_email(item, "destinations")
        if address not in addresses:
            addresses.append(address)
    return addresses


def clean(data: Mapping[str, Any]) -> tuple[list[str], bool]:
    """(destinations, keep_copy) from what a caller sent; both fields are required."""
    for name in data:
        if name not in FIELDS:
            raise v.ValidationError(name, "is not a field that can be set here",
                                    code="field_unknown")
    if "destinations" not in data:
        raise v.ValidationError("destinations", "is required", code="field_required")
    keep_copy = v.normalize_bool(data.get("keep_copy", False), "keep_copy")
    return _normalize_destinations(data["destinations"]), keep_copy


async def _hosted(conn: AsyncConnection, domain_names: list[str]) -> set[str]:
    """Which of these domains DinoMail hosts (a mail domain or an alias domain, any tenant's:
    the answer only decides whether the mail leaves this server, and is never shown)."""
    if not domain_names:
        return set()
    mail = await conn.scalars(
        sa.select(virtualdomain.c.name).where(virtualdomain.c.name.in_(domain_names))
    )
    alias = await conn.scalars(
        sa.select(aliasdomain.c.name).where(aliasdomain.c.name.in_(domain_names))
    )
    return set(mail) | set(alias)


async def put(
    conn: AsyncConnection,
    actor: str,
    scope: Scope,
    mailbox_id: int,
    data: Mapping[str, Any],
    *,
    max_destinations: int = DEFAULT_MAX_DESTINATIONS,
) -> Row:
    """Replace the mailbox's forwarding with `destinations` (a list of addresses; empty turns
    forwarding off) and `keep_copy`. All or nothing: a refused address changes nothing."""
    mailbox = await mailboxes.get(conn, scope, mailbox_id)
    email = mailbox["email"]
    destinations, keep_copy = clean(data)
    if email in destinations:
        raise StoreError(
            f"{email} cannot forward to itself; keep a copy instead", field="destinations",
            code="forwarding_to_itself", params={"email": email},
        )
    if len(destinations) > max_destinations:
        raise LimitExceeded(
            f"forwarding goes to at most {max_destinations} addresses",
            field="destinations", code="forwarding_too_many",
            params={"limit": max_destinations},
        )
    domain = await limits.lock_domain(conn, mailbox["domain_id"])
    switches = await selfservice.switches_of(conn, domain["id"])
    if destinations and not switches["external_forwarding"]:
        hosted = await _hosted(conn, sorted({v.domain_of(a) for a in destinations}))
        outside = [a for a in destinations if v.domain_of(a) not in hosted]
        if outside:
            raise StoreError(
                f"{domain['name']} does not allow forwarding outside this server's domains "
                f"({outside[0]})",
                field="destinations", code="forwarding_external_forbidden",
                params={"domain": domain["name"], "address": outside[0]},
            )
    wanted = [email, *destinations] if destinations and keep_copy else destinations
    stored = await _rows(conn, email)
    if sorted(stored) == sorted(wanted):
        return _answer(mailbox, stored, switches)
    if len(wanted) > len(stored):
        await limits.check_alias_count(conn, domain, adding=len(wanted) - len(stored))
    await conn.execute(virtualalias.delete().where(virtualalias.c.source == email))
    if wanted:
        await conn.execute(virtualalias.insert(), [
            {"domain_id": domain["id"], "source": email, "destination": destination}
            for destination in wanted
        ])
    old = _answer(mailbox, stored, switches)
    new = _answer(mailbox, wanted, switches)
    await audit.record(
        conn, actor, "update", OBJECT_TYPE, mailbox_id, email,
        old={name: old[name] for name in FIELDS}, new={name: new[name] for name in FIELDS},
    )
    return new
