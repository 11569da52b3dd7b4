"""The Dovecot dict's unix socket with several lookupd workers: how connections spread, and what
accepting from one socket shared by every worker costs.

With LOOKUPD_WORKERS > 1 the supervisor binds the unix sockets once and every worker accepts on
the same socket (`lookupd.supervisor`). Each new connection wakes every worker waiting on it; one
accepts, the others find nothing. This measures, for 1 and 2 workers on the same data (a SQLite
database with the test data):

- persistent connections: 30 clients (2 client processes), each asking
  `L shared/passdb/<user>` and waiting for the answer, for `--seconds`; lookups/s, server CPU
  per lookup (supervisor and workers), and how many connections each worker holds;
- short connections (Dovecot without `idle_msecs`): connect, handshake, one lookup, close,
  6,000 times, 20 at a time; server CPU per connection.

    .venv/bin/python benchmarks/workers_unix.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from socketmap_bench import DINOMAIL, Processes, tree_cpu_split, worker_pids  # noqa: E402

from tests.support.lookupd_process import mail_database  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

HANDSHAKE = b"H2\t1\t0\t\tauth\n"
LOOKUP = b"Lshared/passdb/alice@example.org\n"
CLIENTS = 30
CLIENT_PROCESSES = 2
SHORT_CONNECTIONS = 6000
AT_ONCE = 20


def tree_cpu(pid: int) -> float:
    return sum(tree_cpu_split(pid))


async def _persistent(path: str, clients: int, seconds: float) -> int:
    async def client() -> int:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(HANDSHAKE)
        done = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writer.write(LOOKUP)
            if not (await reader.readline()).startswith(b"O"):
                raise RuntimeError("lookup failed")
            done += 1
        writer.close()
        return done

    return sum(await asyncio.gather(*(client() for _ in range(clients))))


def persistent_client(path: str, clients: int, seconds: float, out: multiprocessing.Queue) -> None:
    import uvloop

    out.put(uvloop.run(_persistent(path, clients, seconds)))


async def short_connections(path: str) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(HANDSHAKE + LOOKUP)
        if not (await reader.readline()).startswith(b"O"):
            raise RuntimeError("lookup failed")
        writer.close()

    for _ in range(0, SHORT_CONNECTIONS, AT_ONCE):
        await asyncio.gather(*(one() for _ in range(AT_ONCE)))


def connections_per_worker(pids: list[int]) -> list[int]:
    """Sockets each worker holds beyond its listeners: its clients, near enough."""
    counts = []
    for pid in pids:
        sockets = sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir()
                      if os.readlink(fd).startswith("socket:"))
        counts.append(sockets)
    return counts


def start(processes: Processes, database: str, folder: Path, workers: int) -> tuple[int, str]:
    path = str(folder / f"dict-{workers}.sock")
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": database,
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{path}",
        "DINOMAIL_STATE_DIR": str(folder / f"state-{workers}"),
        "DINOMAIL_LOOKUPD_WORKERS": str(workers),
    }
    log = folder / f"lookupd-{workers}.log"
    with log.open("wb") as stderr:
        process = processes.start([str(DINOMAIL), "lookupd"], env=environ,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while log.read_text().count("snapshot loaded") < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.1)
    return process.pid, path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dinomail-workers-unix-"))
    processes = Processes()
    results: dict[int, dict[str, list[float]]] = {}
    spread: dict[int, list[int]] = {}
    try:
        database = mail_database(folder)
        daemons = {workers: start(processes, database, folder, workers) for workers in (1, 2)}
        for _ in range(args.rounds):
            for workers, (pid, path) in daemons.items():
                done = results.setdefault(workers, {"rate": [], "cpu": [], "short": []})
                queue: multiprocessing.Queue = multiprocessing.Queue()
                clients = [multiprocessing.Process(
                    target=persistent_client,
                    args=(path, CLIENTS // CLIENT_PROCESSES, args.seconds, queue),
                ) for _ in range(CLIENT_PROCESSES)]
                before = tree_cpu(pid)
                started = time.perf_counter()
                for client in clients:
                    client.start()
                time.sleep(args.seconds / 2)
                pids = worker_pids(pid) if workers > 1 else [pid]
                spread[workers] = connections_per_worker(pids)
                lookups = sum(queue.get() for _ in clients)
                for client in clients:
                    client.join()
                elapsed = time.perf_counter() - started
                done["rate"].append(lookups / elapsed)
                done["cpu"].append((tree_cpu(pid) - before) / lookups * 1e6)
                before = tree_cpu(pid)
                asyncio.run(short_connections(path))
                done["short"].append((tree_cpu(pid) - before) / SHORT_CONNECTIONS * 1e6)
                print(f"{workers} worker(s): {lookups / elapsed:,.0f} lookups/s", flush=True)
    finally:
        processes.stop_all()
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print(f"Machine: {os.cpu_count()} cores, shared; load average {os.getloadavg()[0]:.2f}. "
          f"{args.rounds} rounds of {args.seconds:g} s, medians.")
    print()
    print("| workers | persistent: lookups/s | server CPU µs/lookup | sockets per worker "
          "(listeners + clients) | short connections: server CPU µs/connection |")
    print("|---:|---:|---:|---|---:|")
    for workers, done in results.items():
        print(f"| {workers} | {statistics.median(done['rate']):,.0f} "
              f"| {statistics.median(done['cpu']):.1f} | {spread[workers]} "
              f"| {statistics.median(done['short']):.0f} |")


if __name__ == "__main__":
    main()
