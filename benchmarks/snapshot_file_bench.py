"""lookupd's snapshot on disk (`lookupd.snapshot_file`): how long writing and reading it take,
and its size, at N mailboxes (default 100,000, with as many aliases and 1,000 domains).

Reading is what a daemon started while the database is down waits for before it answers; it
is timed to the snapshot built and ready (read + `Snapshot.build`). Writing runs in a thread
after each full load and every LOOKUPD_SNAPSHOT_INTERVAL seconds after changes; `rows()` is
the part on the event loop.

    .venv/bin/python benchmarks/snapshot_file_bench.py [--mailboxes 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dinomail.records import AliasRow, DomainRow, MailboxRow, MailData
from lookupd.snapshot import Snapshot
from lookupd.snapshot_file import read_snapshot_file, write_snapshot_file

DATABASE = "postgresql://127.0.0.1:5432/dinomail"
HASH = "{SHA512-CRYPT}$6$" + "x" * 102  # the length of a real SHA512-CRYPT hash


def make_data(mailboxes: int, domains: int) -> MailData:
    return MailData(
        domains=[DomainRow(d, f"domain{d}.example", True) for d in range(1, domains + 1)],
        alias_domains=[],
        mailboxes=[
            MailboxRow(i, i % domains + 1, f"user{i}@domain{i % domains + 1}.example", HASH,
                       None if i % 3 else 10_000_000, True)
            for i in range(1, mailboxes + 1)
        ],
        aliases=[
            AliasRow(i, i % domains + 1, f"alias{i}@domain{i % domains + 1}.example",
                     f"user{i}@domain{i % domains + 1}.example")
            for i in range(1, mailboxes + 1)
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    snapshot = Snapshot.build(make_data(args.mailboxes, args.domains))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lookupd-snapshot.json"
        rows_s, write_s, read_s, read_cpu = [], [], [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            data = snapshot.rows()
            rows_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            write_snapshot_file(path, data, database=DATABASE, database_id="x", seq=1)
            write_s.append(time.perf_counter() - started)
            started, cpu = time.perf_counter(), time.process_time()
            saved = read_snapshot_file(path, database=DATABASE, database_id="x")
            assert saved is not None
            built = Snapshot.build(saved.data)
            read_s.append(time.perf_counter() - started)
            read_cpu.append(time.process_time() - cpu)
            assert built.row_counts() == snapshot.row_counts()
        size = path.stat().st_size
    print(f"{args.mailboxes:,} mailboxes, {args.mailboxes:,} aliases, {args.domains:,} domains; "
          f"file {size / 1e6:.1f} MB; median of {args.repeat}:")
    print(f"  rows() on the loop     {statistics.median(rows_s) * 1000:8.1f} ms")
    print(f"  write (thread, fsync)  {statistics.median(write_s) * 1000:8.1f} ms")
    print(f"  read + Snapshot.build  {statistics.median(read_s) * 1000:8.1f} ms "
          f"({statistics.median(read_cpu) * 1000:.1f} ms of CPU)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
