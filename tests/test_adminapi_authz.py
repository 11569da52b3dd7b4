"""Who may do what through the admin API: the authorisation matrix.

Callers: a superadmin, the domain admin of a.org (acting on a.org and on b.org), a read-only
key, a revoked key, a wrong key and no key; and Basic credentials of one admin on another's key.
Every row is run for every caller against one database; mismatches are reported together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dinomail.store import EVERYTHING, Store, aliases, apikeys
from tests.support.adminapi import (
    PASSWORD,
    add_admin,
    add_domain,
    add_key,
    add_mailbox,
    api_client,
    api_settings,
    basic_header,
    fast_admin_hashing,
    key_header,
)

CALLERS = ("admin_a", "read_only", "revoked", "wrong", "none", "super")
UNAUTHENTICATED = {"revoked": 401, "wrong": 401, "none": 401}
A, B = 1, 2  # the ids of a.org and b.org; mailbox, alias and domain limit ids follow them

Body = dict[str, Any] | Callable[[str], dict[str, Any]] | None


@dataclass(frozen=True)
class Row:
    method: str
    url: str
    body: Body
    super: int
    admin_a: int
    read_only: int
    others: dict[str, int] | None = None

    def expected(self, caller: str) -> int:
        if caller in ("super", "admin_a", "read_only"):
            return int(getattr(self, caller))
        return (self.others or UNAUTHENTICATED)[caller]


def per_caller(make: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    return make


MATRIX = (
    Row("GET", "/api/virtualdomain/", None, 200, 200, 200),
    Row("GET", f"/api/virtualdomain/{A}/", None, 200, 200, 200),
    Row("GET", f"/api/virtualdomain/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/virtualuser/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/virtualalias/{B}/", None, 200, 404, 200),
    Row("GET", f"/api/domainlimit/{B}/", None, 200, 404, 200),
    Row("GET", "/api/aliasdomain/?domain=b.org", None, 200, 200, 200),
    Row("POST", "/api/virtualdomain/", per_caller(lambda c: {"name": f"new-{c}.org"}),
        201, 403, 403),
    Row("POST", "/api/virtualuser/", per_caller(lambda c: {"email": f"new-{c}@a.org"}),
        201, 201, 403),
    Row("POST", "/api/virtualuser/",
        per_caller(lambda c: {"email": f"new-{c}@b.org", "domain": f"/api/virtualdomain/{B}/"}),
        201, 400, 403),
    Row("POST", "/api/virtualuser/", per_caller(lambda c: {"email": f"other-{c}@b.org"}),
        201, 400, 403),
    Row("POST", "/api/virtualalias/",
        per_caller(lambda c: {"source": f"al-{c}@b.org", "destination": "x@example.net"}),
        201, 400, 403),
    Row("POST", "/api/aliasdomain/",
        per_caller(lambda c: {"name": f"alias-{c}.net", "target_domain": B}), 201, 403, 403),
    # Naming an alias domain takes a mail domain's name: superadmins only, whatever the target.
    Row("POST", "/api/aliasdomain/",
        per_caller(lambda c: {"name": f"mine-{c}.net", "target_domain": A}), 201, 403, 403),
    Row("PATCH", f"/api/virtualuser/{B}/", {"quota": 7}, 202, 404, 403),
    Row("PUT", f"/api/virtualuser/{A}/", {"email": "a1@a.org", "quota": 9}, 204, 204, 403),
    Row("PATCH", f"/api/virtualalias/{B}/", {"destination": "y@example.net"}, 202, 404, 403),
    Row("PATCH", f"/api/virtualdomain/{A}/", {"display_name": "A"}, 202, 202, 403),
    Row("PATCH", f"/api/virtualdomain/{B}/", {"display_name": "B"}, 202, 404, 403),
    Row("PATCH", f"/api/virtualdomain/{A}/", {"name": "renamed.org"}, 409, 403, 403),
    Row("PATCH", f"/api/domainlimit/{A}/", {"max_mailboxes": 50}, 202, 403, 403),
    Row("PATCH", f"/api/domainlimit/{A}/", {"default_quota": 5}, 202, 202, 403),
    Row("PUT", f"/api/changeuserpassword/{A}/", {"password": "new password"}, 204, 204, 403),
    Row("PATCH", f"/api/changeuserpassword/{B}/", {"password": "new password"}, 202, 404, 403),
    Row("GET", "/api/admin/", None, 200, 403, 200),
    Row("POST", "/api/admin/",
        per_caller(lambda c: {"username": f"new-{c}", "password": "long enough"}),
        201, 403, 403),
    Row("GET", "/api/auditlog/", None, 200, 403, 200),
    Row("GET", "/api/apikey/", None, 200, 200, 200),
    # The superadmin's key (id 1): only its owner sees it, through any of their keys.
    Row("GET", "/api/apikey/1/", None, 200, 404, 200),
    # No list-level writes, for anyone (the route refuses the method before any credentials).
    Row("DELETE", "/api/virtualuser/", None, 405, 405, 405,
        {"revoked": 405, "wrong": 405, "none": 405}),
    Row("PUT", "/api/virtualdomain/", [], 405, 405, 405,  # type: ignore[arg-type]
        {"revoked": 405, "wrong": 405, "none": 405}),
    Row("DELETE", f"/api/virtualuser/{B}/", None, 204, 404, 403),
    Row("DELETE", f"/api/virtualalias/{B}/", None, 204, 404, 403),
    Row("DELETE", f"/api/virtualdomain/{A}/", None, 204, 403, 403),
    # Last: the superadmin revokes the key it has been using.
    Row("DELETE", "/api/apikey/1/", None, 204, 404, 403),
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _world(store: Store) -> dict[str, dict[str, str]]:
    """Two domains with a mailbox and an alias each, and one set of credentials per caller."""
    await add_domain(store, "a.org")
    await add_domain(store, "b.org")
    await add_mailbox(store, "a1@a.org")
    await add_mailbox(store, "b1@b.org")
    async with store.write() as conn:
        for source, destination in (("x@a.org", "a1@a.org"), ("x@b.org", "b1@b.org")):
            await aliases.create(
                conn, "test", EVERYTHING, {"source": source, "destination": destination}
            )
    root = await add_admin(store, "root", superadmin=True)
    admin_a = await add_admin(store, "alice", domain_ids=(A,))
    read_only = await add_key(store, root, read_only=True)
    revoked = await add_key(store, root)
    async with store.write() as conn:
        await apikeys.revoke(conn, "test", root.id, revoked.key_id)
    assert root.key_id == 1
    return {
        "super": root.headers,
        "admin_a": admin_a.headers,
        "read_only": read_only.headers,
        "revoked": revoked.headers,
        "wrong": key_header("root", "0" * 40),
        "none": {},
    }


async def test_authorisation_matrix(store: Store) -> None:
    credentials = await _world(store)
    mismatches = []
    async with api_client(store) as client:
        for row in MATRIX:
            for caller in CALLERS:
                body = row.body(caller) if callable(row.body) else row.body
                answer = await client.request(
                    row.method, row.url, json=body, headers=credentials[caller]
                )
                if answer.status_code != row.expected(caller):
                    mismatches.append(
                        f"{caller:9} {row.method:6} {row.url:32} expected "
                        f"{row.expected(caller)}, got {answer.status_code} {answer.text[:120]}"
                    )
    assert not mismatches, "\n" + "\n".join(mismatches)


async def _names(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[str]:
    answer = await client.get(url, headers=headers)
    assert answer.status_code == 200
    return [obj.get("name") or obj.get("email") or obj["source"]
            for obj in answer.json()["objects"]]


async def test_domain_admin_sees_only_their_domains(store: Store) -> None:
    credentials = await _world(store)
    mine = credentials["admin_a"]
    async with api_client(store) as client:
        assert await _names(client, "/api/virtualdomain/", mine) == ["a.org"]
        assert await _names(client, "/api/virtualuser/", mine) == ["a1@a.org"]
        assert await _names(client, "/api/virtualalias/", mine) == ["x@a.org"]
        assert await _names(client, "/api/domainlimit/", mine) == ["a.org"]
        assert await _names(client, "/api/virtualuser/?domain=b.org", mine) == []
        assert await _names(client, "/api/virtualuser/?q=b1", mine) == []
        everything = await _names(client, "/api/virtualuser/", credentials["super"])
        assert everything == ["a1@a.org", "b1@b.org"]


async def test_other_domains_look_like_missing_ones(store: Store) -> None:
    """A domain admin cannot tell another admin's domain from one that does not exist."""
    credentials = await _world(store)
    mine = credentials["admin_a"]
    async with api_client(store) as client:
        theirs = await client.post("/api/virtualuser/", json={"email": "n@b.org"}, headers=mine)
        nowhere = await client.post("/api/virtualuser/", json={"email": "n@nowhere.org"},
                                    headers=mine)
        assert theirs.status_code == nowhere.status_code == 400
        assert theirs.json()["error"].replace("b.org", "X") == \
            nowhere.json()["error"].replace("nowhere.org", "X")
        by_uri = await client.post(
            "/api/virtualuser/", json={"email": "n@b.org", "domain": f"/api/virtualdomain/{B}/"},
            headers=mine,
        )
        missing_uri = await client.post(
            "/api/virtualuser/", json={"email": "n@b.org", "domain": "/api/virtualdomain/77/"},
            headers=mine,
        )
        assert by_uri.json() == missing_uri.json()
        assert (await client.get(f"/api/virtualuser/{B}/", headers=mine)).json() == \
            (await client.get("/api/virtualuser/77/", headers=mine)).json()


