"""lookupd following a PostgreSQL standby: propagation delay, and lookups through a failover.

Starts a throwaway PostgreSQL primary, migrates it with `dinomail migrate`, fills it in SQL
(default: 1,000 domains, 100,000 mailboxes, 60,000 aliases), makes a streaming-replication
standby of it (`pg_basebackup -R`, another port), and starts `dinomail lookupd` with
`LOOKUPD_DATABASE_URL` naming both servers with `target_session_attrs=prefer-standby` (so it
reads from the standby and polls its change log every `LOOKUPD_POLL_INTERVAL`, default 0.25 s)
and `DATABASE_URL` naming both with `read-write`. Then:

  1. Propagation: changes made on the primary one at a time (an insert, a rename, a delete of a
     mailbox, in turn), each timed from before its statement until lookupd's socketmap gives the
     new answer (polled about every millisecond on one connection). A random pause of 0-300 ms
     between changes, so that changes fall anywhere in the poll interval.
  2. Failover: socketmap clients (one persistent connection each, as Postfix holds them) ask
     without pause for existing mailboxes, aliases and unknown addresses, and check every answer
     against the one given before; after a few seconds the primary is stopped as by a crash
     (`pg_ctl stop -m immediate`), one second later the standby is promoted (`pg_ctl promote`).
     Meanwhile a writer inserts a mailbox every 100 ms through DinoMail's store (SQLAlchemy,
     the admin API's engine) with the multi-host `read-write` URL: when its writes work again,
     and when lookupd answers the first one made on the new primary.

    .venv/bin/python benchmarks/replica_propagation.py [--changes 300] [--clients 4]
        [--domains 1000] [--mailboxes 100000] [--aliases 60000]

Everything listens on loopback; lookupd and both PostgreSQL servers are stopped at the end, also
on error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinomail.store import Store  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

DINOMAIL = Path(sys.executable).with_name("dinomail")
DATABASE = "dinomail"
FILL_SQL = """
SET session_replication_role = replica;
INSERT INTO core_virtualdomain (id, name)
    SELECT d, 'domain' || d || '.example.org' FROM generate_series(1, {domains}) AS d;
SELECT setval(pg_get_serial_sequence('core_virtualdomain', 'id'), {domains});
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT m, (m % {domains}) + 1,
           'user' || m || '@domain' || ((m % {domains}) + 1) || '.example.org',
           '{{PLAIN}}x', 0
    FROM generate_series(1, {mailboxes}) AS m;
SELECT setval(pg_get_serial_sequence('core_virtualuser', 'id'), {mailboxes});
INSERT INTO core_virtualalias (id, domain_id, source, destination)
    SELECT a, (a % {domains}) + 1,
           'alias' || a || '@domain' || ((a % {domains}) + 1) || '.example.org',
           'user' || a || '@domain' || ((a % {domains}) + 1) || '.example.org'
    FROM generate_series(1, {aliases}) AS a;
SELECT setval(pg_get_serial_sequence('core_virtualalias', 'id'), {aliases});
SET session_replication_role = origin;
"""
CHANGE_TIMEOUT = 10.0
POLL = 0.001
BIN = 0.1  # seconds per bucket of the answers-per-second timeline


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


class SocketmapClient:
    """One persistent connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> SocketmapClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def query(self, name: str, key: str) -> str:
        payload = f"{name} {key}".encode()
        self.writer.write(b"%d:%s," % (len(payload), payload))
        length = await self.reader.readuntil(b":")
        data = await self.reader.readexactly(int(length[:-1]) + 1)
        return data[:-1].decode()

    def close(self) -> None:
        self.writer.close()


async def answer_becomes(client: SocketmapClient, name: str, key: str, expected: str,
                         started: float) -> float:
    while True:
        reply = await client.query(name, key)
        if reply == expected:
            return time.perf_counter() - started
        if time.perf_counter() - started > CHANGE_TIMEOUT:
            raise RuntimeError(f"{name} {key}: still {reply!r} after {CHANGE_TIMEOUT} s")
        await asyncio.sleep(POLL)


# --- setup ---------------------------------------------------------------------------------------


@dataclass
class Setup:
    primary: PostgresServer
    standby: PostgresServer
    lookupd: subprocess.Popen[bytes] | None = None
    socketmap_port: int = 0
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp()))

    def url(self, target: str) -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},"
                f"127.0.0.1:{self.standby.port}/{DATABASE}?target_session_attrs={target}")


