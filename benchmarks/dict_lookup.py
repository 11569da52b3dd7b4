"""Dovecot passdb lookups per second: DinoMail's dict proxy against SQL, at a million mailboxes.

Starts a throwaway PostgreSQL server (or uses --database-url), fills it in SQL with 10,000
domains and 1,000,000 mailboxes, runs `dinomail lookupd` in a subprocess, and has 30 clients
(Dovecot's default `auth_worker_max_count`) look up random mailboxes as Dovecot's passdb does,
each waiting for its answer before asking again:

- `dict persistent`: one dict connection per client, kept open (Dovecot with
  `idle_msecs=60000`, as conf/dovecot/2.3 ships): `L shared/passdb/<user>` → `O<json>`;
- `dict per lookup`: connect, handshake, one lookup, close (Dovecot's default `idle_msecs=0`);
- `SQL`: the same lookups as Dovecot's SQL passdb makes them: one `SELECT` per lookup on
  PostgreSQL, each taking a free connection from a pool. Twice: with 5 connections, the
  `maxconns` default of Dovecot's pgsql driver (its auth process shares that pool between all
  requests), and with 30, one per client, the most a tuned Dovecot would open. asyncpg sends
  prepared statements, cheaper for the database than Dovecot's driver, which sends each query
  as text.

The clients run in separate processes (uvloop), on the same machine as the server and the
database, so on a small machine they take CPU from what they measure; the report says how much.

    .venv/bin/python benchmarks/dict_lookup.py [--mailboxes 1000000] [--clients 30]
        [--client-processes 2] [--seconds 10] [--rounds 3] [--database-url postgresql://...]

Mailboxes are written with the change log triggers off (session_replication_role = replica):
the lookup daemon loads the tables whole at start, and the change log is not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinomail import migrate  # noqa: E402
from dinomail.store import Store  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

DOMAINS = 10_000
SQL_DEFAULT = "SQL, 5 connections"
SQL_WIDE = "SQL, a connection per client"
WARMUP_SECONDS = 1.0
# Clients (and their PostgreSQL backends) stay alive this long after the measured window, so
# that the CPU they used is still in /proc when it is read at the window's end.
HOLD_SECONDS = 1.0

FILL_SQL = """
SET session_replication_role = replica;
INSERT INTO core_virtualdomain (id, name)
    SELECT d, 'domain' || d || '.example.org' FROM generate_series(1, :domains) AS d;
SELECT setval(pg_get_serial_sequence('core_virtualdomain', 'id'), :domains);
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT m, (m % :domains) + 1,
           'user' || m || '@domain' || ((m % :domains) + 1) || '.example.org',
           '{SHA512-CRYPT}$6$' || lpad(to_hex(m), 16, '0') || '$' || md5(m::text) || md5(m::text),
           1073741824
    FROM generate_series(1, :mailboxes) AS m;