async def test_basic_credentials_see_only_their_own_keys(store: Store) -> None:
    credentials = await _world(store)
    async with api_client(store) as client:
        # alice's password on root's key (id 1): as if it did not exist.
        other = await client.get("/api/apikey/1/", headers=basic_header("alice"))
        assert other.status_code == 404
        assert (await client.delete("/api/apikey/1/", headers=basic_header("alice"))
                ).status_code == 404
        own = await client.get("/api/apikey/1/", headers=basic_header("root"))
        assert own.status_code == 200 and own.json()["key"].endswith("...")
        listed = await client.get("/api/apikey/", headers=basic_header("alice"))
        prefixes = {obj["prefix"] for obj in listed.json()["objects"]}
        root_key = credentials["super"]["Authorization"].split(":")[1]
        assert root_key[:8] not in prefixes
        # Basic credentials open /api/apikey/ only.
        assert (await client.get("/api/virtualdomain/", headers=basic_header("root"))
                ).status_code == 401


# --- the matrix generated from the route table ---------------------------------------------------
#
# Every route of the application (API, pages, machine endpoints), every method it takes, asked by
# every kind of caller. A route added later is covered without touching this file; a route that
# answers without credentials must be listed in PUBLIC below, on purpose.

# Answer without any credentials: documents, health, metrics, mail clients' autoconfiguration,
# and the pages that come before a login.
PUBLIC = frozenset({
    "/healthz", "/metrics", "/api/", "/api/openapi.json", "/api/docs/",
    "/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml",
    "/autodiscover/autodiscover.xml", "/mail/apple.mobileconfig",
    "/login", "/login/two-factor", "/language", "/legals", "/api/export-schema.json",
    "/me/login", "/me/login/code", "/me/language",
})
MISSING_ID = 987654
# Tables a request may touch without it being a change an admin made: keys record their last use,
# admins their last login.
BOOKKEEPING = ("dinomail_apikey", "dinomail_admin")
# A plausible body per API resource (the first path segment after /api/), so that writes get
# past the shape checks to the object itself.
API_BODIES: dict[str, dict[str, Any]] = {
    "virtualdomain": {"display_name": "changed"},
    "virtualuser": {"quota": 7},
    "virtualalias": {"destination": "y@example.net"},
    "aliasdomain": {"active": False},
    "domainlimit": {"default_quota": 5},
    "admin": {"email": ""},
    "changeuserpassword": {"password": "a long enough password"},
    "apikey": {"name": "matrix"},
}

