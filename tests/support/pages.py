"""Driving the admin pages in tests: a client on the ASGI app, logging in with its CSRF token,
and a world of two tenants (a.org the superadmin's, b.org alice's) to act in.

`world` and `client` are fixtures of every test module (tests/conftest.py loads this one as a
plugin); a module's own fixture of the same name takes precedence."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from adminapi.app import create_app
from dinomail import schema
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store, admins, aliasdomains, aliases, apikeys
from tests.support.adminapi import PASSWORD, add_domain, add_mailbox

HOST = "testserver"
SECRET_KEY = "test-secret-key-of-forty-characters-0123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# Every table an admin's action can touch.
TABLES = (
    schema.virtualdomain, schema.virtualuser, schema.virtualalias, schema.aliasdomain,
    schema.quotausage, schema.admin, schema.admin_domain, schema.apikey, schema.auditlog,
    schema.dnscheckrun, schema.dnscheck,
)


def page_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ALLOWED_HOSTS": (HOST, "127.0.0.1", "localhost"), "SECRET_KEY": SECRET_KEY,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def pages_client(
    store: Store, settings: Settings | None = None, *, base_url: str = f"https://{HOST}",
    headers: dict[str, str] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or page_settings(), store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url,
                                 headers=headers) as client:
        yield client


def token_in(response: httpx.Response) -> str:
    match = CSRF.search(response.text)
    assert match, f"no CSRF token in {response.request.url}"
    return match.group(1)


@dataclass
class Browser:
    """A client with a session, as a browser would hold it."""

    client: httpx.AsyncClient
    token: str

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.client.get(url, params=params or None)

    async def post(self, url: str, data: dict[str, str] | None = None,
                   **headers: str) -> httpx.Response:
        return await self.client.post(url, data={**(data or {}), "csrf_token": self.token},
                                      headers=headers or None)


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Browser:
    token = token_in(await client.get("/login"))
    answer = await client.post("/login", data={"username": username, "password": password,
                                               "csrf_token": token})
    assert answer.status_code == 303, answer.text
    # The login starts a new session with a new token.
    return Browser(client, token_in(await client.get("/")))


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    async with store.read() as conn:
        return {
            table.name: [
                tuple(row) for row in await conn.execute(
                    sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in TABLES
        }


@dataclass
class World:
    root: int
    alice: int
    root_key: int


@pytest.fixture
async def world(store: Store) -> World:
    """a.org (root's) and b.org (alice's), each with a mailbox, an alias, an alias domain."""
    a = await add_domain(store, "a.org")
    b = await add_domain(store, "b.org")
    await add_mailbox(store, "anna@a.org", quota=2_000_000_000)
    await add_mailbox(store, "bob@b.org")
    async with store.write() as conn:
        root = await admins.create(conn, "test", username="root", password=PASSWORD,
                                   is_superadmin=True)
        alice = await admins.create(conn, "test", username="alice", password=PASSWORD,
                                    domain_ids=[b["id"]])
        key, _secret = await apikeys.create(conn, "test", root["id"], name="script")
        for source, destination in (("info@a.org", "anna@a.org"), ("info@b.org", "bob@b.org")):
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": source, "destination": destination})
        for name, target in (("a.net", a["id"]), ("b.net", b["id"])):
            await aliasdomains.create(conn, "test", EVERYTHING,
                                      {"name": name, "target_domain_id": target})
    return World(root=root["id"], alice=alice["id"], root_key=key["id"])


@pytest.fixture
async def client(store: Store, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with pages_client(store) as client:
        yield client
