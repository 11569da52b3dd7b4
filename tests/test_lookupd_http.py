"""The lookup daemon's HTTP listener: /healthz says whether answers can be given, /metrics
exports lookups, snapshot size and age, refreshes and database errors."""

from __future__ import annotations

from pathlib import Path

import httpx

from dinomail.store import Store
from tests.support.lookupd import running_lookupd, wait_until
from tests.support.mail_data import fill_mail_data
from tests.support.ports import free_port
from tests.support.socketmap_client import socketmap_query


async def test_healthz_and_metrics_once_loaded(store: Store, tmp_path: Path) -> None:
    await fill_mail_data(store)
    async with running_lookupd(store, tmp_path) as (_, settings):
        await socketmap_query(settings.SOCKETMAP_LISTEN, "mailboxes", "alice@example.org")
        await socketmap_query(settings.SOCKETMAP_LISTEN, "mailboxes", "nobody@example.org")
        await socketmap_query(settings.SOCKETMAP_LISTEN, "nosuchmap", "x")
        async with httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}") as http:
            health = await http.get("/healthz")
            metrics = (await http.get("/metrics")).text
    assert health.status_code == 200 and health.json()["status"] == "ok"
    lookups = 'dinomail_lookupd_lookups_total{map="%s",protocol="socketmap",result="%s"} 1.0'
    expected = [
        lookups % ("mailboxes", "ok"),
        lookups % ("mailboxes", "notfound"),
        lookups % ("unknown", "perm"),
        'dinomail_lookupd_snapshot_rows{kind="mailboxes"} 5.0',
        'dinomail_lookupd_refreshes_total{kind="full",result="ok"} 1.0',
        "dinomail_lookupd_snapshot_age_seconds ",
        "dinomail_lookupd_lookup_seconds_bucket",
        "dinomail_lookupd_open_connections",
        "dinomail_lookupd_database_errors_total 0.0",
    ]
    for line in expected:
        assert line in metrics, line


async def test_healthz_is_503_before_the_first_snapshot(tmp_path: Path) -> None:
    store = Store(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    try:
        async with running_lookupd(store, tmp_path, wait_loaded=False) as (daemon, settings):
            base = f"http://{settings.LOOKUPD_HTTP_LISTEN}"
            async with httpx.AsyncClient(base_url=base) as http:
                await wait_until(
                    lambda: (daemon.metrics.registry.get_sample_value(
                        "dinomail_lookupd_database_errors_total") or 0) >= 1,
                    what="a database error",
                )
                health = await http.get("/healthz")
                metrics = (await http.get("/metrics")).text
    finally:
        await store.close()
    assert health.status_code == 503 and health.json()["status"] == "loading"
    assert 'dinomail_lookupd_refreshes_total{kind="full",result="error"}' in metrics
