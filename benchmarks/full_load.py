"""The lookup daemon's full load at a million mailboxes: time and resident memory, with the rows
fetched in pages (as `dinomail.store.changes.load_mail_data` does) and fetched whole.

Starts a throwaway PostgreSQL server, fills it as `benchmarks/socketmap_bench.py` does (default:
10,000 domains, 1,000,000 mailboxes, 1,000,000 aliases), then runs the refresher's full load
(`load_mail_data`, `Snapshot.build`, `gc.collect()`, `gc.freeze()`) in a fresh Python process
per run, alternating the two ways of fetching, and reports for each the median over rounds of
the load and build times, of the process's resident memory (VmRSS) after the load and its
peak (VmHWM), and of the time `resolve_mailbox` then takes per lookup (200,000 keys, half of
them mailboxes), which shows whether the way the rows were loaded changes how fast they are
found. "Whole" replaces the pages with a plain `execute`: every row of a table is
fetched before the first is filed.

    .venv/bin/python benchmarks/full_load.py [--rounds 3]
        [--domains 10000] [--mailboxes 1000000] [--aliases 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socketmap_bench import fill, migrate, proc_status  # noqa: E402

from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

WAYS = ("pages", "whole")
LOOKUP_KEYS = 200_000


async def fetch_whole(conn: Any, query: Any, table: Any) -> AsyncIterator[Any]:
    """Every row of `query` in one page: a plain `execute`."""
    yield (await conn.execute(query)).all()


def lookup_seconds(snapshot: Any, keys: list[str]) -> float:
    """Seconds per `resolve_mailbox` over `keys`: the snapshot's part of a socketmap lookup."""
    from lookupd.resolve import resolve_mailbox

    started = time.perf_counter()
    for key in keys:
        resolve_mailbox(snapshot, key)
    return (time.perf_counter() - started) / len(keys)


async def child(url: str, way: str) -> dict[str, float]:
    from dinomail.store import Store, changes
    from lookupd.snapshot import Snapshot

    if way == "whole":
        changes._pages = fetch_whole
    store = Store(url)
    try:
        started = time.perf_counter()
        async with store.read() as conn:
            _, data = await changes.load_mail_data(conn)
        loaded = time.perf_counter()
        snapshot = Snapshot.build(data)
        # Half existing mailboxes, half unknown addresses, as new strings (as read from a
        # client, their hashes not yet computed), in the same order in every run.
        rng = random.Random(4)
        count = min(LOOKUP_KEYS // 2, len(data.mailboxes))
        emails = [row.email for row in rng.sample(data.mailboxes, count)]
        keys = [f"{email}x".removesuffix("x") for email in emails]
        keys += [f"nobody{n}@{email.partition('@')[2]}" for n, email in enumerate(emails)]
        rng.shuffle(keys)
        del data, emails
        gc.collect()
        gc.freeze()
        built = time.perf_counter()
    finally:
        await store.close()
    status = proc_status(os.getpid())
    return {
        "load_s": loaded - started,
        "build_s": built - loaded,
        "rss_mib": status["VmRSS"] / 1024,
        "hwm_mib": status["VmHWM"] / 1024,
        "lookup_us": lookup_seconds(snapshot, keys) * 1e6,
        "rows": sum(snapshot.row_counts().values()),
    }


def run_child(url: str, way: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", url, "--way", way],
        check=True, capture_output=True, text=True, timeout=600,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.way))))
        return
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries are not installed")
    server = PostgresServer(bindir)
    try:
        server.start()
        url = server.create_database("dinomail_bench")
        migrate(url)
        filled = fill(server, "dinomail_bench", args)
        print(f"filled in {filled:.0f} s", flush=True)
        results: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
        for number in range(args.rounds):
            order = list(WAYS) if number % 2 == 0 else list(reversed(WAYS))
            for way in order:
                result = run_child(url, way)
                results[way].append(result)
                print(f"round {number + 1} {way}: {result}", flush=True)
    finally:
        server.destroy()
    print()
    print(f"Data: {args.domains:,} domains, {args.mailboxes:,} mailboxes, {args.aliases:,} "
          f"aliases; medians of {args.rounds} rounds, each way in a fresh process.")
    print()
    print("| fetch | load s | build s | VmRSS after MiB | VmHWM peak MiB | resolve_mailbox µs |")
    print("|---|---:|---:|---:|---:|---:|")
    for way, runs in results.items():
        cells = [statistics.median(run[key] for run in runs)
                 for key in ("load_s", "build_s", "rss_mib", "hwm_mib", "lookup_us")]
        print(f"| {way} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.0f} | {cells[3]:.0f} "
              f"| {cells[4]:.2f} |")


if __name__ == "__main__":
    main()
