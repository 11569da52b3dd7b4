"""Memory and time of a snapshot at the target scale.

Builds synthetic rows (default: 10,000 domains, 1,000,000 mailboxes, 1,000,000 aliases), then
reports the resident memory of the process and the time to build the snapshot, to apply a batch
of changes, to answer lookups, and to run a full garbage collection before and after
`gc.freeze()`. With `--reload` it also loads and builds a second snapshot while the first is
alive, as a full resync does, and reports the peak.

    .venv/bin/python benchmarks/snapshot_memory.py [--mailboxes N] [--aliases N] [--domains N]
        [--reload]

Strings have realistic lengths (a SHA512-CRYPT hash is ~120 characters) and are all distinct,
as they would be when loaded from a database.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

from dinomail.records import AliasDomainRow, AliasRow, DomainRow, MailboxRow, MailChanges, MailData
from lookupd.resolve import resolve_alias, resolve_mailbox, resolve_senders
from lookupd.snapshot import Snapshot


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def password(n: int) -> str:
    # The shape of a `{SHA512-CRYPT}$6$salt$hash` value, distinct per mailbox.
    return f"{{SHA512-CRYPT}}$6${n:016x}${n:086x}"


def make_data(domains: int, mailboxes: int, aliases: int) -> MailData:
    domain_rows = [DomainRow(id=d + 1, name=f"domain{d}.example.org", active=True)
                   for d in range(domains)]
    mailbox_rows = [
        MailboxRow(
            id=m + 1,
            domain_id=m % domains + 1,
            email=f"firstname.lastname{m}@domain{m % domains}.example.org",
            password=password(m),
            quota=1_073_741_824 + m,
            active=True,
        )
        for m in range(mailboxes)
    ]
    alias_rows = []
    for a in range(aliases):
        domain = a % domains
        # Most aliases forward to a local mailbox; one in four leaves the server.
        destination = (
            f"someone{a}@elsewhere.example.net" if a % 4 == 0
            else f"firstname.lastname{a % max(mailboxes, 1)}@domain{a % domains}.example.org"
        )
        alias_rows.append(
            AliasRow(id=a + 1, domain_id=domain + 1, source=f"alias{a}@domain{domain}.example.org",
                     destination=destination)
        )
    alias_domains = [AliasDomainRow(id=1, name="alias.example.com", target_domain_id=1,
                                    active=True)]
    return MailData(domain_rows, alias_domains, mailbox_rows, alias_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--aliases", type=int, default=1_000_000)
    parser.add_argument("--reload", action="store_true",
                        help="also measure a second full load beside the first")
    args = parser.parse_args()

    gc.collect()
    start_rss = rss_mib()
    started = time.perf_counter()
    data = make_data(args.domains, args.mailboxes, args.aliases)
    made = time.perf_counter() - started
    rows_rss = rss_mib()

    started = time.perf_counter()
    snapshot = Snapshot.build(data)
    built = time.perf_counter() - started
    del data
    gc.collect()
    snapshot_rss = rss_mib()

    # One batch touching every kind of row, timed; its cost must not depend on the row count.
    batch = MailChanges(
        domains=[DomainRow(id=2, name="domain1.example.org", active=False)],
        removed_domains=[],
        alias_domains=[],
        removed_alias_domains=[],
        mailboxes=[MailboxRow(id=10**9 + i, domain_id=1, email=f"new{i}@domain0.example.org",
                              password=password(i), quota=None, active=True) for i in range(100)],
        removed_mailboxes=list(range(1, 101)),
        aliases=[AliasRow(id=10**9 + i, domain_id=1, source="list@domain0.example.org",
                          destination=f"member{i}@domain0.example.org") for i in range(100)],
        removed_aliases=list(range(1, 101)),
    )
    started = time.perf_counter()
    snapshot.apply(batch)
    applied = time.perf_counter() - started

    lookups = 100_000
    keys = [f"firstname.lastname{n}+tag@domain{n % args.domains}.example.org"
            for n in range(1000, 1000 + lookups)]
    started = time.perf_counter()
    for key in keys:
        resolve_mailbox(snapshot, key)
    mailbox_us = (time.perf_counter() - started) / lookups * 1e6
    started = time.perf_counter()
    for key in keys:
        resolve_alias(snapshot, key)
    alias_us = (time.perf_counter() - started) / lookups * 1e6
    alias_keys = [f"alias{n}@domain{n % args.domains}.example.org" for n in range(lookups)]
    started = time.perf_counter()
    for key in alias_keys:
        resolve_senders(snapshot, key)
    senders_us = (time.perf_counter() - started) / lookups * 1e6

    started = time.perf_counter()
    gc.collect()
    gc_full = time.perf_counter() - started
    gc.freeze()
    started = time.perf_counter()
    gc.collect()
    gc_frozen = time.perf_counter() - started

    reload_rss = None
    if args.reload:
        fresh = Snapshot.build(make_data(args.domains, args.mailboxes, args.aliases))
        reload_rss = rss_mib()
        snapshot, fresh = fresh, None

    counts = snapshot.row_counts()
    print(f"rows: {counts}")
    print(f"RSS at start:              {start_rss:8.1f} MiB")
    print(f"RSS with rows generated:   {rows_rss:8.1f} MiB  ({made:.1f} s to generate)")
    print(f"RSS with snapshot built:   {snapshot_rss:8.1f} MiB  (rows list dropped)")
    print(f"snapshot build:            {built:8.2f} s")
    print(f"apply 401 changes:         {applied * 1000:8.2f} ms")
    print(f"resolve_mailbox (+ext):    {mailbox_us:8.2f} µs per lookup")
    print(f"resolve_alias (mailbox):   {alias_us:8.2f} µs per lookup")
    print(f"resolve_senders (alias):   {senders_us:8.2f} µs per lookup")
    print(f"full gc.collect():         {gc_full * 1000:8.1f} ms  "
          f"({gc_frozen * 1000:.2f} ms after gc.freeze())")
    if reload_rss is not None:
        print(f"RSS with a second load:    {reload_rss:8.1f} MiB  (old snapshot still alive)")


if __name__ == "__main__":
    main()
