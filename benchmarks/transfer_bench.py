"""`dinomail export` and `dinomail import` at scale on PostgreSQL: wall time and peak memory.

Starts a throwaway PostgreSQL server, fills a database as `benchmarks/socketmap_bench.py` does
(N mailboxes and N aliases over 10,000 domains, in SQL), then runs, each as the real command in
its own process: `dinomail export -o FILE`, `dinomail import FILE` into a freshly migrated
database, and `dinomail export` of that database, which must give the same document (the
`exported_at` line aside). Peak memory is the process's maximum resident set (getrusage of the
child, ru_maxrss).

    .venv/bin/python benchmarks/transfer_bench.py [--domains 10000] [--mailboxes 1000000]
        [--aliases 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socketmap_bench import DINOMAIL, fill, migrate  # noqa: E402

from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402


def run(args: list[str], url: str) -> tuple[float, int]:
    """(wall seconds, peak resident KiB) of `dinomail ARGS` against `url`."""
    env = {**os.environ, "DINOMAIL_DATABASE_URL": url}
    started = time.perf_counter()
    child = subprocess.Popen([str(DINOMAIL), *args], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"dinomail {' '.join(args)} failed: {child.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss


def body_digest(path: Path) -> str:
    """SHA-256 of the document without its first line (which holds `exported_at`)."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        source.readline()
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed")
    server = PostgresServer(bindir)
    folder = Path(tempfile.mkdtemp(prefix="dinomail-transfer-"))
    try:
        server.start()
        source = server.create_database("source")
        migrate(source)
        fill_seconds = fill(server, "source", args)
        target = server.create_database("target")
        migrate(target)
        first, second = folder / "first.json", folder / "second.json"
        rows = [
            ("export", *run(["export", "-o", str(first)], source)),
            ("import into an empty database", *run(["import", str(first)], target)),
            ("export of the imported database", *run(["export", "-o", str(second)], target)),
        ]
        same = body_digest(first) == body_digest(second)
        print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"PostgreSQL {server.psql('SHOW server_version').strip()}")
        print(f"Data: {args.domains:,} domains, {args.mailboxes:,} mailboxes, "
              f"{args.aliases:,} aliases (filled in SQL in {fill_seconds:.1f} s); document "
              f"{first.stat().st_size / 1e6:.0f} MB; round trip identical: {same}")
        print()
        print("| step | wall time (s) | peak memory (MiB) |")
        print("|---|---:|---:|")
        for name, seconds, peak in rows:
            print(f"| {name} | {seconds:.1f} | {peak / 1024:.0f} |")
        if not same:
            raise SystemExit("the second export differs from the first")
    finally:
        server.destroy()
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
