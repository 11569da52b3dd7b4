"""The lookup daemon answers Postfix's own client (`postmap -q … socketmap:…`), on SQLite and
PostgreSQL, for every resolution rule; and answers a temporary failure before it has data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomail.store import Store
from tests.support.lookupd import running_lookupd
from tests.support.mail_data import CASES, NOT_FOUND, fill_mail_data
from tests.support.ports import free_port
from tests.support.postfix import have_postmap, postmap_config, postmap_query_async

pytestmark = pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")


async def test_every_rule_through_postmap(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    config = postmap_config(tmp_path / "postfix")
    async with running_lookupd(store, tmp_path) as (_, settings):
        for name, key, value in CASES:
            table = f"socketmap:inet:{settings.SOCKETMAP_LISTEN}:{name}"
            status, stdout, stderr = await postmap_query_async(config, key, table)
            if value is NOT_FOUND:
                assert (status, stdout, stderr) == (1, "", ""), (name, key)
            else:
                assert (status, stdout.strip()) == (0, value), (name, key, stderr)


async def test_temporary_failure_before_the_first_snapshot(tmp_path: Path) -> None:
    # A database nobody answers: the daemon listens, but has nothing to answer from.
    store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    config = postmap_config(tmp_path / "postfix")
    try:
        async with running_lookupd(store, tmp_path, wait_loaded=False) as (daemon, settings):
            table = f"socketmap:inet:{settings.SOCKETMAP_LISTEN}:mailboxes"
            status, stdout, stderr = await postmap_query_async(config, "alice@example.org", table)
            assert daemon.holder.current is None
    finally:
        await store.close()
    assert status == 1 and stdout == ""
    # postmap reports a lookup error, which Postfix's daemons turn into "try again later".
    assert "query error" in stderr
