"""The store owns the database's failures: an outage is `Unavailable`, a uniqueness race is
`Conflict`, whatever the driver; the API and the pages answer both without a traceback; a
quiet write wakes no listener."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from dinomail.schema import virtualdomain
from dinomail.store import Conflict, Store, Unavailable, domains
from dinomail.store.errors import as_unavailable
from tests.support.adminapi import add_admin, add_domain, api_client
from tests.support.ports import free_port


async def _read_one(store: Store) -> None:
    async with store.read() as conn:
        await conn.execute(sa.select(1))


async def test_an_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    for url, words in (
        (f"sqlite:///{tmp_path}/no/such/folder/db.sqlite3", "unable to open database file"),
        (f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", "database"),
    ):
        store = Store(url)
        try:
            for attempt in (_read_one(store), store.ping()):
                with pytest.raises(Unavailable) as caught:
                    await attempt
                assert words in caught.value.message and "\n" not in caught.value.message
            with pytest.raises(Unavailable):
                async with store.write() as conn:
                    await conn.execute(sa.select(1))
        finally:
            await store.close()


async def test_a_uniqueness_race_is_a_conflict(store: Store) -> None:
    await add_domain(store, "a.org")
    with pytest.raises(Conflict) as caught:
        async with store.write() as conn:
            # As a concurrent writer would: past the store's own check, into the unique index.
            await conn.execute(virtualdomain.insert().values(name="a.org"))
    assert caught.value.code == "write_conflict"


async def test_only_loud_writes_wake_the_listeners(store: Store) -> None:
    woken: list[str] = []
    store.on_write(lambda: woken.append("woken"))
    async with store.write(quiet=True) as conn:
        await conn.execute(sa.select(1))
    assert woken == []
    async with store.write() as conn:
        await conn.execute(sa.select(1))
    assert woken == ["woken"]


def test_outages_are_told_from_refusals_and_bugs() -> None:
    refused = exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    wrong = exc.ProgrammingError("SELEC", {}, Exception("syntax error"))
    down = exc.OperationalError("SELECT 1", {}, Exception("database is locked\nmore"))
    assert as_unavailable(refused) is None and as_unavailable(wrong) is None
    assert as_unavailable(ValueError("not the database's")) is None
    outage = as_unavailable(down)
    assert outage is not None and outage.message == "cannot use the database: database is locked"
    assert as_unavailable(ConnectionRefusedError(111, "Connection refused")) is not None


async def test_the_api_answers_an_outage_with_503(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await add_admin(store, "root", superadmin=True)

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise exc.OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(domains, "get", unavailable)
    async with api_client(store) as client:
        answer: httpx.Response = await client.get("/api/virtualdomain/1/", headers=root.headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert answer.json()["code"] == "unavailable"