def prepare(args: argparse.Namespace) -> Setup:
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is not installed"
    primary = PostgresServer(bindir)
    primary.start()
    url = primary.create_database(DATABASE)
    subprocess.run([str(DINOMAIL), "migrate"], env={**os.environ, "DINOMAIL_DATABASE_URL": url},
                   check=True, capture_output=True, timeout=300)
    primary.psql(FILL_SQL.format(domains=args.domains, mailboxes=args.mailboxes,
                                 aliases=args.aliases), DATABASE)
    primary.psql("VACUUM ANALYZE", DATABASE)
    standby = primary.standby()
    standby.start()
    return Setup(primary, standby)


def start_lookupd(setup: Setup) -> float:
    setup.socketmap_port, http_port = free_port(), free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")},
        "DINOMAIL_DATABASE_URL": setup.url("read-write"),
        "DINOMAIL_LOOKUPD_DATABASE_URL": setup.url("prefer-standby"),
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{setup.socketmap_port}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{setup.folder / 'dict.sock'}",
        "DINOMAIL_STATE_DIR": str(setup.folder / "state"),
    }
    log = setup.folder / "lookupd.log"
    started = time.perf_counter()
    with log.open("wb") as stderr:
        setup.lookupd = subprocess.Popen([str(DINOMAIL), "lookupd"], env=environ,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
    while True:
        if setup.lookupd.poll() is not None:
            raise RuntimeError(f"lookupd exited:\n{log.read_text()[-3000:]}")
        if time.perf_counter() - started > 300:
            raise RuntimeError("lookupd did not load")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz",
                                        timeout=1) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics").read().decode()
    assert 'dinomail_lookupd_follow_mode{mode="poll"} 1.0' in metrics, "not following by polling"
    return time.perf_counter() - started


# --- 1. propagation ------------------------------------------------------------------------------


