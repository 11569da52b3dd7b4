"""Fuzzing the bodies of the lookup daemon's HTTP listener: JSON of any shape and depth, bodies
of any bytes, framed by Content-Length or chunked, on every path. No exception escapes (never a
500), every answer is one of the listener's defined statuses with a JSON body, and a real
lookupd fed garbage keeps serving other connections within bounded memory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from lookupd.authpolicy import AuthPolicy
from lookupd.http import create_http_app
from lookupd.httpbody import MAX_BODY_BYTES, MAX_JSON_DEPTH, JSONBodyError, load_json
from lookupd.metrics import LookupdMetrics
from lookupd.refresher import SnapshotHolder
from lookupd.snapshot import Snapshot
from tests.support.dict_server import mail_data
from tests.support.fuzz import Watch, exchange, fuzz_settings
from tests.support.lookupd_process import LookupdProcess, lookupd_process, mail_database

KEY = "k" * 32
PATHS = ["/dovecot/auth-policy?command=allow", "/dovecot/auth-policy?command=report",
         "/dovecot/auth-policy?command=other", "/dovecot/auth-policy", "/healthz", "/metrics",
         "/dovecot/passdb/alice@example.com", "/dovecot/userdb/x", "/dovecot/users", "/x"]
STATUSES = {200, 400, 403, 404, 405, 413, 503}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
policy_fields = st.dictionaries(
    st.sampled_from(["login", "remote", "pwhash", "success", "policy_reject", "tls",
                     "device_id", "protocol", "session_id", "other"]),
    json_values, max_size=8,
)
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    policy_fields.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
    st.integers(1, 40).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 40).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.sampled_from([b"[" * 16_000, b"1" * 5000, b" " * (MAX_BODY_BYTES + 1), b""]),
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@given(data=st.one_of(bodies, json_values.map(lambda v: json.dumps(v).encode())))
@fuzz_settings(1000)
def test_json_is_loaded_or_refused_never_recursing(data: bytes) -> None:
    try:
        value = load_json(data)
    except JSONBodyError:
        return
    assert value == json.loads(data)
    assert depth_of(value) <= MAX_JSON_DEPTH


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    holder = SnapshotHolder(current=Snapshot.build(mail_data()))
    app = create_http_app(holder, LookupdMetrics(), auth_policy=AuthPolicy(),
                          auth_policy_api_key=KEY)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield client


def check_answer(status: int, content_type: str, content: bytes, path: str) -> None:
    assert status in STATUSES, (status, content[:200])
    if path.startswith("/metrics") and status == 200:
        return
    assert content_type.startswith("application/json"), content_type
    answer = json.loads(content)
    if path.startswith("/dovecot/auth-policy?command=allow") and status == 200:
        assert isinstance(answer["status"], int) and isinstance(answer["msg"], str)
    elif path.startswith("/dovecot/auth-policy?command=report") and status == 200:
        assert answer == {}
    elif status != 200:
        assert isinstance(answer["error"], str)


@given(path=st.sampled_from(PATHS), data=bodies, chunked=st.booleans(),
       method=st.sampled_from(["POST", "GET", "PUT"]))
@fuzz_settings(1200)
def test_every_body_gets_a_defined_answer(
    client: TestClient, path: str, data: bytes, chunked: bool, method: str
) -> None:
    content: Any = iter([data[:100], data[100:]]) if chunked else data
    answer = client.request(method, path, content=content, headers={"X-API-Key": KEY})
    check_answer(answer.status_code, answer.headers.get("content-type", ""), answer.content,
                 path)
    if len(data) > MAX_BODY_BYTES:
        assert answer.status_code == 413


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp) as process:
        yield process


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def raw_request(method: bytes, path: bytes, headers: list[bytes], body: bytes,
                framing: str) -> bytes:
    if framing == "length":
        headers = [*headers, b"Content-Length: %d" % len(body)]
    elif framing == "chunked":
        headers = [*headers, b"Transfer-Encoding: chunked"]
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                        for part in (body[:50], body[50:]) if part) + b"0\r\n\r\n"
    else:
        body = b""
    return (method + b" " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            + b"".join(header + b"\r\n" for header in headers) + b"\r\n" + body)


header_lines = st.lists(st.one_of(
    st.sampled_from([b"Content-Type: application/json", b"X-API-Key: nope",
                     b"Content-Length: 99999999999999999999", b"Content-Length: x",
                     b"Transfer-Encoding: gzip", b"Expect: 100-continue"]),
    st.binary(max_size=30).map(lambda h: h.replace(b"\r", b"").replace(b"\n", b"")),
), max_size=3)


def test_a_real_lookupd_fed_garbage(daemon: LookupdProcess) -> None:
    def other_client() -> bool:
        answer = exchange(daemon.http, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n", half_close=False)
        return answer.startswith(b"HTTP/1.1 200 ")

    @given(method=st.sampled_from([b"POST", b"GET", b"PATCH", b"\xff"]),
           path=st.one_of(st.sampled_from([p.encode() for p in PATHS]),
                          st.binary(max_size=20).map(lambda p: b"/" + p.replace(b" ", b""))),
           headers=header_lines, body=bodies, framing=st.sampled_from(["length", "chunked", ""]))
    @fuzz_settings(400)
    def garbage(method: bytes, path: bytes, headers: list[bytes], body: bytes,
                framing: str) -> None:
        request = raw_request(method, path, headers, body, framing)
        answer = exchange(daemon.http, request, half_close=False)
        if not answer and framing and len(body) > MAX_BODY_BYTES:
            # Answered 413 and closed with the body unread: the kernel may then reset the
            # connection, and the reset can overtake the answer.
            return
        answer = answer.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")  # an interim answer
        match = STATUS_LINE.match(answer)
        assert match is not None, answer[:200]
        assert int(match.group(1)) in STATUSES, answer[:300]

    with Watch(daemon, other_client) as watch:
        garbage()
    watch.assert_served_and_bounded()
