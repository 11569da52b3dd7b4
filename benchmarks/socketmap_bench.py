"""Postfix lookups at a million mailboxes: lookupd against Postfix's own pgsql map (issue 4).

Starts a throwaway PostgreSQL server, migrates it with `dinomail migrate`, fills it in SQL
(default: 10,000 domains, 1,000,000 mailboxes, 1,000,000 aliases), then compares, with the real
`postmap -q - TABLE < keys` as the client (one connection per process, one key per line, as
Postfix's own programs ask):

  (a) `dinomail lookupd`, map `mailboxes`, over socketmap;
  (b) Postfix's `pgsql:` map with the original documentation's virtual-mailbox-maps query,
      `SELECT 1 FROM core_virtualuser WHERE email='%s'`, on the same database;
  (c) a socketmap server answering a constant (`benchmarks/constant_socketmap.py`): the floor
      of the transport, what any socketmap server on this event loop costs.

With `--workers 1,2`, (a) runs once per worker count (a1, a2: `LOOKUPD_WORKERS`, both daemons
started side by side on the same data). Server CPU per lookup is measured over the whole process
tree: lookupd's supervisor and workers, and PostgreSQL's postmaster with its backends (which exit
with their postmap client and are counted through the postmaster's cutime/cstime).

The same keys (half existing mailboxes, half unknown addresses in existing domains, shuffled) go
to each, split over 1, 4 and 16 postmap processes started together; lookups/s is all keys over the
wall time until the last process exits. Runs of (a), (b), (c) at one client count follow each
other, in an order rotated every round, so that they share the machine's conditions; ratios are
taken within a round and the median over rounds is reported.

It also reports lookupd's cold load (process start until `/healthz` answers 200), its resident
memory after the load and at its peak, and change propagation: mailboxes inserted and deleted
one at a time in SQL, each timed from before its statement until the socketmap gives the new
answer (polled about every millisecond on one connection). With `--profile`, one more 4-client
run of (a) is sampled with py-spy and the busiest functions are printed.

    .venv/bin/python benchmarks/socketmap_bench.py [--keys 200000] [--rounds 3]
        [--clients 1,4,16] [--workers 1] [--changes 200] [--profile]
        [--domains 10000] [--mailboxes 1000000] [--aliases 1000000]

Triggers are off while filling (session_replication_role = replica): the lookup daemon's first
load is a full load whatever the change log holds, and 2 million log rows would only slow the
filling. Everything listens on loopback; every process and the PostgreSQL server are stopped at
the end, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port  # noqa: E402
from tests.support.postfix import POSTMAP, postmap_config  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

DINOMAIL = Path(sys.executable).with_name("dinomail")
PY_SPY = Path(sys.executable).with_name("py-spy")
CONSTANT_SERVER = Path(__file__).with_name("constant_socketmap.py")

MAP = "mailboxes"
# The original documentation's virtual-mailbox-maps query (section 3.1.1).
PGSQL_QUERY = "SELECT 1 FROM core_virtualuser WHERE email='%s'"
# `{SHA512-CRYPT}$6$<16 salt>$<86 hash>`: 120 characters, as Dovecot's default scheme stores.
PASSWORD_SQL = (
    "'{SHA512-CRYPT}$6$' || lpad(to_hex(m), 16, '0') || '$' || "
    "left(md5(m::text) || md5((m + 1)::text) || md5((m + 2)::text), 86)"
)
# The addresses follow benchmarks/api_latency.py, so that the two fills look alike.
FILL_SQL = """
SET session_replication_role = replica;
INSERT INTO core_virtualdomain (id, name)
    SELECT d, 'domain' || d || '.example.org' FROM generate_series(1, {domains}) AS d;
SELECT setval(pg_get_serial_sequence('core_virtualdomain', 'id'), {domains});
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT m, (m % {domains}) + 1,
           'firstname.lastname' || m || '@domain' || ((m % {domains}) + 1) || '.example.org',
           {password}, 1073741824
    FROM generate_series(1, {mailboxes}) AS m;
SELECT setval(pg_get_serial_sequence('core_virtualuser', 'id'), {mailboxes});
-- Three aliases in four forward to a local mailbox, one leaves the server.
INSERT INTO core_virtualalias (id, domain_id, source, destination)
    SELECT a, (a % {domains}) + 1,
           'alias' || a || '@domain' || ((a % {domains}) + 1) || '.example.org',
           CASE WHEN a % 4 = 0 THEN 'someone' || a || '@elsewhere.example.net'
                ELSE 'firstname.lastname' || ((a - 1) % {mailboxes} + 1) || '@domain'
                     || (((a - 1) % {mailboxes} + 1) % {domains} + 1) || '.example.org' END
    FROM generate_series(1, {aliases}) AS a;
