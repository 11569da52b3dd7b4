"""The admin pages driven without a browser (httpx on the ASGI app), as a browser would: a
session cookie, the CSRF token of the last page, logging in with or without a second factor."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

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
async def pages_client(
    store: Store, settings: Settings | None = None, *, base_url: str = f"https://{HOST}",
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or page_settings(), store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url=base_url) as client:
        yield client


def token_in(response: httpx.Response) -> str:
    match = CSRF.search(response.text)
    assert match, f"no CSRF token in {response.request.url}"
    return match.group(1)


@dataclass
class PageSession:
    """A client with a session; `post` sends the CSRF token of the session."""

    client: httpx.AsyncClient
    token: str

    async def get(self, url: str) -> httpx.Response:
        response = await self.client.get(url)
        if CSRF.search(response.text):
            self.token = token_in(response)
        return response

    async def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(url, data={**(data or {}), "csrf_token": self.token})


async def password_step(client: httpx.AsyncClient, username: str,
                        password: str = PASSWORD) -> httpx.Response:
    """Post the login form; the answer is a redirect (home, or the second step) or the form."""
    token = token_in(await client.get("/login"))
    return await client.post("/login", data={"username": username, "password": password,
                                             "csrf_token": token})


async def log_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD,
                 *, code: str | None = None) -> PageSession:
    """Log in; `code` answers the second step when the admin has a second factor."""
    answer = await password_step(client, username, password)
    assert answer.status_code == 303, answer.text
    if code is not None:
        assert answer.headers["location"].startswith("/login/two-factor")
        token = token_in(await client.get("/login/two-factor"))
        answer = await client.post("/login/two-factor", data={"code": code,
                                                              "csrf_token": token})
        assert answer.status_code == 303, answer.text
    session = PageSession(client, "")
    # The login starts a new session with a new token.
    await session.get("/account/")
    return session
