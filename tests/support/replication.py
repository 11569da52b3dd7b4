"""A PostgreSQL primary with a streaming-replication hot standby, both throwaway: the primary
holds a migrated DinoMail database filled with `fill_mail_data`, the standby is made from it
with `pg_basebackup -R` and started on a port of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from dinomail import migrate
from dinomail.store import Store
from tests.support.mail_data import fill_mail_data
from tests.support.postgres import PostgresServer, find_bindir

DATABASE = "dinomail"


@dataclass
class ReplicatedPair:
    primary: PostgresServer
    standby: PostgresServer

    def url(self, *, target: str = "") -> str:
        """Both servers in one URL, libpq style, primary first."""
        query = f"?target_session_attrs={target}" if target else ""
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},"
                f"127.0.0.1:{self.standby.port}/{DATABASE}{query}")

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        target = self.primary.psql("SELECT pg_current_wal_lsn()").strip()
        deadline = time.monotonic() + timeout
        while True:
            done = self.standby.psql(
                f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"
            ).strip()
            if done == "t":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the standby did not replay up to {target}")
            time.sleep(0.05)


def _prepare(url: str) -> None:
    async def run() -> None:
        store = Store(url)
        try:
            await migrate.upgrade(store.engine)
            await fill_mail_data(store)
        finally:
            await store.close()

    # In a thread: the caller may be an async test whose loop runs.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@contextmanager
def replicated_pair() -> Iterator[ReplicatedPair]:
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL server binaries are not installed"
    primary = PostgresServer(bindir)
    standby: PostgresServer | None = None
    try:
        primary.start()
        _prepare(primary.create_database(DATABASE))
        standby = primary.standby()
        standby.start()
        pair = ReplicatedPair(primary, standby)
        pair.wait_replayed()
        yield pair
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()
