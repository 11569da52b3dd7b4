"""Quota usage from Dovecot's quota_clone: batched into one write per flush, on SQLite and
PostgreSQL, kept for the next flush when a write fails. (Through a real Dovecot:
test_dovecot_e2e.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dinomail import migrate
from dinomail.store import EVERYTHING, Store, domains, mailboxes
from lookupd.metrics import LookupdMetrics
from lookupd.quota import QuotaWriter, Usage
from tests.support.quota_data import make_mailboxes, usage_of


async def test_many_updates_make_one_write_per_flush(store: Store) -> None:
    emails = await make_mailboxes(store, 20)
    writes = 0

    def count_write() -> None:
        nonlocal writes
        writes += 1

    store.on_write(count_write)
    metrics = LookupdMetrics()
    writer = QuotaWriter(store, flush_interval=60, metrics=metrics)
    # A burst, as quota_clone sends it: the full usage after every change, newest wins.
    for step in range(50):
        for email in emails:
            writer.accept(email, Usage(bytes=1000 * step, messages=step))
    writer.accept("gone@example.org", Usage(bytes=1, messages=1))  # deleted mailbox: skipped
    assert writer.pending == len(emails) + 1
    assert await writer.flush()
    assert writes == 1
    assert writer.pending == 0
    for email in emails:
        assert await usage_of(store, email) == (49_000, 49)
    assert await writer.flush()  # nothing pending: no write at all
    assert writes == 1
    text = metrics.exposition().decode()
    assert 'dinomail_lookupd_quota_flushes_total{result="ok"} 1.0' in text
    assert "dinomail_lookupd_quota_updates_total 1001.0" in text
    assert "dinomail_lookupd_quota_rows_written_total 20.0" in text


async def test_increments_apply_to_the_stored_value(store: Store) -> None:
    (email,) = await make_mailboxes(store, 1)
    writer = QuotaWriter(store)
    writer.accept(email, Usage(bytes=5000, messages=5))
    await writer.flush()
    writer.accept(email, Usage(bytes_delta=-1000, messages_delta=2))
    writer.accept(email, Usage(bytes_delta=-500))
    await writer.flush()
    assert await usage_of(store, email) == (3500, 7)
    # An absolute value after increments replaces them; increments after it add to it.
    writer.accept(email, Usage(bytes_delta=10_000))
    writer.accept(email, Usage(bytes=100, messages=None))
    writer.accept(email, Usage(bytes_delta=1))
    await writer.flush()
    assert await usage_of(store, email) == (101, 7)


async def test_a_failed_write_keeps_the_values_for_the_next_flush(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'late.sqlite3'}"
    store = Store(url)  # not migrated yet: the write fails
    try:
        writer = QuotaWriter(store)
        writer.accept("a@example.org", Usage(bytes=10, messages=1))
        assert not await writer.flush()
        assert writer.pending == 1
        writer.accept("a@example.org", Usage(bytes=20, messages=None))  # newer while failing
        await migrate.upgrade(store.engine)
        async with store.write() as conn:
            await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
            await mailboxes.create(conn, "test", EVERYTHING, {"email": "a@example.org"},
                                   password_hash="{PLAIN}x")
        assert await writer.flush()
        assert await usage_of(store, "a@example.org") == (20, 1)
    finally:
        await store.close()


async def test_run_flushes_periodically_and_on_stop(store: Store) -> None:
    emails = await make_mailboxes(store, 2)
    writer = QuotaWriter(store, flush_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    writer.accept(emails[0], Usage(bytes=1, messages=1))
    for _ in range(100):
        if await usage_of(store, emails[0]) == (1, 1):
            break
        await asyncio.sleep(0.02)
    assert await usage_of(store, emails[0]) == (1, 1)
    writer.flush_interval = 3600
    await asyncio.sleep(0.1)  # the loop now waits an hour
    writer.accept(emails[1], Usage(bytes=2, messages=2))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await usage_of(store, emails[1]) == (2, 2)


@pytest.mark.parametrize("bad", ["0", "-1", "soon"])
def test_flush_interval_setting_is_checked(bad: str) -> None:
    from dinomail.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="QUOTA_FLUSH_INTERVAL"):
        load_settings(environ={"DINOMAIL_QUOTA_FLUSH_INTERVAL": bad})
    assert load_settings(environ={"DINOMAIL_QUOTA_FLUSH_INTERVAL": "0.5"}).QUOTA_FLUSH_INTERVAL \
        == 0.5


@pytest.mark.parametrize("bad", ["short", "has a space in it here", "nön-ascii-secret-value"])
def test_http_secret_setting_is_checked(bad: str) -> None:
    from dinomail.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="DOVECOT_HTTP_SECRET"):
        load_settings(environ={"DINOMAIL_DOVECOT_HTTP_SECRET": bad})