SELECT setval(pg_get_serial_sequence('core_virtualalias', 'id'), {aliases});
SET session_replication_role = origin;
"""

LOAD_TIMEOUT = 300.0
RUN_TIMEOUT = 600.0
CHANGE_TIMEOUT = 10.0  # above the refresher's 5 s safety poll, so a missed wake-up shows
POLL_INTERVAL = 0.001
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def address(number: int, domains: int) -> str:
    return f"firstname.lastname{number}@domain{number % domains + 1}.example.org"


# --- processes -----------------------------------------------------------------------------------


class Processes:
    """Every long-running process the benchmark starts, stopped by pid at the end."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **options: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, **options)  # type: ignore[call-overload]
        self._started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def stop_all(self) -> None:
        for process in reversed(self._started):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop(process)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM … of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.startswith("Vm") and rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # utime, stime


def tree_cpu_split(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and every descendant, the exited ones included
    (a parent that reaped them counts them in its cutime/cstime)."""
    parents: dict[int, int] = {}
    seconds: dict[int, tuple[float, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        ticks = [int(v) for v in fields[11:15]]  # utime, stime, cutime, cstime
        seconds[int(entry.name)] = ((ticks[0] + ticks[2]) / CLOCK_TICKS,
                                    (ticks[1] + ticks[3]) / CLOCK_TICKS)
    user = system = 0.0
    for pid, (own_user, own_system) in seconds.items():
        ancestor = pid
        while ancestor and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            user += own_user
            system += own_system
    return user, system


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- the database --------------------------------------------------------------------------------


def migrate(url: str) -> None:
    subprocess.run([str(DINOMAIL), "migrate"], env={**os.environ, "DINOMAIL_DATABASE_URL": url},
                   check=True, capture_output=True, timeout=300)


def fill(server: PostgresServer, database: str, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    server.psql(FILL_SQL.format(domains=args.domains, mailboxes=args.mailboxes,
                                aliases=args.aliases, password=PASSWORD_SQL), database)
    # Visibility map set and statistics fresh: the pgsql map gets index-only scans, as a
    # long-running server would after autovacuum.
    server.psql("VACUUM ANALYZE", database)
    return time.perf_counter() - started


# --- keys and postmap runs -----------------------------------------------------------------------


def make_keys(args: argparse.Namespace) -> tuple[list[str], int]:
    """Half existing mailboxes, half unknown addresses in existing domains, shuffled."""
    rng = random.Random(4)
    hits = rng.sample(range(1, args.mailboxes + 1), args.keys // 2)
    misses = rng.sample(range(args.mailboxes + 1, 2 * args.mailboxes + 1),
                        args.keys - len(hits))
    keys = [address(n, args.domains) for n in hits + misses]
    rng.shuffle(keys)
    return keys, len(hits)


def split_keys(keys: list[str], parts: int, folder: Path, name: str = "keys") -> list[Path]:
    files = []
    for part in range(parts):
        path = folder / f"{name}-{parts}-{part}.txt"
        path.write_text("".join(key + "\n" for key in keys[part::parts]))
        files.append(path)
    return files


@dataclass
class Run:
    seconds: float
    hits: int
    # CPU seconds of the server's processes, user and system (lookupd's supervisor and
    # workers; PostgreSQL's postmaster and backends). Its system time is mostly the loopback
    # TCP path, the same for any server; its user time is what the server itself does.
    server_user: float | None
    server_sys: float | None
    clients_cpu: float  # CPU seconds of the postmap processes together
    machine_busy: float  # share of both cores busy during the run, anything included


def run_postmap(table: str, key_files: list[Path], config: Path, folder: Path,
                server_pid: int | None) -> Run:
    outputs = [folder / f"out-{n}.txt" for n in range(len(key_files))]
    errors = [folder / f"err-{n}.txt" for n in range(len(key_files))]
    server_before = tree_cpu_split(server_pid) if server_pid else (0.0, 0.0)
    children_before = children_cpu()
    busy_before, total_before = machine_busy()
    started = time.perf_counter()
    processes = []
    for keys, output, error in zip(key_files, outputs, errors, strict=True):
        with keys.open("rb") as stdin, output.open("wb") as stdout, error.open("wb") as stderr:
            processes.append(subprocess.Popen(
                [POSTMAP, "-c", str(config), "-q", "-", table],
                stdin=stdin, stdout=stdout, stderr=stderr,
            ))
    try:
        for process in processes:
            process.wait(max(1.0, RUN_TIMEOUT - (time.perf_counter() - started)))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seconds = time.perf_counter() - started
    busy_after, total_after = machine_busy()
    server_user = server_sys = None
    if server_pid:
        server_after = tree_cpu_split(server_pid)
        server_user = server_after[0] - server_before[0]
        server_sys = server_after[1] - server_before[1]
    problems = "".join(path.read_text() for path in errors).strip()
    if problems:
        raise RuntimeError(f"postmap {table}:\n{problems[:2000]}")
    hits = 0
    for path in outputs:
        with path.open("rb") as lines:
            hits += sum(1 for _ in lines)
    return Run(seconds, hits, server_user, server_sys, children_cpu() - children_before,
               (busy_after - busy_before) / max(1, total_after - total_before))


# --- lookupd -------------------------------------------------------------------------------------


@dataclass
class Lookupd:
    process: subprocess.Popen[bytes]
    socketmap_port: int
    http_port: int
    log: Path
    cold_load: float = 0.0
    logged_load: float | None = None
    status_after_load: dict[str, int] = field(default_factory=dict)
    workers: list[int] = field(default_factory=list)  # their pids (the process itself alone)
    worker_rss_after_load: list[int] = field(default_factory=list)  # KiB


def worker_pids(supervisor: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(stat[1]) == supervisor:
                    pids.append(int(entry.name))
    return sorted(pids)


def start_lookupd(processes: Processes, url: str, folder: Path, workers: int = 1) -> Lookupd:
    socketmap_port, http_port = free_port(), free_port()
    name = f"lookupd-{workers}"
    state = folder / f"{name}-state"
    state.mkdir()
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{socketmap_port}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{folder / (name + '-dict.sock')}",
        "DINOMAIL_STATE_DIR": str(state),
        "DINOMAIL_LOOKUPD_WORKERS": str(workers),
    }
    log = folder / f"{name}.log"
    started = time.perf_counter()
    with log.open("wb") as stderr:
        process = processes.start([str(DINOMAIL), "lookupd"], env=environ,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    daemon = Lookupd(process, socketmap_port, http_port, log)
    health = f"http://127.0.0.1:{http_port}/healthz"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"lookupd exited:\n{log.read_text()[-3000:]}")
        if time.perf_counter() - started > LOAD_TIMEOUT:
            raise RuntimeError(f"lookupd not loaded after {LOAD_TIMEOUT:.0f} s")
        try:
            with urllib.request.urlopen(health, timeout=1) as response:
                # With workers, /healthz is any one worker's: wait for every worker's load.
                if response.status == 200 and (
                        workers == 1 or log.read_text().count("snapshot loaded") >= workers):
                    break
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 503 while loading
        time.sleep(0.02)
    daemon.cold_load = time.perf_counter() - started
    daemon.status_after_load = proc_status(process.pid)
    daemon.workers = worker_pids(process.pid) if workers > 1 else [process.pid]
    daemon.worker_rss_after_load = [proc_status(pid).get("VmRSS", 0) for pid in daemon.workers]
    for _ in range(50):  # the line is written just after the snapshot is swapped in
        found = re.search(r"snapshot loaded in ([0-9.]+) s", log.read_text())
        if found:
            daemon.logged_load = float(found.group(1))
            break
        time.sleep(0.1)
    return daemon


# --- propagation ---------------------------------------------------------------------------------


class SocketmapClient:
    """One persistent connection, one request at a time, as a Postfix process holds."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

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


async def wait_for_answer(client: SocketmapClient, key: str, found: bool, started: float,
                          ) -> float:
    while True:
        reply = await client.query(MAP, key)
        if reply.startswith("OK ") == found and (found or reply.startswith("NOTFOUND")):
            return time.perf_counter() - started
        if time.perf_counter() - started > CHANGE_TIMEOUT:
            raise RuntimeError(f"{key}: still {reply!r} after {CHANGE_TIMEOUT} s")
        await asyncio.sleep(POLL_INTERVAL)


async def propagation(url: str, port: int, changes: int) -> dict[str, list[float]]:
    """Seconds from before each change's statement until the socketmap answers the new state:
    'one at a time' (each change after the previous is visible) and 'two in a row' (a second
    change 0-10 ms after a first, as a script or a busy admin makes them, timed for the
    second: it may commit while the refresher is busy with the first)."""
    connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    client = await SocketmapClient.connect(port)
    insert = ("INSERT INTO core_virtualuser (domain_id, email, password, quota) "
              "VALUES (1, $1, $2, 0) RETURNING id")
    secret = "{SHA512-CRYPT}$6$" + "0" * 16 + "$" + "x" * 86
    results: dict[str, list[float]] = {"insert": [], "delete": [], "two in a row": []}
    rng = random.Random(5)
    try:
        for number in range(changes // 2):
            key = f"propagation{number}@domain1.example.org"
            started = time.perf_counter()
            row_id = await connection.fetchval(insert, key, secret)
            results["insert"].append(await wait_for_answer(client, key, True, started))
            started = time.perf_counter()
            await connection.execute("DELETE FROM core_virtualuser WHERE id = $1", row_id)
            results["delete"].append(await wait_for_answer(client, key, False, started))
        for number in range(changes // 2):
            first, second = (f"burst{number}.{n}@domain1.example.org" for n in (1, 2))
            first_id = await connection.fetchval(insert, first, secret)
            await asyncio.sleep(rng.uniform(0, 0.010))
            started = time.perf_counter()
            second_id = await connection.fetchval(insert, second, secret)
            results["two in a row"].append(await wait_for_answer(client, second, True, started))
            await wait_for_answer(client, first, True, started)
            await connection.execute("DELETE FROM core_virtualuser WHERE id = ANY($1::int[])",
                                     [first_id, second_id])
            await wait_for_answer(client, second, False, time.perf_counter())
    finally:
        client.close()
        await connection.close()
    return results


# --- profile -------------------------------------------------------------------------------------


def profile_run(processes: Processes, pid: int, table: str, key_files: list[Path],
                config: Path, folder: Path) -> tuple[Run, str]:
    """One more run of (a) sampled by py-spy; the busiest functions, by own and total time."""
    raw = folder / "profile.txt"
    spy = processes.start([str(PY_SPY), "record", "--pid", str(pid), "--format", "raw",
                           "--function", "--rate", "500", "--output", str(raw)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    run = run_postmap(table, key_files, config, folder, pid)
    processes.stop(spy, signal.SIGINT)  # py-spy writes its output on SIGINT
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [f"py-spy: {samples} samples of lookupd while busy (idle excluded), "
             f"{len(key_files)} clients.", "",
             "| function | own % | total % |", "|---|---:|---:|"]
    shown = [name for name, _ in own.most_common(14)]
    shown += [name for name, _ in total.most_common(30) if name not in shown][:8]
    for name in shown:
        lines.append(f"| `{_short(name)}` | {100 * own[name] / samples:.1f} "
                     f"| {100 * total[name] / samples:.1f} |")
    return run, "\n".join(lines)


def _short(frame: str) -> str:
    return re.sub(r"\(/.*?/((site-packages|lib/python3\.\d+|main)/)", "(", frame)


# --- report --------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions(server: PostgresServer, config: Path) -> str:
    postgres = server.psql("SHOW server_version").strip()
    postfix = subprocess.run(["postconf", "-c", str(config), "-h", "-d", "mail_version"],
                             capture_output=True, text=True).stdout.strip()
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return (f"Python {platform.python_version()}, {loop}, PostgreSQL {postgres}, "
            f"Postfix {postfix}, Linux {platform.release()}")


LABELS = {"b": "(b) pgsql:", "c": "(c) constant"}


def _label(kind: str) -> str:
    return LABELS.get(kind) or f"({kind}) lookupd, {kind[1:]} worker{'s' if kind != 'a1' else ''}"


def report(runs: dict[tuple[str, int], list[Run]], kinds: list[str], clients: list[int],
           keys: int, daemons: dict[str, Lookupd], status_end: dict[str, list[dict[str, int]]],
           changes: dict[str, list[float]]) -> str:
    def rate(run: Run) -> float:
        return keys / run.seconds

    lookupds = [kind for kind in kinds if kind.startswith("a")]
    pairs = [(a, other) for a in lookupds for other in "bc"]
    out = ["| clients | " + " | ".join(_label(k) for k in kinds) + " | "
           + " | ".join(f"{a}/{o}" for a, o in pairs) + " |",
           "|---:|" + "---:|" * (len(kinds) + len(pairs))]
    for count in clients:
        cells = [f"{statistics.median(rate(r) for r in runs[kind, count]):,.0f}"
                 for kind in kinds]
        ratios = []
        for a, other in pairs:
            per_round = [rate(x) / rate(o) for x, o in
                         zip(runs[a, count], runs[other, count], strict=True)]
            ratios.append(f"{statistics.median(per_round):.2f} "
                          f"({min(per_round):.2f}–{max(per_round):.2f})")
        out.append(f"| {count} | " + " | ".join(cells + ratios) + " |")
    out += ["", "Server CPU per lookup, user + system (median over rounds, µs; lookupd: "
            "supervisor and workers; PostgreSQL: postmaster and backends); postmap's CPU per "
            "lookup; machine busy = share of both cores:", "",
            "| clients | " + " | ".join(f"{_label(k)} server" for k in kinds)
            + " | lookupd ÷ PostgreSQL | " + " | ".join(f"postmap ({k})" for k in kinds)
            + " | machine busy |",
            "|---:|" + "---:|" * (2 * len(kinds) + 1) + "---|"]
    for count in clients:
        def per_key(values: list[float | None]) -> float:
            return statistics.median(v or 0.0 for v in values) / keys * 1e6

        server = {kind: (per_key([r.server_user for r in runs[kind, count]]),
                         per_key([r.server_sys for r in runs[kind, count]])) for kind in kinds}
        postmap = [per_key([r.clients_cpu for r in runs[kind, count]]) for kind in kinds]
        busy = " / ".join(f"{100 * statistics.median(r.machine_busy for r in runs[k, count]):.0f}%"
                          for k in kinds)
        versus = " / ".join(f"{sum(server[a]) / max(1e-9, sum(server['b'])):.2f}"
                            for a in lookupds)
        out.append(f"| {count} | "
                   + " | ".join(f"{server[k][0]:.1f} + {server[k][1]:.1f}" for k in kinds)
                   + f" | {versus} | " + " | ".join(f"{value:.1f}" for value in postmap)
                   + f" | {busy} |")
    out.append("")
    for kind in lookupds:
        daemon = daemons[kind]
        end = status_end[kind]
        def mib(values: list[int]) -> str:
            return ", ".join(f"{value / 1024:.0f}" for value in values)

        supervisor = daemon.status_after_load.get("VmRSS", 0) / 1024
        out.append(
            f"{_label(kind)}: cold load {daemon.cold_load:.1f} s to `/healthz` 200 (refresher "
            f"log: snapshot loaded in {daemon.logged_load} s); VmRSS per worker "
            f"{mib(daemon.worker_rss_after_load)} MiB after the load, "
            f"{mib([status.get('VmRSS', 0) for status in end])} MiB at the end (peak VmHWM "
            f"{mib([status.get('VmHWM', 0) for status in end])} MiB)"
            + (f"; the supervisor {supervisor:.0f} MiB." if len(daemon.workers) > 1 else "."))
    out += ["", "| propagation | changes | p50 ms | p99 ms | max ms | over 1 s |",
            "|---|---:|---:|---:|---:|---:|"]
    one_at_a_time = changes["insert"] + changes["delete"]
    for label, values in (("one at a time (insert, delete alternating)", one_at_a_time),
                          ("inserts", changes["insert"]), ("deletes", changes["delete"]),
                          ("second of two inserts 0–10 ms apart", changes["two in a row"])):
        if values:
            out.append(f"| {label} | {len(values)} | {1000 * percentile(values, 0.5):.1f} "
                       f"| {1000 * percentile(values, 0.99):.1f} | {1000 * max(values):.1f} "
                       f"| {sum(1 for value in values if value > 1.0)} |")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so that the finally clauses clean up."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def benchmark(args: argparse.Namespace, server: PostgresServer, processes: Processes,
              folder: Path) -> None:
    clients = [int(n) for n in args.clients.split(",")]
    workers = [int(n) for n in args.workers.split(",")]
    started = time.perf_counter()
    database = "dinomail_bench"
    url = server.create_database(database)
    migrate(url)
    print(f"filling {args.domains:,} domains, {args.mailboxes:,} mailboxes, "
          f"{args.aliases:,} aliases ...", flush=True)
    filled = fill(server, database, args)
    print(f"filled in {filled:.0f} s", flush=True)

    config = postmap_config(folder / "postfix")
    pgsql_cf = config / "virtual-mailbox-maps.cf"
    pgsql_cf.write_text(f"user = postgres\nhosts = 127.0.0.1:{server.port}\n"
                        f"dbname = {database}\nquery = {PGSQL_QUERY}\n")
    keys, expected_hits = make_keys(args)
    key_files = {count: split_keys(keys, count, folder) for count in clients}

    constant_port = free_port()
    constant = processes.start([sys.executable, str(CONSTANT_SERVER), "127.0.0.1",
                                str(constant_port)])
    wait_for_port(constant_port, constant)
    daemons: dict[str, Lookupd] = {}
    for count in workers:
        print(f"starting lookupd with {count} worker(s) ...", flush=True)
        daemons[f"a{count}"] = start_lookupd(processes, url, folder, count)
        print(f"loaded in {daemons[f'a{count}'].cold_load:.1f} s", flush=True)
    lookupd = next(iter(daemons.values()))
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])

    kinds = {
        **{kind: (f"socketmap:inet:127.0.0.1:{daemon.socketmap_port}:{MAP}", daemon.process.pid)
           for kind, daemon in daemons.items()},
        "b": (f"pgsql:{pgsql_cf}", postmaster),
        "c": (f"socketmap:inet:127.0.0.1:{constant_port}:{MAP}", constant.pid),
    }
    expected = {**dict.fromkeys(daemons, expected_hits), "b": expected_hits, "c": len(keys)}
    # Not measured: PostgreSQL's buffers, lookupd's first connections and code paths.
    warmup = split_keys(keys[:20_000], 1, folder, "warmup")
    for table, pid in kinds.values():
        run_postmap(table, warmup, config, folder, pid)

    runs: dict[tuple[str, int], list[Run]] = {(k, n): [] for k in kinds for n in clients}
    order = list(kinds)
    for number in range(args.rounds):
        for count in clients:
            shift = number % len(order)
            for kind in order[shift:] + order[:shift]:
                table, pid = kinds[kind]
                run = run_postmap(table, key_files[count], config, folder, pid)
                if run.hits != expected[kind]:
                    raise RuntimeError(f"({kind}) found {run.hits} keys, expected "
                                       f"{expected[kind]}")
                runs[kind, count].append(run)
                print(f"round {number + 1} clients {count:2d} ({kind}): "
                      f"{len(keys) / run.seconds:9,.0f} lookups/s", flush=True)

    print("propagation ...", flush=True)
    changes = asyncio.run(propagation(url, lookupd.socketmap_port, args.changes))
    profile = ""
    if args.profile:
        count = 4 if 4 in clients else clients[0]
        run, profile = profile_run(processes, lookupd.workers[0], kinds[next(iter(daemons))][0],
                                   key_files[count], config, folder)
        profile += f"\n\n(That run, slowed by sampling: {len(keys) / run.seconds:,.0f} lookups/s.)"
    status_end = {kind: [proc_status(pid) for pid in daemon.workers]
                  for kind, daemon in daemons.items()}

    print()
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}; {versions(server, config)}; "
          f"load average at the end {os.getloadavg()[0]:.2f}.")
    print(f"Data: {args.domains:,} domains, {args.mailboxes:,} mailboxes, {args.aliases:,} "
          f"aliases (filled in {filled:.0f} s). Keys: {len(keys):,} per run "
          f"({expected_hits:,} hits), {args.rounds} rounds, medians; "
          f"benchmark took {time.perf_counter() - started:.0f} s.")
    print()
    print(report(runs, list(kinds), clients, len(keys), daemons, status_end, changes))
    if profile:
        print()
        print(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=200_000, help="keys per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,4,16", help="postmap processes, comma-separated")
    parser.add_argument("--workers", default="1",
                        help="LOOKUPD_WORKERS of each lookupd run (a1, a2 ...), comma-separated")
    parser.add_argument("--changes", type=int, default=200, help="changes timed one at a time")
    parser.add_argument("--profile", action="store_true", help="sample lookupd with py-spy")
    args = parser.parse_args()
    if args.profile and not PY_SPY.exists():
        sys.exit(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries are not installed")
    if not Path(POSTMAP).exists():
        sys.exit("postmap is not installed (Debian: postfix, postfix-pgsql)")
    folder = Path(tempfile.mkdtemp(prefix="dinomail-socketmap-bench-"))
    processes = Processes()
    with stopped_on_sigterm():
        server = PostgresServer(bindir)
        try:
            server.start()
            benchmark(args, server, processes, folder)
        finally:
            processes.stop_all()
            server.destroy()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