SELECT setval(pg_get_serial_sequence('core_virtualuser', 'id'), :mailboxes);
SET session_replication_role = origin;
"""

# What Dovecot's SQL passdb would be configured with (password_query), with asyncpg's $1 for
# Dovecot's '%u'.
PASSDB_SQL = (
    "SELECT u.email AS \"user\", u.password FROM core_virtualuser u "
    "JOIN core_virtualdomain d ON d.id = u.domain_id "
    "WHERE u.email = $1 AND u.active AND d.active"
)


def email_of(number: int) -> str:
    return f"user{number}@domain{(number % DOMAINS) + 1}.example.org"


async def fill(url: str, mailboxes: int) -> float:
    store = Store(url)
    await migrate.upgrade(store.engine)
    started = time.perf_counter()
    async with store.engine.begin() as conn:
        for statement in filter(str.strip, FILL_SQL.split(";\n")):
            await conn.execute(sa.text(statement), {"domains": DOMAINS, "mailboxes": mailboxes})
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE"))
    await store.close()
    return time.perf_counter() - started


def start_lookupd(
    url: str, dict_socket: Path, http_port: int, state: Path
) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_DICT_LISTEN": f"unix:{dict_socket}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_STATE_DIR": str(state),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dinomail")), "lookupd"],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_loaded(process: subprocess.Popen[bytes], http_port: int, timeout: float = 600) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the lookup daemon did not load its snapshot")


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- clients (each in its own process) ------------------------------------------------------------


# The dict clients use bare non-blocking sockets, as cheap as an asyncio client gets, because
# on two cores every microsecond they spend is taken from the server they measure (Dovecot's
# client is C). The SQL clients use asyncpg, the cheapest PostgreSQL client Python has.


async def _read_line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    reply = await loop.sock_recv(sock, 65536)
    while not reply.endswith(b"\n"):
        more = await loop.sock_recv(sock, 65536)
        if not more:
            raise RuntimeError("the lookup daemon closed the connection")
        reply += more
    return reply


async def _connect(loop: asyncio.AbstractEventLoop, socket_path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, socket_path)
    return sock


async def dict_persistent(socket_path: str, deadline: float, warm_until: float,
                          mailboxes: int, rng: random.Random) -> tuple[int, list[float]]:
    loop = asyncio.get_running_loop()
    sock = await _connect(loop, socket_path)
    await loop.sock_sendall(sock, b"H3\t2\t0\t\tauth\n")
    done, latencies = 0, []
    while (now := time.perf_counter()) < deadline:
        email = email_of(rng.randint(1, mailboxes)).encode()
        await loop.sock_sendall(sock, b"Lshared/passdb/" + email + b"\t" + email + b"\n")
        reply = await _read_line(loop, sock)
        if not reply.startswith(b"O"):
            raise RuntimeError(f"unexpected reply {reply[:80]!r}")
        if now >= warm_until:
            done += 1
            latencies.append(time.perf_counter() - now)
    sock.close()
    return done, latencies


async def dict_per_lookup(socket_path: str, deadline: float, warm_until: float,
                          mailboxes: int, rng: random.Random) -> tuple[int, list[float]]:
    loop = asyncio.get_running_loop()
    done, latencies = 0, []
    while (now := time.perf_counter()) < deadline:
        email = email_of(rng.randint(1, mailboxes)).encode()
        sock = await _connect(loop, socket_path)
        await loop.sock_sendall(
            sock, b"H3\t2\t0\t\tauth\nLshared/passdb/" + email + b"\t" + email + b"\n"
        )
        reply = await _read_line(loop, sock)
        sock.close()
        if not reply.startswith(b"O"):
            raise RuntimeError(f"unexpected reply {reply[:80]!r}")
        if now >= warm_until:
            done += 1
            latencies.append(time.perf_counter() - now)
    return done, latencies


async def sql_lookups(pool: object, deadline: float, warm_until: float,
                      mailboxes: int, rng: random.Random) -> tuple[int, list[float]]:
    done, latencies = 0, []
    while (now := time.perf_counter()) < deadline:
        async with pool.acquire() as conn:  # type: ignore[attr-defined]
            row = await conn.fetchrow(PASSDB_SQL, email_of(rng.randint(1, mailboxes)))
        if row is None:
            raise RuntimeError("a mailbox was not found")
        if now >= warm_until:
            done += 1
            latencies.append(time.perf_counter() - now)
    return done, latencies


async def client_tasks(mode: str, target: str, tasks: int, warm_until: float, deadline: float,
                       mailboxes: int, seed: int, connections: int) -> tuple[int, list[float]]:
    rngs = [random.Random(seed * 1000 + n) for n in range(tasks)]
    if mode == "sql":
        import asyncpg

        pool = await asyncpg.create_pool(target, min_size=connections, max_size=connections)
        try:
            results = await asyncio.gather(*(
                sql_lookups(pool, deadline, warm_until, mailboxes, rng) for rng in rngs
            ))
            await asyncio.sleep(HOLD_SECONDS)
        finally:
            await pool.close()
    else:
        client = dict_persistent if mode == "dict persistent" else dict_per_lookup
        results = await asyncio.gather(*(
            client(target, deadline, warm_until, mailboxes, rng) for rng in rngs
        ))
        await asyncio.sleep(HOLD_SECONDS)
    latencies = [value for _, values in results for value in values]
    return sum(done for done, _ in results), latencies


def client_process(arguments: tuple[str, str, int, float, float, int, int, int],
                   results: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    try:
        import uvloop
    except ImportError:
        results.put(asyncio.run(client_tasks(*arguments)))
    else:
        results.put(uvloop.run(client_tasks(*arguments)))


def cpu_by_process(lookupd_pid: int, client_pids: set[int],
                   database: bytes) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by the lookup daemon, the clients, and the PostgreSQL backends
    serving `database`, by process. Other PostgreSQL servers on a shared machine (other test
    runs) are not ours, and a process that ended since the last look must not count as a
    negative."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if pid == lookupd_pid:
                found[pid] = ("lookupd", process_cpu_seconds(pid))
            elif pid in client_pids:
                found[pid] = ("clients", process_cpu_seconds(pid))
            else:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    title = cmdline.read()
                # A backend's title: "postgres: <user> <database> <client> <state>".
                if title.startswith(b"postgres: ") and b" " + database + b" " in title:
                    found[pid] = ("postgres", process_cpu_seconds(pid))
        except OSError:
            continue
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def cpu_used(before: dict[int, tuple[str, float]],
             after: dict[int, tuple[str, float]]) -> dict[str, float]:
    groups = {"lookupd": 0.0, "postgres": 0.0, "clients": 0.0}
    for pid, (group, seconds) in after.items():
        groups[group] += seconds - before.get(pid, (group, 0.0))[1]
    return groups


def run_mode(mode: str, target: str, sql_connections: int, args: argparse.Namespace,
             lookupd_pid: int, database: bytes) -> dict[str, float]:
    kind = "sql" if mode.startswith("SQL") else mode
    count = args.client_processes
    per_process = [args.clients // count + (1 if n < args.clients % count else 0)
                   for n in range(count)]
    connections = [max(1, sql_connections // count + (1 if n < sql_connections % count else 0))
                   for n in range(count)]
    # CLOCK_MONOTONIC is one clock for every process: the window is the same for all.
    warm_until = time.perf_counter() + 1.0 + WARMUP_SECONDS
    deadline = warm_until + args.seconds
    queue: multiprocessing.SimpleQueue = multiprocessing.get_context("fork").SimpleQueue()  # type: ignore[type-arg]
    processes = [
        multiprocessing.get_context("fork").Process(
            target=client_process,
            args=((kind, target, tasks, warm_until, deadline, args.mailboxes, n,
                   connections[n]), queue),
        )
        for n, tasks in enumerate(per_process)
    ]
    for process in processes:
        process.start()
    pids = {process.pid for process in processes if process.pid is not None}
    time.sleep(max(0.0, warm_until - time.perf_counter()))
    before = cpu_by_process(lookupd_pid, pids, database)
    machine_before = machine_ticks()
    time.sleep(max(0.0, deadline - time.perf_counter()))
    used = cpu_used(before, cpu_by_process(lookupd_pid, pids, database))
    machine_after = machine_ticks()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    done = sum(count for count, _ in results)
    latencies = sorted(value for _, values in results for value in values)
    measured = {
        "per_second": done / args.seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }
    for group, seconds in used.items():
        measured[f"{group}_cpu"] = seconds / args.seconds
    # Everything that ran, ours and the rest of the machine's work, in cores.
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    measured["machine_busy"] = busy / total * (os.cpu_count() or 1) if total else 0.0
    return measured


def server_cpu_us(result: dict[str, float]) -> float:
    """CPU the answering side (lookup daemon, or PostgreSQL) spent per lookup."""
    return (result["lookupd_cpu"] + result["postgres_cpu"]) / result["per_second"] * 1e6


def round_ratios(rounds: dict[str, list[dict[str, float]]]) -> str:
    """Each dict path against each SQL path within a round (the paths of one round ran minutes
    apart at most, under the same outside load): median and range over the rounds."""
    lines = ["| ratio, within a round | median | range |", "|---|---:|---|"]
    for mode in ("dict persistent", "dict per lookup"):
        for sql in (SQL_DEFAULT, SQL_WIDE):
            values = sorted(
                ours["per_second"] / theirs["per_second"]
                for ours, theirs in zip(rounds[mode], rounds[sql], strict=True)
            )
            lines.append(f"| {mode} / {sql} | {statistics.median(values):.2f} "
                         f"| {values[0]:.2f}–{values[-1]:.2f} |")
    return "\n".join(lines)


def report(results: dict[str, dict[str, float]], args: argparse.Namespace,
           fill_seconds: float, load_seconds: float, load_average: float) -> str:
    default, wide = results[SQL_DEFAULT]["per_second"], results[SQL_WIDE]["per_second"]
    lines = [
        f"{args.mailboxes:,} mailboxes in {DOMAINS:,} domains (filled in {fill_seconds:.0f} s; "
        f"snapshot loaded by lookupd in {load_seconds:.0f} s); {args.clients} clients in "
        f"{args.client_processes} processes, each waiting for its answer; median of "
        f"{args.rounds} rounds of {args.seconds:.0f} s per path, after {WARMUP_SECONDS:.0f} s "
        f"of warm-up each; load average before the run {load_average:.1f}.",
        "",
        "| path | lookups/s | × SQL, 5 conn. | × SQL, conn. per client | p50 ms | p99 ms "
        "| CPU (cores): lookupd | PostgreSQL | clients | machine busy | server CPU µs/lookup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, result in results.items():
        lines.append(
            f"| {mode} | {result['per_second']:,.0f} | {result['per_second'] / default:.2f} "
            f"| {result['per_second'] / wide:.2f} "
            f"| {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | {result['lookupd_cpu']:.2f} "
            f"| {result['postgres_cpu']:.2f} | {result['clients_cpu']:.2f} "
            f"| {result['machine_busy']:.2f} "
            f"| {server_cpu_us(result):.1f} |"
        )
    return "\n".join(lines)


async def prepare(url: str, mailboxes: int) -> float:
    return await fill(url, mailboxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an empty PostgreSQL database to fill")
    args = parser.parse_args()
    load_average = os.getloadavg()[0]  # the machine may be shared: say how busy it was

    server: PostgresServer | None = None
    if args.database_url:
        url = args.database_url
    else:
        bindir = find_bindir()
        if bindir is None:
            sys.exit("PostgreSQL server binaries are not installed")
        server = PostgresServer(bindir)
        server.start()
        url = server.create_database("dict_bench")
    try:
        print(f"filling {args.mailboxes:,} mailboxes ...", flush=True)
        fill_seconds = asyncio.run(prepare(url, args.mailboxes))
        with tempfile.TemporaryDirectory() as state:
            dict_socket = Path(state) / "dict.sock"
            http_port = free_port()
            process = start_lookupd(url, dict_socket, http_port, Path(state))
            try:
                load_seconds = wait_loaded(process, http_port)
                database = urllib.parse.urlsplit(url).path.lstrip("/").encode()
                print(f"lookupd loaded its snapshot in {load_seconds:.0f} s", flush=True)
                targets = {
                    "dict persistent": (str(dict_socket), 0),
                    "dict per lookup": (str(dict_socket), 0),
                    SQL_DEFAULT: (url, 5),
                    SQL_WIDE: (url, args.clients),
                }
                # Rounds alternate the paths, so that a change in the machine's other load
                # (it may be shared) falls on all of them; each path's median round is kept.
                rounds: dict[str, list[dict[str, float]]] = {mode: [] for mode in targets}
                for number in range(1, args.rounds + 1):
                    for mode, (target, connections) in targets.items():
                        result = run_mode(mode, target, connections, args, process.pid,
                                          database)
                        rounds[mode].append(result)
                        print(f"round {number}, {mode}: {result['per_second']:,.0f} lookups/s; "
                              f"CPU lookupd {result['lookupd_cpu']:.2f}, PostgreSQL "
                              f"{result['postgres_cpu']:.2f}, clients {result['clients_cpu']:.2f}, "
                              f"machine {result['machine_busy']:.2f}",
                              flush=True)
                results = {
                    mode: sorted(values, key=lambda r: r["per_second"])[len(values) // 2]
                    for mode, values in rounds.items()
                }
                ratios = round_ratios(rounds)
            finally:
                process.terminate()
                process.wait(30)
        print()
        print(report(results, args, fill_seconds, load_seconds, load_average))
        print()
        print(ratios)
    finally:
        if server is not None:
            server.destroy()


if __name__ == "__main__":
    main()
