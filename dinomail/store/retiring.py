"""A domain's DKIM record that stops being the current one is kept as retiring
(`dinomail_dkimretiring`), whoever changed the selector: a rotation (`dns.save_dkim_key`) or an
admin typing another selector on the domain (`domains.update`, the API's PATCH/PUT and the
domain page). Mail signed with the old key before the change may still be on its way, and its
receivers verify it against the old record, so the domain's records and DNS check keep it until
an admin retires it (`dns.retire_dkim_selector`).

This module reads no other store module, so `domains` can use it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import dkim
from dinomail.schema import dkimretiring
from dinomail.store.common import conflict_insert, now
from dinomail.validation import ValidationError


def published_selector(value: object) -> str | None:
    """The selector a domain publishes under, as a retiring one is stored (lowercase); None
    for no selector, or text no DKIM verifier would look up (typed by hand on the domain)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return dkim.normalize_selector(value)
    except ValidationError:
        return None


async def selector_changing(
    conn: AsyncConnection, domain: Mapping[str, Any], new_selector: str
) -> None:
    """The domain (its row before the change) is about to publish its key under
    `new_selector`: its current record, if it has one, becomes a retiring one (replacing a
    retiring one of that name); `new_selector`, current again, stops being a retiring one.

    A record whose key is not a DKIM public key verifies no mail, so it is not kept (the
    export's retiring selectors are keys the import accepts)."""
    old, new = published_selector(domain["dkim_key_name"]), published_selector(new_selector)
    if old == new:
        return  # the same DNS name: there is one record to publish there
    domain_id = domain["id"]
    if new is not None:
        await conn.execute(dkimretiring.delete().where(
            dkimretiring.c.domain_id == domain_id, dkimretiring.c.selector == new))
    value = "".join((domain["dkim_key"] or "").split())
    if old is None or not value:
        return
    try:
        algorithm = dkim.public_key_of(value).algorithm
    except dkim.DkimError:
        return
    statement = conflict_insert(conn.dialect.name, dkimretiring).values(
        domain_id=domain_id, selector=old, algorithm=algorithm, public_key=value,
        replaced_at=now())
    await conn.execute(statement.on_conflict_do_update(
        index_elements=["domain_id", "selector"],
        set_={"algorithm": statement.excluded.algorithm,
              "public_key": statement.excluded.public_key,
              "replaced_at": statement.excluded.replaced_at}))
