"""Driving the admin API in tests: an httpx client on the ASGI app, and admins with keys."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from adminapi.app import create_app
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store, admins, apikeys, domains, mailboxes

HOST = "testserver"
PASSWORD = "correct horse battery"
HASH = "{PLAIN}not-a-real-hash"

# Admin passwords are Argon2id with costs meant for production (~0.1 s a hash); tests create
# many admins, and what they check does not depend on the cost.
FAST_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def fast_admin_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admins, "_hasher", FAST_ARGON2)
    monkeypatch.setattr(admins, "_DUMMY_HASH", FAST_ARGON2.hash("not a password"))


def api_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ALLOWED_HOSTS": (HOST,), "API_LIMIT_PER_PAGE": 20, "SECRET_KEY": "test secret key",
    }
    values.update(overrides)
    return Settings(**values)


def key_header(username: str, secret: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {username}:{secret}"}


def basic_header(username: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Account:
    id: int
    username: str
    secret: str
    key_id: int
    headers: dict[str, str] = field(default_factory=dict)


async def add_admin(
    store: Store,
    username: str,
    *,
    superadmin: bool = False,
    domain_ids: tuple[int, ...] = (),
    read_only: bool = False,
) -> Account:
    async with store.write() as conn:
        row = await admins.create(
            conn, "test", username=username, password=PASSWORD, is_superadmin=superadmin,
            domain_ids=domain_ids,
        )
        key, secret = await apikeys.create(conn, "test", row["id"], read_only=read_only)
    return Account(row["id"], username, secret, key["id"], key_header(username, secret))


async def add_key(store: Store, account: Account, *, read_only: bool = False) -> Account:
    async with store.write() as conn:
        key, secret = await apikeys.create(conn, "test", account.id, read_only=read_only)
    return Account(account.id, account.username, secret, key["id"],
                   key_header(account.username, secret))


async def add_domain(store: Store, name: str, **extra: Any) -> dict[str, Any]:
    async with store.write() as conn:
        return await domains.create(conn, "test", EVERYTHING, {"name": name, **extra})


async def add_mailbox(store: Store, email: str, **extra: Any) -> dict[str, Any]:
    async with store.write() as conn:
        return await mailboxes.create(
            conn, "test", EVERYTHING, {"email": email, **extra}, password_hash=HASH
        )


@asynccontextmanager
async def api_client(
    store: Store, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or api_settings(), store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
        yield client
