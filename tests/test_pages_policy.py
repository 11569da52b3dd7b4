"""The pages of sending limits and counts, and of blocked clients and logins: who sees and
changes what, CSRF, invalid input re-rendered with its error, GETs that change nothing."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from dinomail import schema
from dinomail.store import EVERYTHING, Store, authblocks
from dinomail.store import policy as policy_store

# `client` and `world` are the pages tests' fixtures: a.org (root's), b.org (alice's).
from tests.support.pages import log_in
from tests.support.sendcounts import counts

POLICY_TABLES = (schema.domainsendlimit, schema.mailboxsendlimit, schema.sendcount,
                 schema.authblock, schema.auditlog)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.adminapi import fast_admin_hashing

    fast_admin_hashing(monkeypatch)


async def policy_rows(store: Store) -> dict[str, list[tuple]]:
    async with store.read() as conn:
        return {table.name: [tuple(row) for row in await conn.execute(sa.select(table))]
                for table in POLICY_TABLES}


async def seed(store: Store) -> None:
    now = time.time()
    moment = datetime.now(UTC)
    async with store.write() as conn:
        await policy_store.add_counts(conn, counts("mailbox", "anna@a.org", now, 4, 9),
                                      writer="d1")
        await policy_store.add_counts(conn, counts("domain", "a.org", now, 4, 9), writer="d1")
        await authblocks.write_blocks(conn, "d1", [
            authblocks.Block("client", "203.0.113.5", 20, moment, moment + timedelta(hours=1)),
            authblocks.Block("login", "bob@b.org", 30, moment, moment + timedelta(hours=1)),
            authblocks.Block("login", "anna@a.org", 30, moment, moment + timedelta(hours=1)),
        ], [])


def error_of(answer: httpx.Response, field: str) -> str:
    found = re.search(rf'<p class="field__error" id="error-{field}">(.*?)</p>', answer.text,
                      re.S)
    assert found, (field, answer.text[:3000])
    return found.group(1)


async def test_sending_pages(client: httpx.AsyncClient, store: Store) -> None:
    await seed(store)
    browser = await log_in(client, "root")
    before = await policy_rows(store)
    for url in ("/domain-limits/1/sending", "/virtual-users/1/sending", "/blocked-logins/",
                "/domain-limits/", "/virtual-users/1/edit", "/virtual-domains/1/edit"):
        answer = await client.get(url)
        assert answer.status_code == 200, url
    assert await policy_rows(store) == before  # a GET changes nothing
    page = (await client.get("/virtual-users/1/sending")).text
    assert "anna@a.org" in page and "<td>4</td>" in page and "<td>9</td>" in page
    assert (await client.get("/domain-limits/1/sending/reset")).status_code == 405

    # Invalid input: shown under its field, nothing written.
    for url, data, field, message in (
        ("/domain-limits/1/sending", {"mailbox_messages_per_hour": "many"},
         "mailbox_messages_per_hour", "Enter a whole number"),
        ("/domain-limits/1/sending", {"reply": "OK thanks"}, "reply", "Enter a Postfix action"),
        ("/domain-limits/1/sending", {"reply": "452 5.7.1 No"}, "reply",
         "does not match a 4xx reply"),
        ("/domain-limits/1/sending", {"domain_messages_per_day": "99999999999"},
         "domain_messages_per_day", "too large"),
        ("/virtual-users/1/sending", {"messages_per_day": "-1"}, "messages_per_day",
         "Enter a whole number"),
    ):
        answer = await browser.post(url, data)
        assert answer.status_code == 400, (url, data)
        assert message in error_of(answer, field), (url, data)
        assert await policy_rows(store) == before

    # Without the token nothing happens.
    for url in ("/domain-limits/1/sending", "/domain-limits/1/sending/reset",
                "/virtual-users/1/sending/reset", "/blocked-logins/1/unblock"):
        answer = await client.post(url, data={"mailbox_messages_per_hour": "3"})
        assert answer.status_code == 403, url
    assert await policy_rows(store) == before

    answer = await browser.post("/domain-limits/1/sending", {
        "mailbox_messages_per_hour": "3", "domain_recipients_per_day": "100",
        "reply": "defer 4.7.1 Slow down"})
    assert answer.status_code == 303, answer.text
    async with store.read() as conn:
        limits = await policy_store.get_domain_limits(conn, EVERYTHING, 1)
    assert (limits["mailbox_messages_per_hour"], limits["domain_recipients_per_day"],
            limits["reply"]) == (3, 100, "DEFER 4.7.1 Slow down")
    answer = await browser.post("/virtual-users/1/sending", {"messages_per_hour": "",
                                                            "messages_per_day": "7"})
    assert answer.status_code == 303
    page = (await client.get("/virtual-users/1/sending")).text
    assert "Domain default: 3" in page

    assert (await browser.post("/virtual-users/1/sending/reset")).status_code == 303
    async with store.read() as conn:
        figures = await policy_store.window_counts(conn, "mailbox", ["anna@a.org"], time.time())
    assert figures["anna@a.org"]["messages_last_day"] == 0
    assert "start again from zero" in (await client.get("/virtual-users/1/sending")).text
    assert (await browser.post("/domain-limits/1/sending/reset")).status_code == 303


async def test_a_domain_admin_reads_but_does_not_change(
    client: httpx.AsyncClient, store: Store
) -> None:
    await seed(store)
    browser = await log_in(client, "alice")  # b.org's admin (domain 2, mailbox 2)
    before = await policy_rows(store)
    page = await client.get("/domain-limits/2/sending")
    assert page.status_code == 200
    assert "Only a superadmin can change sending limits" in page.text
    assert "Reset the counts" not in page.text
    assert (await client.get("/virtual-users/2/sending")).status_code == 200
    assert (await client.get("/domain-limits/1/sending")).status_code == 404
    assert (await client.get("/virtual-users/1/sending")).status_code == 404
    for url in ("/domain-limits/2/sending", "/domain-limits/2/sending/reset",
                "/virtual-users/2/sending", "/virtual-users/2/sending/reset"):
        assert (await browser.post(url, {"messages_per_hour": "0"})).status_code == 403, url
    for url in ("/domain-limits/1/sending/reset", "/virtual-users/1/sending/reset"):
        assert (await browser.post(url)).status_code == 404, url
    assert await policy_rows(store) == before

    # Blocks: only the logins of b.org.
    listed = (await client.get("/blocked-logins/")).text
    assert "bob@b.org" in listed
    assert "203.0.113.5" not in listed and "anna@a.org" not in listed
    assert 'href="/blocked-logins/"' in (await client.get("/")).text  # in the navigation
    async with store.read() as conn:
        ids = {row["key"]: row["id"] for row in (await authblocks.list_window(
            conn, EVERYTHING, limit=10)).rows}
    assert (await browser.post(f"/blocked-logins/{ids['203.0.113.5']}/unblock")
            ).status_code == 404
    assert await policy_rows(store) == before
    answer = await browser.post(f"/blocked-logins/{ids['bob@b.org']}/unblock")
    assert answer.status_code == 303
    assert "bob@b.org is unblocked" in (await client.get("/blocked-logins/")).text
    assert "bob@b.org" not in (await client.get("/blocked-logins/")).text


async def test_blocks_page_in_french(client: httpx.AsyncClient, store: Store) -> None:
    await seed(store)
    browser = await log_in(client, "root")
    await browser.post("/language", {"language": "fr", "next": "/"})
    listed = (await client.get("/blocked-logins/")).text
    assert "Connexions bloquées" in listed and "203.0.113.5" in listed
    assert "Limites d’envoi" in (await client.get("/domain-limits/1/sending")).text