# Creations naming a domain, per list route: a tenant naming the other tenant's domain must get
# the answer a domain that does not exist gets. `own` is the caller's domain (id and name).
MISSING_DOMAIN = "missing.example"
CREATIONS: dict[str, Callable[[str, int, str], dict[str, Any]]] = {
    "/api/virtualdomain/": lambda domain, own, own_name: {"name": domain},
    "/api/virtualuser/": lambda domain, own, own_name: {"email": f"n@{domain}"},
    "/api/virtualalias/": lambda domain, own, own_name: {
        "source": f"n@{domain}", "destination": "x@example.net"},
    "/api/aliasdomain/": lambda domain, own, own_name: {"name": domain, "target_domain": own},
    "/virtual-domains/new": lambda domain, own, own_name: {"name": domain, "active": "on"},
    "/virtual-users/new": lambda domain, own, own_name: {"email": f"n@{domain}",
                                                         "active": "on"},
    "/virtual-aliases/new": lambda domain, own, own_name: {
        "source": f"n@{domain}", "destination": "x@example.net"},
    "/alias-domains/new": lambda domain, own, own_name: {
        "name": domain, "target": own_name, "active": "on"},
}


@dataclass(frozen=True)
class Endpoint:
    path: str  # with {pk} where an object id goes
    method: str

    @property
    def is_api(self) -> bool:
        return self.path == "/api/" or self.path.startswith("/api/")

    @property
    def has_pk(self) -> bool:
        return "{pk}" in self.path

    @property
    def is_write(self) -> bool:
        return self.method != "GET"

    def url(self, pk: int = 1) -> str:
        return self.path.replace("{pk}", str(pk))


