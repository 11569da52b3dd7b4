"""The CPU one socketmap request costs inside `SocketmapProtocol` alone (framing, timers,
resolving; metrics off, or on with `--metrics`), without the kernel: what a change to the
connection handling adds or saves, measurable even on a busy machine (CPU time, best of 5 runs
of 300,000 requests).

The transport is a stand-in that drops the reply: the kernel's share is what
`socketmap_bench.py` measures, and it is the same for any version of this code.

    .venv/bin/python benchmarks/socketmap_protocol_cpu.py [--metrics]

To compare two versions of lookupd in one run, set PYTHONPATH to the other tree (e.g. one
unpacked by `git archive`): this script takes lookupd from wherever Python finds it.
"""

from __future__ import annotations

import asyncio
import sys
import time

from dinomail.records import DomainRow, MailboxRow, MailData
from lookupd.metrics import LookupdMetrics
from lookupd.snapshot import Snapshot
from lookupd.socketmap import SocketmapProtocol

REQUEST = b"27:mailboxes alice@example.org,"
REQUESTS = 300_000


class DroppingTransport:
    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def main() -> None:
    snapshot = Snapshot.build(MailData(
        [DomainRow(1, "example.org", True)], [],
        [MailboxRow(1, 1, "alice@example.org", "{PLAIN}x", None, True)], [],
    ))
    recorder = (
        LookupdMetrics().recorder("socketmap", ("domains", "mailboxes", "aliases", "senders"))
        if "--metrics" in sys.argv[1:] else None
    )
    protocol = SocketmapProtocol(lambda: snapshot, recorder=recorder)
    protocol.connection_made(DroppingTransport())  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(REQUESTS):
            protocol.data_received(REQUEST)
        best = min(best, (time.process_time() - started) / REQUESTS)
    print(f"{best * 1e6:.2f} µs of CPU per request")


if __name__ == "__main__":
    asyncio.run(main())
