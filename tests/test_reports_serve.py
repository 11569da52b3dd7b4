"""`dinomail serve` with the report intake on: the MTA-STS policy over real HTTP on an
`mta-sts.<domain>` host, a report taken in over LMTP, a clean stop."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from dinomail.schema import dmarcreport
from dinomail.store import EVERYTHING, Store, domains
from dinomail.store import mtasts as mtasts_store
from tests.support import reports as samples
from tests.support.cli import dinomail
from tests.support.dns import unused_nameserver
from tests.support.ports import free_port
from tests.support.reports import lmtp_send
from tests.support.serve_process import start_serve, stop_serve, wait_for_status


async def _prepare(url: str) -> None:
    store = Store(url)
    try:
        async with store.write() as conn:
            domain = await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
            await mtasts_store.save(conn, "test", EVERYTHING, domain["id"],
                                    {"mode": "testing", "mx": ["mail.example.org"]}, "")
    finally:
        await store.close()


async def _stored(url: str) -> int:
    store = Store(url)
    try:
        async with store.read() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(dmarcreport)))
    finally:
        await store.close()


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _policy(http: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://{http}/.well-known/mta-sts.txt",
                                     headers={"Host": "mta-sts.example.org"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read()


async def test_serve_with_reports(tmp_path: Path) -> None:
    lmtp_port = free_port()
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env = {
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
        "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{tmp_path / 'dict.sock'}",
        "DINOMAIL_DNS_RESOLVERS": unused_nameserver(),
        "DINOMAIL_REPORTS_LMTP_LISTEN": f"127.0.0.1:{lmtp_port}",
    }
    assert dinomail("migrate", env=env, cwd=tmp_path).returncode == 0
    await _prepare(url)
    process = start_serve(env, tmp_path)
    try:
        wait_for_status(f"http://{env['DINOMAIL_HTTP_LISTEN']}/healthz", 200)
        status, content_type, body = await asyncio.to_thread(_policy,
                                                             env["DINOMAIL_HTTP_LISTEN"])
        assert (status, content_type) == (200, "text/plain; charset=utf-8")
        assert body == (b"version: STSv1\r\nmode: testing\r\nmx: mail.example.org\r\n"
                        b"max_age: 604800\r\n")
        # The intake listener may come up a moment after the admin HTTP one.
        await asyncio.to_thread(_wait_for_port, lmtp_port)
        answers = await asyncio.to_thread(lmtp_send, lmtp_port, samples.yahoo_dmarc(),
                                          ["dmarc-reports@example.org"])
        assert answers["dmarc-reports@example.org"][0] == 250
        assert await _stored(url) == 1
    finally:
        code, stderr = stop_serve(process)
    assert code == 0, stderr
    assert "report intake (LMTP) listening on" in stderr
