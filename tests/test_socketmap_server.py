"""The socketmap server, in process, over real loopback TCP and unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import signal
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from dinomail.listen import ListenAddress, parse_listen
from lookupd import socketmap
from lookupd.listen import create_server, event_loop_factory
from lookupd.metrics import LookupdMetrics
from lookupd.netstring import MAX_QUERY_BYTES, NetstringParser, encode_netstring
from lookupd.snapshot import Snapshot
from lookupd.socketmap import MAX_REPLY_BYTES, SocketmapServer, start_socketmap_server
from tests.support.postfix import POSTMAP, have_postmap, postmap_config
from tests.support.socketmap_data import mail_data

TIMEOUT = 5.0


class Holder:
    """Stands in for the refresher's holder: `.current` is what the server answers from."""

    def __init__(self, snapshot: Snapshot | None) -> None:
        self.current = snapshot


@pytest.fixture(scope="module")
def loaded_snapshot() -> Snapshot:
    return Snapshot.build(mail_data())


@pytest.fixture
def holder(loaded_snapshot: Snapshot) -> Holder:
    return Holder(loaded_snapshot)


@pytest.fixture
def metrics() -> LookupdMetrics:
    return LookupdMetrics()


@pytest.fixture
async def server(holder: Holder, metrics: LookupdMetrics) -> AsyncIterator[SocketmapServer]:
    server = await start_socketmap_server(
        "127.0.0.1:0", lambda: holder.current, metrics=metrics, idle_timeout=30.0
    )
    yield server
    server.close()
    await server.wait_closed(timeout=1.0)


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = NetstringParser(MAX_REPLY_BYTES + 100)
        self.replies: list[bytes] = []

    @classmethod
    async def connect(cls, address: ListenAddress) -> Client:
        if address.path is not None:
            reader, writer = await asyncio.open_unix_connection(address.path)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer)

    def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(encode_netstring(payload) for payload in payloads))

    async def receive(self, count: int) -> list[bytes]:
        async def read() -> None:
            while len(self.replies) < count:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed by the server")
                self.replies.extend(self.parser.feed(data))

        await asyncio.wait_for(read(), TIMEOUT)
        replies, self.replies = self.replies[:count], self.replies[count:]
        return replies

    async def ask(self, *payloads: bytes) -> list[bytes]:
        self.send(*payloads)
        await self.writer.drain()
        return await self.receive(len(payloads))

    async def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Whether the server closes the connection (EOF or reset) within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def sample(metrics: LookupdMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- replies -------------------------------------------------------------------------------------


REPLIES = [
    (b"domains example.com", b"OK example.com"),
    (b"domains EXAMPLE.org", b"OK example.org"),
    ("domains bücher.example".encode(), b"OK xn--bcher-kva.example"),
    (b"domains example.net", b"NOTFOUND "),
    (b"mailboxes alice@example.com", b"OK example.com/alice/"),
    (b"mailboxes Alice+Tag@Example.com", b"OK example.com/alice/"),
    (b"mailboxes info@example.com", b"NOTFOUND "),
    (b"aliases info@example.com", b"OK alice@example.com,bob@example.net"),
    (b"aliases alice+tag@example.com", b"OK alice+tag@example.com"),
    (b"aliases nobody@example.com", b"OK alice@example.com"),
    (b"aliases bob@example.org", b"OK bob@example.com"),
    (b"aliases example.com", b"NOTFOUND "),
    (b"aliases nobody@example.net", b"NOTFOUND "),
    (b"senders info@example.com", b"OK alice@example.com"),
    (b"senders bob@example.com", b"OK bob@example.com"),
    (b"senders c d@example.com", b"OK alice@example.com"),  # the key may hold spaces
    (b"aliases \xff\xfe@example.com", b"NOTFOUND "),  # not UTF-8
    (b"aliases alice\0@example.com", b"NOTFOUND "),
    (b"mailboxes", b"NOTFOUND "),  # no key at all
    (b"aliases everyone@big.example", b"TEMP result larger than Postfix accepts"),
]


async def test_each_reply_kind(server: SocketmapServer) -> None:
    client = await Client.connect(server.address)
    for request, expected in REPLIES:
        assert await client.ask(request) == [expected], request
    (perm,) = await client.ask(b"virtual alice@example.com")
    assert perm.startswith(b"PERM unknown map name")
    (perm,) = await client.ask(b"")
    assert perm.startswith(b"PERM ")
    await client.close()


async def test_pipelined_requests_are_answered_in_order(server: SocketmapServer) -> None:
    client = await Client.connect(server.address)
    requests = [request for request, _ in REPLIES] * 20
    random.Random(4).shuffle(requests)
    expected = dict(REPLIES)
    assert await client.ask(*requests) == [expected[request] for request in requests]
    await client.close()


async def test_client_that_does_not_read_is_paused_not_buffered(server: SocketmapServer) -> None:
    # 20,000 requests written before any reply is read: the server stops reading while its
    # replies wait, and everything is still answered, in order.
    client = await Client.connect(server.address)
    requests = [b"mailboxes alice@example.com", b"domains example.net"] * 10_000
    client.send(*requests)
    replies, _ = await asyncio.gather(client.receive(len(requests)), client.writer.drain())
    assert replies == [b"OK example.com/alice/", b"NOTFOUND "] * 10_000
    await client.close()


async def test_temp_until_a_snapshot_is_loaded(server: SocketmapServer, holder: Holder,
                                               loaded_snapshot: Snapshot) -> None:
    holder.current = None
    client = await Client.connect(server.address)
    for map_name in (b"domains", b"mailboxes", b"aliases", b"senders"):
        (reply,) = await client.ask(map_name + b" nobody@nowhere.example")
        assert reply.startswith(b"TEMP "), reply
    holder.current = loaded_snapshot
    assert await client.ask(b"mailboxes alice@example.com") == [b"OK example.com/alice/"]
    await client.close()


async def test_a_miss_in_data_saved_on_disk_is_temp(server: SocketmapServer, holder: Holder,
                                                    loaded_snapshot: Snapshot) -> None:
    # Read back from disk while the database is unreachable: a hit is answered, a miss is
    # unknown (the address may exist by now), never NOTFOUND.
    holder.current = Snapshot.build(mail_data(), complete=False)
    client = await Client.connect(server.address)
    assert await client.ask(b"mailboxes alice@example.com") == [b"OK example.com/alice/"]
    for request in (b"mailboxes info@example.com", b"domains example.net",
                    b"aliases nobody@example.net"):
        (reply,) = await client.ask(request)
        assert reply.startswith(b"TEMP "), request
    assert await client.ask(b"aliases \xff@example.com") == [b"NOTFOUND "]  # cannot exist
    await client.close()


async def test_internal_error_is_temp_and_the_connection_lives_on(
    server: SocketmapServer, metrics: LookupdMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Snapshot, email: str) -> bool:
        raise RuntimeError("bug")

    client = await Client.connect(server.address)
    with monkeypatch.context() as patch:
        patch.setattr(Snapshot, "has_mailbox", broken)
        assert await client.ask(b"mailboxes alice@example.com") == [b"TEMP internal error"]
    assert await client.ask(b"mailboxes alice@example.com") == [b"OK example.com/alice/"]
    assert sample(metrics, "dinomail_lookupd_lookup_errors_total", protocol="socketmap",
                  reason="exception") == 1
    await client.close()


async def test_empty_value_is_never_ok(
    server: SocketmapServer, metrics: LookupdMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await Client.connect(server.address)
    for empty in ("", " "):
        monkeypatch.setitem(socketmap.MAPS, b"domains", ("domains", lambda s, k, e=empty: e))
        (reply,) = await client.ask(b"domains example.com")
        assert reply.startswith(b"TEMP "), reply
    assert sample(metrics, "dinomail_lookupd_lookup_errors_total", protocol="socketmap",
                  reason="empty_value") == 2
    await client.close()


async def test_snapshot_source_failure_is_temp(metrics: LookupdMetrics) -> None:
    def source() -> Snapshot:
        raise RuntimeError("holder broken")

    server = await start_socketmap_server("127.0.0.1:0", source, metrics=metrics)
    client = await Client.connect(server.address)
    assert await client.ask(b"domains example.com") == [b"TEMP internal error"]
    await client.close()
    server.close()
    await server.wait_closed()


async def test_longest_key_postfix_sends_is_answered(server: SocketmapServer) -> None:
    client = await Client.connect(server.address)
    key = b"a" * (MAX_QUERY_BYTES - len("@example.com")) + b"@example.com"
    assert len(key) == MAX_QUERY_BYTES
    assert await client.ask(b"mailboxes " + key) == [b"NOTFOUND "]
    await client.close()


# --- bad clients ---------------------------------------------------------------------------------


BAD_INPUT = {
    "random bytes": random.Random(7).randbytes(4096),
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "length does not match": b"5:domains example.com,",
    "missing comma": b"19:domains example.com;",
    "oversized length": b"99999:",
    "oversized payload": encode_netstring(b"aliases " + b"x" * (MAX_QUERY_BYTES + 100)),
    "too many digits": b"0000000000001:x,",
    "good then bad": encode_netstring(b"domains example.com") + b"x:",
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
async def test_bad_input_closes_only_that_connection(
    server: SocketmapServer, metrics: LookupdMetrics, name: str
) -> None:
    good = await Client.connect(server.address)
    bad = await Client.connect(server.address)
    bad.writer.write(BAD_INPUT[name])
    assert await bad.closed_by_server()
    assert await good.ask(b"domains example.com") == [b"OK example.com"]
    fresh = await Client.connect(server.address)
    assert await fresh.ask(b"domains example.com") == [b"OK example.com"]
    assert sample(metrics, "dinomail_lookupd_client_errors_total", protocol="socketmap",
                  reason="malformed") == 1
    for client in (good, bad, fresh):
        await client.close()


async def test_many_idle_connections_do_not_stop_answers(
    server: SocketmapServer, metrics: LookupdMetrics
) -> None:
    count = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 200  # both ends live in this process
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    idle: list[Client] = []
    try:
        for _ in range(count):
            idle.append(await Client.connect(server.address))
        active = await Client.connect(server.address)
        started = time.monotonic()
        for _ in range(50):
            assert await active.ask(b"mailboxes bob@example.com") == [b"OK example.com/bob/"]
        assert time.monotonic() - started < 2.0
        # Some of the idle ones wake up and are answered too.
        for client in idle[::400]:
            assert await client.ask(b"domains example.com") == [b"OK example.com"]
        await eventually(lambda: sample(
            metrics, "dinomail_lookupd_open_connections", protocol="socketmap") == count + 1)
        await active.close()
    finally:
        for client in idle:
            client.writer.close()
    await eventually(lambda: len(server.connections) == 0)
    assert sample(metrics, "dinomail_lookupd_open_connections", protocol="socketmap") == 0


async def test_idle_timeout_closes_quiet_connections(
    holder: Holder, metrics: LookupdMetrics
) -> None:
    server = await start_socketmap_server(
        "127.0.0.1:0", lambda: holder.current, metrics=metrics, idle_timeout=0.3
    )
    quiet = await Client.connect(server.address)
    half = await Client.connect(server.address)
    half.writer.write(b"19:domains ex")  # a request that never completes
    busy = await Client.connect(server.address)
    started = time.monotonic()
    while time.monotonic() - started < 0.6:
        assert await busy.ask(b"domains example.com") == [b"OK example.com"]
        await asyncio.sleep(0.05)
    assert await quiet.closed_by_server(timeout=1.0)
    assert await half.closed_by_server(timeout=1.0)
    assert await busy.ask(b"domains example.com") == [b"OK example.com"]
    assert sample(metrics, "dinomail_lookupd_client_errors_total", protocol="socketmap",
                  reason="idle") == 2
    for client in (quiet, half, busy):
        await client.close()
    server.close()
    await server.wait_closed()


async def test_client_half_close_still_gets_its_replies(server: SocketmapServer) -> None:
    client = await Client.connect(server.address)
    client.send(b"domains example.com", b"mailboxes bob@example.com")
    client.writer.write_eof()
    assert await client.receive(2) == [b"OK example.com", b"OK example.com/bob/"]
    assert await client.closed_by_server()
    await client.close()


# --- shutdown ------------------------------------------------------------------------------------


async def test_sigterm_stops_accepting_and_finishes_requests(holder: Holder) -> None:
    server = await start_socketmap_server("127.0.0.1:0", lambda: holder.current)
    address = server.address
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        idle = await Client.connect(address)
        pipelined = await Client.connect(address)
        midway = await Client.connect(address)
        request = encode_netstring(b"mailboxes alice@example.com")
        midway.writer.write(request[:10])
        await midway.writer.drain()
        await asyncio.sleep(0.05)  # the server has read the first half

        pipelined.send(*[b"domains example.com"] * 100)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), TIMEOUT)
        server.close()

        # Replies to what was already sent arrive, then the connection closes.
        assert await pipelined.receive(100) == [b"OK example.com"] * 100
        assert await pipelined.closed_by_server()
        assert await idle.closed_by_server()
        # A request half received when the signal came is answered, then closed.
        midway.writer.write(request[10:])
        assert await midway.receive(1) == [b"OK example.com/alice/"]
        assert await midway.closed_by_server()
        # No new connections.
        with pytest.raises(OSError):
            await Client.connect(address)
        await asyncio.wait_for(server.wait_closed(timeout=2.0), TIMEOUT)
        assert len(server.connections) == 0
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    for client in (idle, pipelined, midway):
        await client.close()


async def test_shutdown_aborts_a_request_that_never_completes(holder: Holder) -> None:
    server = await start_socketmap_server("127.0.0.1:0", lambda: holder.current)
    stuck = await Client.connect(server.address)
    stuck.writer.write(b"100:domains")
    await stuck.writer.drain()
    await asyncio.sleep(0.05)
    server.close()
    started = time.monotonic()
    await server.wait_closed(timeout=0.2)
    assert time.monotonic() - started < 2.0
    assert await stuck.closed_by_server()
    await stuck.close()


# --- unix sockets, IPv6 --------------------------------------------------------------------------


async def test_unix_socket(holder: Holder, tmp_path: Path) -> None:
    path = tmp_path / "socketmap.sock"
    server = await start_socketmap_server(f"unix:{path}", lambda: holder.current)
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    clients = [await Client.connect(server.address) for _ in range(3)]
    for client in clients:
        assert await client.ask(b"aliases info@example.com", b"domains nowhere.example") == [
            b"OK alice@example.com,bob@example.net", b"NOTFOUND ",
        ]
    bad = await Client.connect(server.address)
    bad.writer.write(b"junk")
    assert await bad.closed_by_server()
    assert await clients[0].ask(b"domains example.com") == [b"OK example.com"]
    for client in [*clients, bad]:
        await client.close()
    server.close()
    await server.wait_closed()
    assert not path.exists()  # the socket file goes with the server


async def test_unix_socket_left_by_a_dead_daemon_is_replaced(holder: Holder,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    server = await start_socketmap_server(f"unix:{path}", lambda: holder.current)
    client = await Client.connect(server.address)
    assert await client.ask(b"domains example.com") == [b"OK example.com"]
    await client.close()
    server.close()
    await server.wait_closed()


async def test_unix_socket_in_use_or_not_a_socket_is_refused(holder: Holder,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "busy.sock"
    first = await start_socketmap_server(f"unix:{path}", lambda: holder.current)
    with pytest.raises(OSError, match="another process"):
        await start_socketmap_server(f"unix:{path}", lambda: holder.current)
    first.close()
    await first.wait_closed()
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        await start_socketmap_server(f"unix:{regular}", lambda: holder.current)
    assert regular.read_text() == "keep me"


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_loopback(holder: Holder) -> None:
    server = await start_socketmap_server("[::1]:0", lambda: holder.current)
    assert server.address.host == "::1"
    client = await Client.connect(server.address)
    assert await client.ask(b"domains example.com") == [b"OK example.com"]
    await client.close()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:10027", ListenAddress(host="127.0.0.1", port=10027)),
        ("localhost:0", ListenAddress(host="localhost", port=0)),
        ("[::1]:10027", ListenAddress(host="::1", port=10027)),
        ("0.0.0.0:25", ListenAddress(host="0.0.0.0", port=25)),
        ("unix:/run/dinomail/socketmap.sock", ListenAddress(path="/run/dinomail/socketmap.sock")),
        ("unix:relative.sock", ListenAddress(path="relative.sock")),
    ],
)
def test_parse_listen(value: str, expected: ListenAddress) -> None:
    address = parse_listen(value)
    assert address == expected
    assert str(address) == value


@pytest.mark.parametrize(
    "value", ["10027", ":10027", "::1:10027", "[::1:10027", "::1]:10027", "[]:1", "host:",
              "host:port", "host:65536", "host:-1", "unix:", ""],
)
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


async def test_create_server_serves_any_protocol(tmp_path: Path) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

    listener = await create_server(Echo, parse_listen(f"unix:{tmp_path / 'echo.sock'}"))
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "echo.sock"))
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()
    listener.close()
    await listener.wait_closed()