async def propagation(setup: Setup, changes: int) -> dict[str, list[float]]:
    # Committed as a production primary commits (the test server turns synchronous_commit
    # off, which would hold each change up to 3 x wal_writer_delay before the standby sees it).
    connection = await asyncpg.connect(
        host="127.0.0.1", port=setup.primary.port, user="postgres", database=DATABASE,
        server_settings={"synchronous_commit": "on"},
    )
    client = await SocketmapClient.connect(setup.socketmap_port)
    results: dict[str, list[float]] = {"insert": [], "update": [], "delete": []}
    rng = random.Random(7)
    try:
        for number in range(changes // 3):
            key = f"new{number}@domain1.example.org"
            moved = f"moved{number}@domain1.example.org"
            await asyncio.sleep(rng.uniform(0, 0.3))
            started = time.perf_counter()
            row_id = await connection.fetchval(
                "INSERT INTO core_virtualuser (domain_id, email, password, quota) "
                "VALUES (1, $1, '{PLAIN}x', 0) RETURNING id", key)
            results["insert"].append(await answer_becomes(
                client, "mailboxes", key, f"OK domain1.example.org/new{number}/", started))
            await asyncio.sleep(rng.uniform(0, 0.3))
            started = time.perf_counter()
            await connection.execute(
                "UPDATE core_virtualuser SET email = $1 WHERE id = $2", moved, row_id)
            results["update"].append(await answer_becomes(
                client, "mailboxes", moved, f"OK domain1.example.org/moved{number}/", started))
            await asyncio.sleep(rng.uniform(0, 0.3))
            started = time.perf_counter()
            await connection.execute("DELETE FROM core_virtualuser WHERE id = $1", row_id)
            results["delete"].append(await answer_becomes(
                client, "mailboxes", moved, "NOTFOUND ", started))
    finally:
        client.close()
        await connection.close()
    return results


# --- 2. failover ---------------------------------------------------------------------------------


@dataclass
class Tally:
    answers: list[float] = field(default_factory=list)  # when each answer came
    wrong: int = 0  # an answer other than the one given before the failover
    notfound_lost: int = 0  # of those: NOTFOUND for a key that exists
    temp: int = 0
    errors: int = 0  # connections lost


async def ask(port: int, keys: list[tuple[str, str, str]], tally: Tally,
              stop: asyncio.Event) -> None:
    client = await SocketmapClient.connect(port)
    try:
        while not stop.is_set():
            for name, key, expected in keys:
                try:
                    reply = await client.query(name, key)
                except (OSError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    client.close()
                    client = await SocketmapClient.connect(port)
                    continue
                tally.answers.append(time.perf_counter())
                if reply != expected:
                    tally.wrong += 1
                    if reply.startswith("TEMP"):
                        tally.temp += 1
                    elif reply.startswith("NOTFOUND") and expected.startswith("OK"):
                        tally.notfound_lost += 1
    finally:
        client.close()


@dataclass
class Writes:
    attempts: list[tuple[float, bool]] = field(default_factory=list)
    first_after_promotion: str | None = None


async def write_loop(setup: Setup, writes: Writes, promoted: asyncio.Event,
                     stop: asyncio.Event) -> None:
    """What the admin API's engine does: a mailbox inserted every 100 ms."""
    store = Store(setup.url("read-write"))
    number = 0
    try:
        while not stop.is_set():
            number += 1
            key = f"written{number}@domain2.example.org"
            try:
                async with store.write() as conn:
                    await conn.execute(sa.text(
                        "INSERT INTO core_virtualuser (domain_id, email, password, quota) "
                        "VALUES (2, :email, '{PLAIN}x', 0)"), {"email": key})
                writes.attempts.append((time.perf_counter(), True))
                if promoted.is_set() and writes.first_after_promotion is None:
                    writes.first_after_promotion = key
            except Exception:
                writes.attempts.append((time.perf_counter(), False))
            await asyncio.sleep(0.1)
    finally:
        await store.close()


async def failover(setup: Setup, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(8)
    keys: list[tuple[str, str]] = []
    for m in rng.sample(range(1, args.mailboxes + 1), 200):
        keys.append(("mailboxes", f"user{m}@domain{m % args.domains + 1}.example.org"))
    for a in rng.sample(range(1, args.aliases + 1), 100):
        keys.append(("aliases", f"alias{a}@domain{a % args.domains + 1}.example.org"))
    for m in rng.sample(range(args.mailboxes + 1, 2 * args.mailboxes), 100):
        keys.append(("mailboxes", f"user{m}@domain{m % args.domains + 1}.example.org"))
    probe = await SocketmapClient.connect(setup.socketmap_port)
    expected = [(name, key, await probe.query(name, key)) for name, key in keys]
    probe.close()
    found = sum(answer.startswith("OK") for _, _, answer in expected)
    assert found == 300, f"{found} of 300 existing keys found before the failover"
    shares = [expected[i::args.clients] for i in range(args.clients)]
    tally, writes = Tally(), Writes()
    stop, promoted = asyncio.Event(), asyncio.Event()
    begin = time.perf_counter()
    tasks = [asyncio.create_task(ask(setup.socketmap_port, share, tally, stop))
             for share in shares]
    writer = asyncio.create_task(write_loop(setup, writes, promoted, stop))
    await asyncio.sleep(3.0)
    crash = time.perf_counter()
    await asyncio.to_thread(setup.primary.stop, "immediate")
    await asyncio.sleep(1.0)
    promote_started = time.perf_counter()
    await asyncio.to_thread(setup.standby.promote)
    promote_done = time.perf_counter()
    promoted.set()
    while writes.first_after_promotion is None:
        if time.perf_counter() - promote_done > 30:
            raise RuntimeError("no write succeeded within 30 s of the promotion")
        await asyncio.sleep(0.01)
    first_write = next(at for at, ok in writes.attempts if ok and at > promote_done)
    client = await SocketmapClient.connect(setup.socketmap_port)
    number = writes.first_after_promotion.split("@")[0].removeprefix("written")
    seen = await answer_becomes(client, "mailboxes", writes.first_after_promotion,
                                f"OK domain2.example.org/written{number}/", first_write)
    client.close()
    await asyncio.sleep(max(0.0, promote_done + 5.0 - time.perf_counter()))
    stop.set()
    await asyncio.gather(*tasks, writer)
    end = time.perf_counter()

    def rate(start: float, stop_at: float) -> float:
        return sum(start <= at < stop_at for at in tally.answers) / (stop_at - start)

    bins = [0] * (int((end - begin) / BIN) + 1)
    for at in tally.answers:
        bins[int((at - begin) / BIN)] += 1
    outage = [b / BIN for i, b in enumerate(bins[:-1])
              if crash <= begin + i * BIN < promote_done + 1.0]
    failed = [at for at, ok in writes.attempts if not ok]
    return {
        "answers": len(tally.answers), "wrong": tally.wrong, "temp": tally.temp,
        "notfound_lost": tally.notfound_lost, "connection_errors": tally.errors,
        "rate_before": rate(begin, crash), "rate_during": rate(crash, promote_done + 1.0),
        "rate_after": rate(promote_done + 1.0, end),
        "lowest_bin": min(outage) if outage else 0.0,
        "promote_seconds": promote_done - promote_started,
        "writes_back_after_crash": first_write - crash,
        "writes_back_after_promotion": first_write - promote_done,
        "failed_writes": len(failed),
        "first_write_seen": seen,
        "keys": len(expected),
    }


# --- report --------------------------------------------------------------------------------------


def report(args: argparse.Namespace, load: float, results: dict[str, list[float]],
           outcome: dict[str, object], loadavg: tuple[float, float, float]) -> str:
    lines = [
        f"Data: {args.domains:,} domains, {args.mailboxes:,} mailboxes, {args.aliases:,} aliases;"
        f" lookupd loaded them from the standby in {load:.1f} s (start to /healthz 200). "
        f"Load average at start {loadavg[0]:.1f} (2 cores).", "",
        "Propagation, primary to a lookupd polling the standby every 0.25 s (ms):", "",
        "| change | n | p50 | p90 | p99 | max |", "|---|---:|---:|---:|---:|---:|",
    ]
    every = [value for values in results.values() for value in values]
    for kind, values in [*results.items(), ("all", every)]:
        lines.append(
            f"| {kind} | {len(values)} | {1000 * statistics.median(values):.0f} "
            f"| {1000 * percentile(values, 0.9):.0f} | {1000 * percentile(values, 0.99):.0f} "
            f"| {1000 * max(values):.0f} |")
    o = outcome
    lines += [
        "",
        f"Failover ({args.clients} socketmap clients, {o['keys']} keys: 200 mailboxes, "
        "100 aliases, 100 unknown; primary stopped with `-m immediate`, standby promoted 1 s "
        "later):", "",
        "| measure | value |", "|---|---:|",
        f"| answers | {o['answers']:,} |",
        f"| wrong answers | {o['wrong']} |",
        f"| of which NOTFOUND for an existing key | {o['notfound_lost']} |",
        f"| of which TEMP | {o['temp']} |",
        f"| connections lost | {o['connection_errors']} |",
        f"| answers/s before the crash | {o['rate_before']:,.0f} |",
        f"| answers/s from the crash to 1 s after the promotion | {o['rate_during']:,.0f} |",
        f"| answers/s afterwards | {o['rate_after']:,.0f} |",
        f"| lowest 100 ms window during the failover (answers/s) | {o['lowest_bin']:,.0f} |",
        f"| `pg_ctl promote -w` took (s) | {o['promote_seconds']:.2f} |",
        f"| store writes failed (one every 100 ms) | {o['failed_writes']} |",
        f"| first write that worked, after the crash (s) | {o['writes_back_after_crash']:.2f} |",
        "| first write that worked, after the promotion returned (s) | "
        f"{o['writes_back_after_promotion']:.2f} |",
        "| that write answered by lookupd after (ms) | "
        f"{1000 * float(o['first_write_seen']):.0f} |",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    loadavg = os.getloadavg()
    setup = prepare(args)
    try:
        load = start_lookupd(setup)
        results = await propagation(setup, args.changes)
        outcome = await failover(setup, args)
        print(report(args, load, results, outcome, loadavg))
        if args.log:
            print((setup.folder / "lookupd.log").read_text(), file=sys.stderr)
        if setup.lookupd is not None and setup.lookupd.poll() is not None:
            raise RuntimeError("lookupd died")
    finally:
        if setup.lookupd is not None:
            setup.lookupd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                setup.lookupd.wait(30)
            if setup.lookupd.poll() is None:
                setup.lookupd.kill()
        setup.standby.destroy()
        setup.primary.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--aliases", type=int, default=60_000)
    parser.add_argument("--log", action="store_true", help="print lookupd's log at the end")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
