"""Driving the mailbox owners' pages (`/me/`) in tests: mailboxes with real password hashes,
and a logged-in owner's client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from adminapi.app import create_app
from dinomail.passwords import hash_password
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store, mailboxes

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OWNER_PASSWORD = "a long mailbox password"


def csrf_token(response: httpx.Response) -> str:
    match = CSRF.search(response.text)
    assert match, f"no CSRF token in {response.request.url}"
    return match.group(1)


async def add_owner(store: Store, email: str, password: str = OWNER_PASSWORD, *,
                    scheme: str = "SHA512-CRYPT", **extra: Any) -> dict[str, Any]:
    """A mailbox whose password is `password`, hashed in `scheme`."""
    async with store.write() as conn:
        return await mailboxes.create(
            conn, "test", EVERYTHING, {"email": email, **extra},
            password_hash=hash_password(password, scheme, user=email),
        )


async def stored_hash(store: Store, mailbox_id: int) -> str:
    async with store.read() as conn:
        return await mailboxes.password_hash(conn, EVERYTHING, mailbox_id)


@dataclass
class Owner:
    """A client logged in to `/me/`, with its session's CSRF token."""

    client: httpx.AsyncClient
    token: str

    async def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(url, data={**(data or {}), "csrf_token": self.token})


async def try_owner_login(client: httpx.AsyncClient, email: str,
                          password: str = OWNER_PASSWORD) -> httpx.Response:
    token = csrf_token(await client.get("/me/login"))
    return await client.post("/me/login", data={"email": email, "password": password,
                                                "csrf_token": token})


async def owner_log_in(client: httpx.AsyncClient, email: str,
                       password: str = OWNER_PASSWORD) -> Owner:
    answer = await try_owner_login(client, email, password)
    assert (answer.status_code, answer.headers.get("location")) == (303, "/me/"), answer.text
    return Owner(client, csrf_token(await client.get("/me/")))


HOST = "testserver"
SECRET_KEY = "test-secret-key-of-forty-characters-0123"


def me_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"ALLOWED_HOSTS": (HOST,), "SECRET_KEY": SECRET_KEY}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def me_client(store: Store, settings: Settings | None = None
                    ) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the whole application (admin pages, API and `/me/`) over HTTPS."""
    app = create_app(settings or me_settings(), store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"https://{HOST}") as client:
        yield client
