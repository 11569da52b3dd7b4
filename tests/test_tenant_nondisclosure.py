"""A domain admin never learns whether a domain or an address outside their domains exists.

Every path that takes a domain or an address (API and pages: create and change mailboxes,
aliases, alias domains; read, change and delete by id; list filters; the aliases' "Ok ?"
column) is tried twice: once naming another tenant's existing domain or address, once naming
one that does not exist. The two answers must be the same, but for the name typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dinomail.store import EVERYTHING, Store, aliasdomains, aliases
from tests.support.adminapi import (
    PASSWORD,
    Account,
    add_admin,
    add_domain,
    add_mailbox,
    api_client,
    fast_admin_hashing,
)
from tests.support.pages import Browser, log_in, pages_client

# The ids of objects that exist nowhere; the other tenant's are read from the database.
MISSING_ID = 9999
THEIRS, NOWHERE = "theirs.org", "nowhere.org"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@dataclass(frozen=True)
class Target:
    """What a request names: a domain (name and id) and the ids of objects in it."""

    domain: str
    domain_id: int
    mailbox_id: int
    alias_id: int
    aliasdomain_id: int
    aliasdomain: str


@dataclass(frozen=True)
class Tenancy:
    alice: Account
    mailbox_id: int
    alias_id: int
    aliasdomain_id: int
    theirs: Target
    nowhere: Target


@pytest.fixture
async def tenancy(store: Store) -> Tenancy:
    """mine.org is alice's; theirs.org belongs to someone else; nowhere.org does not exist."""
    mine = await add_domain(store, "mine.org")
    theirs = await add_domain(store, THEIRS)
    my_box = await add_mailbox(store, "box@mine.org")
    their_box = await add_mailbox(store, f"box@{THEIRS}")
    async with store.write() as conn:
        my_alias = await aliases.create(conn, "test", EVERYTHING,
                                        {"source": "al@mine.org", "destination": "x@example.net"})
        their_alias = await aliases.create(
            conn, "test", EVERYTHING, {"source": f"al@{THEIRS}", "destination": "x@example.net"})
        my_aliasdomain = await aliasdomains.create(
            conn, "test", EVERYTHING, {"name": "mine.net", "target_domain_id": mine["id"]})
        their_aliasdomain = await aliasdomains.create(
            conn, "test", EVERYTHING, {"name": "theirs.net", "target_domain_id": theirs["id"]})
    alice = await add_admin(store, "alice", domain_ids=(mine["id"],))
    return Tenancy(
        alice=alice, mailbox_id=my_box["id"], alias_id=my_alias["id"],
        aliasdomain_id=my_aliasdomain["id"],
        theirs=Target(THEIRS, theirs["id"], their_box["id"], their_alias["id"],
                      their_aliasdomain["id"], "theirs.net"),
        nowhere=Target(NOWHERE, MISSING_ID, MISSING_ID, MISSING_ID, MISSING_ID, "nowhere.net"),
    )


def _neutral(text: str) -> str:
    """An answer with the names that were asked about made alike."""
    return re.sub(r"theirs|nowhere", "X", text)


Request = tuple[str, str, dict[str, Any] | None]