# --- metrics -------------------------------------------------------------------------------------


async def test_lookups_are_counted(server: SocketmapServer, metrics: LookupdMetrics,
                                   holder: Holder) -> None:
    client = await Client.connect(server.address)
    await client.ask(b"domains example.com", b"domains example.net", b"bogus x",
                     b"bogus2 y")
    holder.current = None
    await client.ask(b"senders alice@example.com")

    def lookups(map_name: str, result: str) -> float:
        return sample(metrics, "dinomail_lookupd_lookups_total", protocol="socketmap",
                      map=map_name, result=result)

    assert lookups("domains", "ok") == 1
    assert lookups("domains", "notfound") == 1
    assert lookups("unknown", "perm") == 2  # client-chosen names never become labels
    assert lookups("senders", "temp") == 1
    assert sample(metrics, "dinomail_lookupd_lookup_seconds_count", protocol="socketmap") == 5
    assert sample(metrics, "dinomail_lookupd_open_connections", protocol="socketmap") == 1
    await client.close()
    await eventually(lambda: sample(
        metrics, "dinomail_lookupd_open_connections", protocol="socketmap") == 0)


def test_refresh_metrics_and_snapshot_age() -> None:
    now = [100.0]
    metrics = LookupdMetrics(clock=lambda: now[0])
    now[0] = 130.0
    assert metrics.current_snapshot_age() == 30.0  # nothing loaded: age since start
    metrics.record_refresh("full", ok=True, seconds=2.5)
    metrics.set_snapshot_rows(Snapshot.build(mail_data()).row_counts())
    now[0] = 131.5
    assert sample(metrics, "dinomail_lookupd_snapshot_age_seconds") == 1.5
    metrics.record_refresh("incremental", ok=False, seconds=0.0)
    metrics.record_database_error()
    now[0] = 140.0
    assert metrics.current_snapshot_age() == 10.0  # a failed refresh does not reset it
    metrics.mark_snapshot_current()
    assert metrics.current_snapshot_age() == 0.0
    assert sample(metrics, "dinomail_lookupd_refreshes_total", kind="full", result="ok") == 1
    assert sample(metrics, "dinomail_lookupd_refreshes_total", kind="incremental",
                  result="error") == 1
    assert sample(metrics, "dinomail_lookupd_refresh_seconds_sum", kind="full") == 2.5
    assert sample(metrics, "dinomail_lookupd_database_errors_total") == 1
    assert sample(metrics, "dinomail_lookupd_snapshot_rows", kind="mailboxes") == 2
    assert b"dinomail_lookupd_snapshot_age_seconds" in metrics.exposition()
    # Each daemon has its own registry: a second one does not clash.
    assert LookupdMetrics().registry is not metrics.registry


