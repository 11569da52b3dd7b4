"""Bodies on the lookup daemon's HTTP listener: one size limit on every path however the body
is framed, and JSON refused past a small nesting depth. Once, 16 KB of `[` was a 500
(RecursionError) and a chunked body of 200 MiB was read whole (RSS +190 MiB)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from dinomail.store import Store
from lookupd.authpolicy import MAX_LOGIN_CHARS, AuthPolicy, AuthPolicyConfig
from lookupd.httpbody import MAX_BODY_BYTES, MAX_JSON_DEPTH
from tests.support.authpolicy_requests import body
from tests.support.lookupd import running_lookupd
from tests.support.lookupd_process import (
    LookupdProcess,
    connect,
    lookupd_process,
    mail_database,
    read_until_closed,
)

MiB = 1024 * 1024
POLICY = "/dovecot/auth-policy?command=allow"


@pytest.fixture
async def http(store: Store, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_lookupd(store, tmp_path) as (_, settings),
        httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}", timeout=10) as client,
    ):
        yield client


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_deep_json_is_a_400_not_a_500(http: httpx.AsyncClient) -> None:
    deep = await http.post(POLICY, content=b"[" * 16_000)
    assert deep.status_code == 400
    assert f"nested deeper than {MAX_JSON_DEPTH}" in deep.json()["error"]
    assert (await http.post(POLICY, content=nested(MAX_JSON_DEPTH + 1))).status_code == 400
    fine = await http.post(POLICY, content=nested(MAX_JSON_DEPTH))
    assert (fine.status_code, fine.json()) == (200, {"status": 0, "msg": ""})
    # Brackets inside strings are text, not nesting.
    text = await http.post(POLICY, json={**body("a@example.org", "x", "192.0.2.1"),
                                         "login": "[" * 1000})
    assert text.status_code == 200
    for junk in (b"\xff\xfe", b"1" * 5000, b'{"a": "', b"[]", b"null"):
        answer = await http.post(POLICY, content=junk)
        assert answer.status_code == 400 and "error" in answer.json()


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", [POLICY, "/healthz", "/metrics",
                                  "/dovecot/passdb/alice@example.org", "/nowhere"])
async def test_every_path_refuses_a_large_body_however_framed(
    http: httpx.AsyncClient, path: str
) -> None:
    fields = json.dumps(body("a@example.org", "x", "192.0.2.1")).encode()
    large = fields + b" " * MAX_BODY_BYTES

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(large), 1000):
            yield large[start:start + 1000]

    for content in (large, chunks()):
        answer = await http.post(path, content=content)
        assert answer.status_code == 413, path
        assert answer.json() == {"error": f"request body larger than {MAX_BODY_BYTES} bytes"}
    # Up to the limit, a body is read as before (the auth policy answers it).
    answer = await http.post(path, content=fields + b" " * (MAX_BODY_BYTES - len(fields)))
    assert answer.status_code != 413


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp) as process:
        yield process


def healthz(daemon: LookupdProcess) -> bytes:
    with connect(daemon.http) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_until_closed(sock)


def test_a_chunked_flood_is_cut_at_the_limit(daemon: LookupdProcess) -> None:
    """200 MiB chunked, no Content-Length: answered 413 at the limit and never read further,
    while /healthz keeps answering; the daemon's RSS is watched all along."""
    before = daemon.rss()
    peak = [before]
    stop = threading.Event()
    health: list[bytes] = []

    def watch() -> None:
        while not stop.is_set():
            health.append(healthz(daemon))
            peak[0] = max(peak[0], daemon.rss())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"[" * (64 * 1024))
    sent = 0
    try:
        with connect(daemon.http, timeout=10) as sock:
            sock.sendall(b"POST " + POLICY.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                while sent < 200 * MiB:
                    sock.sendall(chunk)
                    sent += 64 * 1024
            except (BrokenPipeError, ConnectionResetError):
                pass
            peak[0] = max(peak[0], daemon.rss())
            answer = read_until_closed(sock)
    finally:
        stop.set()
        watcher.join()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert sent < 200 * MiB  # the daemon closed the connection
    growth = peak[0] - before
    assert growth < 32 * MiB, f"the daemon grew by {growth / MiB:.0f} MiB"
    assert health and all(answer.startswith(b"HTTP/1.1 200 ") for answer in health)
    assert "Traceback" not in daemon.log_text()


def test_the_auth_policy_keeps_bounded_keys() -> None:
    """The failures remembered are keyed by login and pwhash: what is kept of them is bounded,
    and a long login still counts."""
    policy = AuthPolicy(AuthPolicyConfig(ip_block_after=0, login_block_after=30))
    login = "a" * 10_000 + "@example.org"
    for n in range(30):
        policy.report({"login": login, "pwhash": f"{n:03}" + "f" * 10_000,
                       "remote": "192.0.2.1" + " " * 10_000, "success": False,
                       "policy_reject": False})
    [(kind, key, failures, *_)] = policy.blocks()
    assert (kind, key, failures) == ("login", "a" * MAX_LOGIN_CHARS, 30)
    assert policy.allow({"login": login, "remote": "192.0.2.1"})[0] == -1