def api_requests(t: Tenancy, target: Target) -> list[Request]:
    domain_uri = f"/api/virtualdomain/{target.domain_id}/"
    d = target.domain
    return [
        ("POST", "/api/virtualuser/", {"email": f"new@{d}"}),
        ("POST", "/api/virtualuser/", {"email": f"box@{d}"}),
        ("POST", "/api/virtualuser/", {"email": "new@mine.org", "domain": domain_uri}),
        ("POST", "/api/virtualalias/", {"source": f"new@{d}", "destination": "x@example.net"}),
        ("POST", "/api/virtualalias/", {"source": f"al@{d}", "destination": "x@example.net"}),
        ("POST", "/api/virtualalias/", {"source": f"box@{d}", "destination": "x@example.net"}),
        ("POST", "/api/virtualalias/",
         {"source": "new@mine.org", "destination": "x@example.net", "domain": domain_uri}),
        ("POST", "/api/aliasdomain/", {"name": "new.net", "target_domain": domain_uri}),
        ("POST", "/api/aliasdomain/", {"name": target.aliasdomain, "target_domain": 1}),
        ("PATCH", f"/api/virtualuser/{t.mailbox_id}/", {"email": f"box@{d}"}),
        ("PATCH", f"/api/virtualuser/{t.mailbox_id}/", {"domain": domain_uri}),
        ("PATCH", f"/api/virtualalias/{t.alias_id}/", {"source": f"al@{d}"}),
        ("PATCH", f"/api/virtualalias/{t.alias_id}/", {"domain": domain_uri}),
        ("PATCH", f"/api/aliasdomain/{t.aliasdomain_id}/", {"target_domain": domain_uri}),
        ("GET", domain_uri, None),
        ("PATCH", domain_uri, {"display_name": "x"}),
        ("DELETE", domain_uri, None),
        ("GET", f"/api/domainlimit/{target.domain_id}/", None),
        ("PATCH", f"/api/domainlimit/{target.domain_id}/", {"default_quota": 1}),
        ("GET", f"/api/virtualuser/{target.mailbox_id}/", None),
        ("PATCH", f"/api/virtualuser/{target.mailbox_id}/", {"quota": 1}),
        ("DELETE", f"/api/virtualuser/{target.mailbox_id}/", None),
        ("PUT", f"/api/changeuserpassword/{target.mailbox_id}/", {"password": PASSWORD}),
        ("GET", f"/api/virtualalias/{target.alias_id}/", None),
        ("DELETE", f"/api/virtualalias/{target.alias_id}/", None),
        ("GET", f"/api/aliasdomain/{target.aliasdomain_id}/", None),
        ("DELETE", f"/api/aliasdomain/{target.aliasdomain_id}/", None),
        ("GET", f"/api/virtualuser/set/{target.mailbox_id}/", None),
        ("GET", f"/api/virtualuser/?domain={d}", None),
        ("GET", f"/api/virtualalias/?domain={d}", None),
        ("GET", f"/api/virtualdomain/?q={d}", None),
    ]


def page_requests(t: Tenancy, target: Target) -> list[Request]:
    d = target.domain
    mailbox = {"active": "on", "password": "", "password_confirm": "", "quota": ""}
    return [
        ("POST", "/virtual-users/new", {**mailbox, "email": f"new@{d}"}),
        ("POST", "/virtual-users/new", {**mailbox, "email": f"box@{d}"}),
        ("POST", "/virtual-users/new", {**mailbox, "email": "new@mine.org", "domain": d}),
        ("POST", f"/virtual-users/{t.mailbox_id}/edit", {"email": f"box@{d}", "active": "on"}),
        ("POST", f"/virtual-users/{t.mailbox_id}/edit",
         {"email": "box@mine.org", "domain": d, "active": "on"}),
        ("POST", "/virtual-aliases/new", {"source": f"new@{d}", "destination": "x@example.net"}),
        ("POST", "/virtual-aliases/new", {"source": f"al@{d}", "destination": "x@example.net"}),
        ("POST", "/virtual-aliases/new",
         {"source": "new@mine.org", "destination": "x@example.net", "domain": d}),
        ("POST", f"/virtual-aliases/{t.alias_id}/edit",
         {"source": f"al@{d}", "destination": "x@example.net"}),
        ("POST", "/alias-domains/new", {"name": "new.net", "target": d, "active": "on"}),
        ("POST", f"/alias-domains/{t.aliasdomain_id}/edit",
         {"name": "mine.net", "target": d, "active": "on"}),
        ("GET", f"/virtual-domains/{target.domain_id}/edit", None),
        ("GET", f"/domain-limits/{target.domain_id}/edit", None),
        ("GET", f"/virtual-users/{target.mailbox_id}/edit", None),
        ("POST", f"/virtual-users/{target.mailbox_id}/edit-password",
         {"password": PASSWORD, "password_confirm": PASSWORD}),
        ("POST", f"/virtual-users/{target.mailbox_id}/delete", {"verifier": f"box@{d}"}),
        ("GET", f"/virtual-aliases/{target.alias_id}/edit", None),
        ("GET", f"/alias-domains/{target.aliasdomain_id}/edit", None),
        ("GET", f"/virtual-users/?domain={d}", None),
        ("GET", f"/virtual-aliases/?domain={d}", None),
        ("GET", f"/alias-domains/?q={d}", None),
        ("GET", f"/search?q=box@{d}", None),
    ]