# --- uvloop --------------------------------------------------------------------------------------


def test_under_the_production_event_loop(loaded_snapshot: Snapshot) -> None:
    # The daemon runs on uvloop when installed; its transports must behave the same.
    async def scenario() -> None:
        server = await start_socketmap_server("127.0.0.1:0", lambda: loaded_snapshot,
                                              idle_timeout=0.3)
        client = await Client.connect(server.address)
        requests = [request for request, _ in REPLIES] * 5
        expected = dict(REPLIES)
        assert await client.ask(*requests) == [expected[request] for request in requests]
        bad = await Client.connect(server.address)
        bad.writer.write(b"x")
        assert await bad.closed_by_server()
        assert await client.closed_by_server(timeout=2.0)  # idle timeout
        busy = await Client.connect(server.address)
        busy.send(*[b"domains example.com"] * 50)
        server.close()
        assert await busy.receive(50) == [b"OK example.com"] * 50
        assert await busy.closed_by_server()
        await server.wait_closed(timeout=1.0)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(scenario())


# --- the real Postfix client ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def postmap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One for the module: postmap's first read of a new main.cf can be slow on some filesystems.
    return postmap_config(tmp_path_factory.mktemp("postfix"))


@pytest.mark.skipif(not have_postmap(), reason="postmap is not installed")
async def test_postmap_queries_the_server(server: SocketmapServer, postmap_dir: Path) -> None:
    config = postmap_dir
    endpoint = f"socketmap:inet:127.0.0.1:{server.address.port}"

    async def postmap(key: str, table: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            POSTMAP, "-c", str(config), "-q", key, f"{endpoint}:{table}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin), TIMEOUT)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    assert await postmap("Alice+tag@Example.com", "mailboxes") == (0, "example.com/alice/\n", "")
    assert await postmap("info@example.com", "aliases") == (
        0, "alice@example.com,bob@example.net\n", "",
    )
    assert await postmap("anna@bücher.example", "mailboxes") == (1, "", "")
    assert (await postmap("example.org", "domains"))[:2] == (0, "example.org\n")
    code, _, err = await postmap("alice@example.com", "virtual")  # unknown map: PERM
    assert code == 1 and "query error" in err

    # One connection, one key per line; only hits are printed.
    keys = "info@example.com\nnobody@example.net\nbob@example.org\nbob@example.com\n"
    assert await postmap("-", "senders", keys.encode()) == (
        0,
        "info@example.com\talice@example.com\n"
        "bob@example.org\tbob@example.com\n"
        "bob@example.com\tbob@example.com\n",
        "",
    )


@pytest.mark.skipif(not have_postmap(), reason="postmap is not installed")
async def test_postmap_sees_a_temporary_failure_before_the_first_load(
    server: SocketmapServer, holder: Holder, postmap_dir: Path
) -> None:
    holder.current = None
    config = postmap_dir
    process = await asyncio.create_subprocess_exec(
        POSTMAP, "-c", str(config), "-q", "alice@example.com",
        f"socketmap:inet:127.0.0.1:{server.address.port}:mailboxes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 1
    assert out == b""
    assert b"query error" in err