def endpoints(app: Any, *, options: bool = False) -> list[Endpoint]:
    """The routes and their methods; OPTIONS apart (`options=True` gives only those): it
    answers anyone with the allowed methods, as tastypie did, and is checked on its own."""
    from starlette.routing import Route

    found = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue  # the static files' mount
        # A second id in the path (an app password under its mailbox) takes the same value.
        path = re.sub(r"\{\w+:int\}", "{pk}", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD" and (method == "OPTIONS") == options:
                found.append(Endpoint(path, method))
    return found


@dataclass
class Caller:
    """One way of asking: API headers, and a pages client holding its session (if any)."""

    name: str
    headers: dict[str, str]
    pages: httpx.AsyncClient
    store: Store
    token: str = ""

    async def ask(self, endpoint: Endpoint, pk: int = 1, *, body: dict[str, Any] | None = None,
                  params: dict[str, str] | None = None) -> httpx.Response:
        url = endpoint.url(pk)
        if endpoint.is_api or (url in PUBLIC and not url.startswith(
                ("/login", "/language", "/me/login", "/me/language"))):
            if body is None:
                body = API_BODIES.get(url.split("/")[2] if endpoint.is_api else "", {})
            return await self.pages.request(
                endpoint.method, url, headers=self.headers, params=params,
                json=body if endpoint.is_write and endpoint.is_api else None,
            )
        if endpoint.method == "POST":
            return await self.pages.post(url, data={**(body or {}), "csrf_token": self.token})
        return await self.pages.request(endpoint.method, url, params=params)


async def _mail_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    from dinomail import schema

    async with store.read() as conn:
        return {
            table.name: sorted(
                (tuple(row) for row in await conn.execute(sa.select(table))), key=repr
            )
            for table in schema.metadata.sorted_tables if table.name not in BOOKKEEPING
        }


async def _tenant_world(store: Store) -> dict[str, Any]:
    """Two tenants whose objects have id 1 (a.example's) and 2 (b.example's) in every table:
    domains, mailboxes, aliases, alias domains, domain limits, admins and API keys."""
    from dinomail.store import aliasdomains

    await add_domain(store, "tenant-a.example")
    await add_domain(store, "tenant-b.example")
    await add_mailbox(store, "box@tenant-a.example")
    await add_mailbox(store, "box@tenant-b.example")
    async with store.write() as conn:
        for letter in "ab":
            await aliases.create(conn, "test", EVERYTHING, {
                "source": f"list@tenant-{letter}.example",
                "destination": f"box@tenant-{letter}.example"})
        for number, letter in ((1, "a"), (2, "b")):
            await aliasdomains.create(conn, "test", EVERYTHING, {
                "name": f"alias-{letter}.example", "target_domain_id": number})
    alice = await add_admin(store, "alice", domain_ids=(1,))
    bob = await add_admin(store, "bob", domain_ids=(2,))
    assert (alice.id, alice.key_id, bob.id, bob.key_id) == (1, 1, 2, 2)
    root = await add_admin(store, "root", superadmin=True)
    read_only = await add_key(store, root, read_only=True)
    revoked = await add_key(store, root)
    gone = await add_admin(store, "gone", domain_ids=(1,))
    async with store.write() as conn:
        await apikeys.revoke(conn, "test", root.id, revoked.key_id)
    return {"alice": alice, "bob": bob, "root": root, "read_only": read_only,
            "revoked": revoked, "gone": gone}


async def _log_in(client: httpx.AsyncClient, username: str) -> str:
    import re

    token = re.compile(r'name="csrf_token" value="([^"]+)"')
    first = token.search((await client.get("/login")).text)
    assert first is not None
    answer = await client.post("/login", data={
        "username": username, "password": PASSWORD, "csrf_token": first.group(1)})
    assert answer.status_code == 303, answer.text
    found = token.search((await client.get("/")).text)
    assert found is not None
    return found.group(1)


def _same(answers: list[httpx.Response], their_domain: str) -> bool:
    theirs, missing = answers
    return (theirs.status_code, _unrandom(theirs.text).replace(their_domain, MISSING_DOMAIN)) == (
        missing.status_code, _unrandom(missing.text))


# A page that starts a passkey ceremony carries a new random challenge every time.
_WEBAUTHN_OPTIONS = re.compile(r'data-options="[^"]*"')


def _unrandom(text: str) -> str:
    return _WEBAUTHN_OPTIONS.sub('data-options=""', text)


async def _compare_creations(caller: Caller, endpoint: Endpoint, theirs: int, their_name: str,
                             check: Callable[..., None]) -> None:
    """Creating in the other tenant's domain: a missing domain's answer, and nothing made."""
    own = 3 - theirs
    own_name = "tenant-a.example" if own == 1 else "tenant-b.example"
    make = CREATIONS[endpoint.path]
    before = await _mail_rows(caller.store)
    answers = [
        await caller.ask(endpoint, body=make(domain, own, own_name))
        for domain in (f"{their_name}.example", MISSING_DOMAIN)
    ]
    check(_same(answers, f"{their_name}.example"), caller.name, endpoint, answers[0],
          f"creation differs from a missing domain's {answers[1].status_code} "
          f"{answers[1].text[:100]!r}")
    check(answers[0].status_code >= 400, caller.name, endpoint, answers[0], "was accepted")
    check(await _mail_rows(caller.store) == before, caller.name, endpoint, answers[0],
          "created something")


async def test_every_route_for_every_caller(store: Store) -> None:
    """Generated from the route table: who gets in, who may write, and what a tenant learns
    about the other tenant's objects (nothing: the same answers as for objects that do not
    exist, and no change)."""
    from contextlib import AsyncExitStack

    from adminapi.app import create_app
    from dinomail.store import admins

    who = await _tenant_world(store)
    settings = api_settings(SECRET_KEY="matrix-secret-key-of-forty-characters-01",
                            DNS_RESOLVERS=("127.0.0.1:9",), DNS_TIMEOUT=0.2)
    app = create_app(settings, store)
    routes = endpoints(app)
    assert len(routes) > 80  # the table was read, not an empty app
    problems: list[str] = []
    async with AsyncExitStack() as stack:
        async def client() -> httpx.AsyncClient:
            return await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="https://testserver"))

        callers = {name: Caller(name, who[name].headers, await client(), store)
                   for name in ("alice", "bob", "root", "read_only", "revoked", "gone")}
        callers["none"] = Caller("none", {}, await client(), store)
        callers["wrong"] = Caller("wrong", key_header("root", "0" * 40), await client(), store)
        for name in ("alice", "bob", "root", "gone"):
            callers[name].token = await _log_in(callers[name].pages, name)
        # A deactivated admin: their key, their Basic credentials and their open session.
        async with store.write() as conn:
            await admins.update(conn, "test", who["gone"].id, {"is_active": False})
        gone_basic = Caller("gone_basic", basic_header("gone"), await client(), store)

        def check(condition: bool, caller: str, endpoint: Endpoint, answer: httpx.Response,
                  what: str) -> None:
            if not condition:
                problems.append(f"{caller:10} {endpoint.method:6} {endpoint.path:44} "
                                f"{what}: {answer.status_code} {answer.text[:100]!r}")

        # 0. OPTIONS: the allowed methods for anyone, the same for an object that exists and
        # one that does not, so it tells nobody anything.
        for endpoint in endpoints(app, options=True):
            there = await callers["none"].pages.options(endpoint.url())
            missing = await callers["none"].pages.options(endpoint.url(MISSING_ID))
            check(there.status_code == 200 and there.headers.get("allow") is not None
                  and (there.text, there.headers["allow"])
                  == (missing.text, missing.headers.get("allow")),
                  "none", endpoint, there, "OPTIONS answers differ")

        # 1. Without valid credentials: nothing but the public routes.
        for caller in (callers["none"], callers["revoked"], callers["wrong"], callers["gone"],
                       gone_basic):
            for endpoint in routes:
                if endpoint.path in PUBLIC:
                    continue
                answer = await caller.ask(endpoint)
                if endpoint.is_api:
                    # Wrong Basic credentials, asked again and again, meet the login limiter.
                    refused = (401, 429) if caller is gone_basic else (401,)
                    check(answer.status_code in refused, caller.name, endpoint, answer,
                          "expected 401")
                else:
                    location = answer.headers.get("location", "")
                    # The old list URLs only add their slash (308), login or not.
                    to_login = answer.status_code == 303 and location.startswith("/login")
                    # The mailbox owners' pages have their own login (and session).
                    if endpoint.path.startswith("/me/"):
                        to_login = answer.status_code == 303 and location == "/me/login"
                    to_slash = answer.status_code == 308 and location == endpoint.path + "/"
                    check(to_login or to_slash, caller.name, endpoint, answer,
                          "expected a redirect to the login")

        # 2. A read-only key writes nothing.
        before = await _mail_rows(store)
        for endpoint in routes:
            if endpoint.is_api and endpoint.is_write and endpoint.path not in PUBLIC:
                answer = await callers["read_only"].ask(endpoint)
                check(answer.status_code == 403, "read_only", endpoint, answer, "expected 403")
        check(await _mail_rows(store) == before, "read_only", Endpoint("*", "*"),
              httpx.Response(0), "the database changed")

        # 3. A tenant on the other tenant's objects: the answer for a missing object, and no
        # change; and the other tenant's names in no answer at all.
        for caller, theirs, their_name in ((callers["alice"], 2, "tenant-b"),
                                           (callers["bob"], 1, "tenant-a")):
            for endpoint in routes:
                if endpoint.path in PUBLIC or endpoint.path == "/logout":
                    continue
                before = await _mail_rows(store)
                answer = await caller.ask(endpoint, theirs)
                check(answer.status_code < 500, caller.name, endpoint, answer, "server error")
                check(their_name not in answer.text and f"alias-{their_name[-1]}" not in
                      answer.text, caller.name, endpoint, answer, "shows the other tenant")
                if endpoint.is_write and endpoint.has_pk:
                    check(await _mail_rows(store) == before, caller.name, endpoint, answer,
                          "changed the other tenant's data")
                if endpoint.path in CREATIONS and endpoint.method == "POST":
                    await _compare_creations(caller, endpoint, theirs, their_name, check)
                if endpoint.method == "GET" and not endpoint.has_pk:
                    # A list filtered on the other tenant's domain, or on a missing one.
                    answers = [
                        await caller.ask(endpoint, params={"domain": domain})
                        for domain in (f"{their_name}.example", MISSING_DOMAIN)
                    ]
                    check(_same(answers, f"{their_name}.example"), caller.name, endpoint,
                          answers[0], f"filter differs from a missing domain's "
                          f"{answers[1].status_code} {answers[1].text[:100]!r}")
                if endpoint.has_pk:
                    missing = await caller.ask(endpoint, MISSING_ID)
                    same = (missing.status_code, missing.text.replace(
                        str(MISSING_ID), str(theirs))) == (answer.status_code, answer.text)
                    check(same, caller.name, endpoint, answer,
                          f"differs from a missing object's {missing.status_code} "
                          f"{missing.text[:100]!r}")

        # 4. The superadmin is let in everywhere and never meets a server error (deletions
        # last, so the objects exist for the other methods).
        for endpoint in sorted(routes, key=lambda e: e.method == "DELETE"):
            if endpoint.path == "/logout":
                continue
            answer = await callers["root"].ask(endpoint)
            check(answer.status_code not in (401, 500), "root", endpoint, answer,
                  "refused or failed")
    assert not problems, "\n" + "\n".join(problems)
