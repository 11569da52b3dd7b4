"""Driving the admin pages without a browser: an httpx client on the ASGI app that keeps its
cookies as a browser does, logging in, and a picture of the tables to show that a refused form
changed nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from adminapi.app import create_app
from dinomail.settings import Settings
from dinomail.store import Store
from tests.support.adminapi import PASSWORD

HOST = "testserver"
SECRET_KEY = "test-secret-key-of-forty-characters-0123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def page_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ALLOWED_HOSTS": (HOST, "127.0.0.1", "localhost"), "SECRET_KEY": SECRET_KEY,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def pages_client(store: Store, settings: Settings | None = None
                       ) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or page_settings(), store)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=f"https://{HOST}") as client:
        yield client


def token_in(response: httpx.Response) -> str:
    match = CSRF.search(response.text)
    assert match, f"no CSRF token in {response.request.url}"
    return match.group(1)


@dataclass
class Session:
    """A logged-in client and the CSRF token of its session."""

    client: httpx.AsyncClient
    token: str

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.client.get(url, params=params or None)

    async def post(self, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(url, data={**(data or {}), "csrf_token": self.token})


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Session:
    token = token_in(await client.get("/login"))
    answer = await client.post("/login", data={"username": username, "password": password,
                                               "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return Session(client, token_in(await client.get("/")))


async def snapshot(store: Store, tables: Sequence[sa.Table]) -> dict[str, list[tuple[Any, ...]]]:
    async with store.read() as conn:
        return {
            table.name: [tuple(row) for row in await conn.execute(
                sa.select(table).order_by(*table.primary_key.columns))]
            for table in tables
        }
