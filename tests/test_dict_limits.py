"""Memory bounds of Dovecot dict transactions: bytes held per transaction and per connection.
Once, one connection with 4 open transactions of 1,024 changes of 60 KB took the daemon from
90 to 330 MiB."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lookupd.dovecot.dict import (
    MAX_CONNECTION_TRANSACTION_BYTES,
    MAX_TRANSACTION_BYTES,
    DictServer,
)
from tests.support.dict_client import V3_AUTH, Client
from tests.support.dict_server import Recorder
from tests.support.lookupd_process import (
    LookupdProcess,
    connect,
    lookupd_process,
    mail_database,
    read_until_closed,
)

MiB = 1024 * 1024
VALUE = b"v" * 60_000
QUOTA = b"H3\t2\t0\t\tquota"


async def test_quota_clone_transactions_fit_with_room(server: DictServer, quota: Recorder) -> None:
    client = await Client.connect(server, QUOTA)
    # Sixty-four open transactions of quota_clone's size are fine on one connection.
    for n in range(1, 65):
        client.send(b"B%d\talice@example.com" % n, b"S%d\tpriv/quota/storage\t%d" % (n, n),
                    b"S%d\tpriv/quota/messages\t1" % n)
    replies = await client.ask(*(b"C%d" % n for n in range(1, 65)))
    assert replies == [b"O%d" % n for n in range(1, 65)]
    assert len(quota.accepted) == 64
    await client.close()


async def test_a_transaction_past_its_bound_fails_at_commit(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    client.send(b"B1\t")
    sent = 0
    while sent <= MAX_TRANSACTION_BYTES:
        client.send(b"S1\tshared/x%d\t" % sent + VALUE)
        sent += len(VALUE)
    (reply,) = await client.ask(b"C1")
    assert reply.startswith(b"F1\t")
    assert b"larger than %d bytes" % MAX_TRANSACTION_BYTES in reply
    # The connection goes on.
    (reply,) = await client.ask(b"Lshared/passdb/alice@example.com\talice@example.com")
    assert reply.startswith(b"O")
    await client.close()


async def test_a_connection_holding_too_much_is_closed(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    transactions = MAX_CONNECTION_TRANSACTION_BYTES // len(VALUE) + 1
    for n in range(1, transactions + 1):
        client.send(b"B%d\t" % n, b"S%d\tshared/x\t" % n + VALUE)
    assert await client.closed_by_server()
    other = await Client.connect(server, V3_AUTH)
    (reply,) = await other.ask(b"Lshared/passdb/alice@example.com\talice@example.com")
    assert reply.startswith(b"O")
    await other.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LookupdProcess]:
    tmp = tmp_path_factory.mktemp("lookupd")
    with lookupd_process(mail_database(tmp), tmp) as process:
        yield process


def dict_lookup(path: str) -> bytes:
    with connect(path) as sock:
        sock.sendall(b"H3\t2\t0\t\tauth\nLshared/passdb/alice@example.org\talice@example.org\n")
        return sock.makefile("rb").readline()


def test_the_attack_is_cut_short_and_memory_stays_bounded(daemon: LookupdProcess) -> None:
    """4 open transactions of 1,024 changes of 60 KB on one connection (240 MB sent), while
    another connection keeps asking; the daemon's RSS is watched all along."""
    before = daemon.rss()
    answers: list[bytes] = []
    peak = [before]
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            answers.append(dict_lookup(daemon.dict_path))
            peak[0] = max(peak[0], daemon.rss())
            time.sleep(0.01)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    started = time.monotonic()
    try:
        with connect(daemon.dict_path, timeout=10) as sock:
            try:
                sock.sendall(QUOTA + b"\n" + b"".join(b"B%d\talice@example.org\n" % n
                                                     for n in range(1, 5)))
                for change in range(1024):
                    for n in range(1, 5):
                        sock.sendall(b"S%d\tpriv/quota/x%d\t%s\n" % (n, change, VALUE))
            except (BrokenPipeError, ConnectionResetError):
                closed_early = True  # by the daemon: what is expected
            else:
                closed_early = False
                peak[0] = max(peak[0], daemon.rss())
                sock.shutdown(socket.SHUT_WR)
            read_until_closed(sock)
    finally:
        stop.set()
        asker.join()
    growth = peak[0] - before
    assert growth < 32 * MiB, f"the daemon grew by {growth / MiB:.0f} MiB"
    assert closed_early
    assert time.monotonic() - started < 10
    assert answers and all(answer.startswith(b"O") for answer in answers)
    assert daemon.alive()
    assert dict_lookup(daemon.dict_path).startswith(b"O")
    assert "Traceback" not in daemon.log_text()
