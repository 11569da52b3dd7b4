"""A domain's MTA-STS policy (what an admin set, `dinomail_mtastspolicy`) in the export and the
import, from SQLite and PostgreSQL: carried as it is, served the same after the import, replaced
whole when the import updates the domain, and refused with its JSON path when wrong; the TLS
and DMARC reports received stay out of the document."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa

from dinomail import migrate
from dinomail.reports.tlsrpt import parse_tlsrpt
from dinomail.schema import mtastspolicy, tlsreport, virtualdomain
from dinomail.store import EVERYTHING, Store, dns, mtasts, reports
from dinomail.transfer import document
from dinomail.transfer.export import export_document
from dinomail.transfer.importer import ImportRefused, import_document
from tests.support.adminapi import add_domain
from tests.support.reports import DOMAIN, fixture

MX_HOST = "mx.setting.example"


async def export_json(store: Store) -> dict[str, Any]:
    return json.loads("".join([piece async for piece in export_document(store)]))


async def policies(store: Store) -> dict[str, tuple[str, str, int]]:
    async with store.read() as conn:
        rows = await conn.execute(
            sa.select(virtualdomain.c.name, mtastspolicy.c.mode, mtastspolicy.c.mx,
                      mtastspolicy.c.max_age).join_from(mtastspolicy, virtualdomain))
        return {row.name: (row.mode, row.mx, row.max_age) for row in rows}


async def served(store: Store, name: str) -> str | None:
    async with store.read() as conn:
        policy = await mtasts.served(conn, name, MX_HOST)
    return None if policy is None else policy.text()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    await migrate.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def fill(store: Store) -> None:
    strict = await add_domain(store, "strict.example")
    plain = await add_domain(store, "plain.example")
    await add_domain(store, "none.example")
    reported = await add_domain(store, DOMAIN)
    async with store.write() as conn:
        # A TLS report received about a domain: the mail servers' news, not its settings.
        assert await reports.save_tls(conn, reported["id"],
                                      parse_tlsrpt(fixture("google-tlsrpt.json")))
        await mtasts.save(conn, "test", EVERYTHING, strict["id"], {
            "mode": "enforce", "mx": ["mx1.strict.example", "*.backup.example"],
            "max_age": 86400}, MX_HOST)
        # No patterns of its own: the domain's MX host stands for them.
        await dns.update_client_config(conn, "test", EVERYTHING, plain["id"],
                                       {"mx_host": "mx.plain.example"})
        await mtasts.save(conn, "test", EVERYTHING, plain["id"], {"mode": "testing"}, MX_HOST)


async def test_policies_round_trip_and_are_served_the_same(
    store: Store, target: Store
) -> None:
    await fill(store)
    doc = await export_json(store)
    jsonschema.validate(doc, document.schema())
    by_name = {row["name"]: row for row in doc["domains"]}
    assert by_name["strict.example"]["mta_sts"] == {
        "mode": "enforce", "mx": ["mx1.strict.example", "*.backup.example"], "max_age": 86400}
    assert by_name["plain.example"]["mta_sts"] == {
        "mode": "testing", "mx": [], "max_age": 604800}
    assert "mta_sts" not in by_name["none.example"]
    # Only the admin's settings: nothing of the reports received.
    async with store.read() as conn:
        report_id = await conn.scalar(sa.select(tlsreport.c.report_id))
    assert report_id and report_id not in json.dumps(doc)
    assert "mta_sts" not in by_name[DOMAIN]

    await import_document(target, doc)
    assert await policies(target) == await policies(store) == {
        "strict.example": ("enforce", "mx1.strict.example\n*.backup.example", 86400),
        "plain.example": ("testing", "", 604800),
    }
    for name in ("strict.example", "plain.example", "none.example"):
        assert await served(target, name) == await served(store, name), name
    text = await served(target, "plain.example")
    assert text is not None and "mx: mx.plain.example" in text
    assert await served(target, "none.example") is None


async def test_an_updating_import_replaces_the_policy_whole(
    store: Store, target: Store
) -> None:
    await fill(store)
    doc = await export_json(store)
    await import_document(target, doc)
    changed = copy.deepcopy(doc)
    for row in changed["domains"]:
        if row["name"] == "strict.example":
            del row["mta_sts"]  # the source stopped publishing it
        if row["name"] == "none.example":
            row["mta_sts"] = {"mode": "none", "mx": [], "max_age": 0}
    await import_document(target, changed, on_conflict="update")
    assert await policies(target) == {
        "plain.example": ("testing", "", 604800), "none.example": ("none", "", 0)}
    assert await served(target, "strict.example") is None
    # A version 2 document knows nothing of policies: the domains it updates keep theirs.
    earlier = copy.deepcopy(doc)
    earlier["version"] = 2
    for row in earlier["domains"]:
        for name in document.VERSION_3_FIELDS["domains"]:
            row.pop(name, None)
    for row in earlier["mailboxes"]:
        for name in document.VERSION_3_FIELDS["mailboxes"]:
            row.pop(name, None)
    await import_document(target, earlier, on_conflict="update")
    assert await policies(target) == {
        "plain.example": ("testing", "", 604800), "none.example": ("none", "", 0)}


BAD_POLICIES = [
    ({"mode": "strict", "mx": [], "max_age": 60}, "mta_sts.mode"),
    ({"mode": "enforce", "mx": "mx.example", "max_age": 60}, "mta_sts.mx"),
    ({"mode": "enforce", "mx": ["not a host!"], "max_age": 60}, "mta_sts.mx"),
    ({"mode": "enforce", "mx": [f"mx{n}.example" for n in range(33)], "max_age": 60},
     "mta_sts.mx"),
    ({"mode": "enforce", "mx": [], "max_age": -1}, "mta_sts.max_age"),
    ({"mode": "enforce", "mx": [], "max_age": "1d"}, "mta_sts.max_age"),
    ({"mode": "enforce", "mx": []}, "mta_sts.max_age"),
    ({"mode": "enforce", "mx": [], "max_age": 60, "id": "x"}, "mta_sts.id"),
    ("enforce", "mta_sts"),
]


async def test_a_wrong_policy_is_named_and_nothing_is_written(
    store: Store, target: Store
) -> None:
    await fill(store)
    doc = await export_json(store)
    [index] = [i for i, row in enumerate(doc["domains"]) if row["name"] == "strict.example"]
    for value, path in BAD_POLICIES:
        spoiled = copy.deepcopy(doc)
        spoiled["domains"][index]["mta_sts"] = value
        with pytest.raises(ImportRefused) as refused:
            await import_document(target, spoiled)
        assert [error.path for error in refused.value.errors] == [
            f"$.domains[{index}].{path}"], (value, refused.value.errors)
    # A version 2 document has no such field.
    old = copy.deepcopy(doc)
    old["version"] = 2
    for section in ("mailboxes", "admins", "domains"):
        for row in old[section]:
            for name in document.VERSION_3_FIELDS.get(section, ()):
                if name != "mta_sts":
                    row.pop(name, None)
    with pytest.raises(ImportRefused) as refused:
        await import_document(target, old)
    assert any(error.path.endswith(".mta_sts") for error in refused.value.errors), \
        refused.value.errors
    assert await policies(target) == {}