async def _answers(
    send: Callable[[str, str, dict[str, Any] | None], Any], requests: Sequence[Request],
    target: Target,
) -> list[tuple[str, int, str]]:
    """(request, status, body) with the names and ids asked about made alike."""
    asked_ids = {target.domain_id, target.mailbox_id, target.alias_id, target.aliasdomain_id}
    # An id asked about, echoed in a URL or a list of ids not found.
    echoed_id = re.compile(
        r'(?<=["/])(' + "|".join(str(number) for number in sorted(asked_ids)) + r')(?=["/])'
    )
    answers = []
    for method, url, body in requests:
        answer: httpx.Response = await send(method, url, body)
        asked = re.sub(r"/[0-9]+/", "/<id>/", _neutral(f"{method} {url}"))
        text = echoed_id.sub("<id>", _neutral(answer.text))
        answers.append((asked, answer.status_code, text))
    return answers


def _assert_alike(theirs: list[tuple[str, int, str]], nowhere: list[tuple[str, int, str]]
                  ) -> None:
    differing = [(a, b) for a, b in zip(theirs, nowhere, strict=True) if a != b]
    assert differing == [], "answers that tell an existing domain from a missing one"
    # The requests were refused or showed nothing: none of them created or changed anything.
    assert all(status in (200, 400, 403, 404) for _, status, _ in theirs), theirs


async def test_the_api_answers_alike_for_foreign_and_missing(
    store: Store, tenancy: Tenancy
) -> None:
    async with api_client(store) as client:
        async def send(method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
            return await client.request(method, url, json=body, headers=tenancy.alice.headers)

        theirs = await _answers(send, api_requests(tenancy, tenancy.theirs), tenancy.theirs)
        nowhere = await _answers(send, api_requests(tenancy, tenancy.nowhere), tenancy.nowhere)
    _assert_alike(theirs, nowhere)
    # The lists were answered (empty), the rest refused.
    assert [status for _, status, _ in theirs if status == 200] != []
    assert any(status in (400, 404) for _, status, _ in theirs)


async def test_the_pages_answer_alike_for_foreign_and_missing(
    store: Store, tenancy: Tenancy
) -> None:
    async with pages_client(store) as client:
        browser: Browser = await log_in(client, "alice")

        async def send(method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
            if method == "GET":
                return await browser.get(url)
            return await browser.post(url, body)

        theirs = await _answers(send, page_requests(tenancy, tenancy.theirs), tenancy.theirs)
        nowhere = await _answers(send, page_requests(tenancy, tenancy.nowhere), tenancy.nowhere)
    _assert_alike(theirs, nowhere)
    assert any(status == 400 for _, status, _ in theirs)


async def test_the_ok_column_looks_only_at_the_callers_domains(
    store: Store, tenancy: Tenancy
) -> None:
    """An alias of alice's to an address of another tenant (a mailbox there, an address of its
    alias domain, an alias source there) shows as one to a domain that does not exist."""
    async with pages_client(store) as client:
        browser = await log_in(client, "alice")
        shown = []
        for destination in (f"box@{THEIRS}", "box@theirs.net", f"al@{THEIRS}",
                            f"box@{NOWHERE}", "box@nowhere.net", f"al@{NOWHERE}"):
            changed = await browser.post(
                f"/virtual-aliases/{tenancy.alias_id}/edit",
                {"source": "al@mine.org", "destination": destination},
            )
            assert changed.status_code == 303, changed.text
            listing = await browser.get("/virtual-aliases/")
            assert listing.status_code == 200
            shown.append(_neutral(listing.text))
            assert destination in listing.text
        assert shown[:3] == shown[3:]
        # A missing address of alice's own domain is told: the column works at all.
        await browser.post(f"/virtual-aliases/{tenancy.alias_id}/edit",
                           {"source": "al@mine.org", "destination": "ghost@mine.org"})
        assert _neutral((await browser.get("/virtual-aliases/")).text) != shown[0]
