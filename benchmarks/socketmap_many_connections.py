"""lookupd's CPU per socketmap lookup under Postfix's own traffic: many persistent connections,
each sending one request at a time, so that each lookup arrives alone and pays a whole wake-up
of the event loop (issue 19: 44 µs per lookup behind a real smtpd, against 13 µs under
`postmap`, whose single connection keeps the loop busy).

The socketmap server runs in a child process (`--serve`): lookupd's own `start_socketmap_server`
with its metrics, over uvloop, answering from a snapshot built in memory (no database: the
database is not on the lookup path). This process is the client: `--connections` persistent
TCP connections (Postfix's smtpd, cleanup and trivial-rewrite processes each keep one), each
sending one request, waiting for its reply, then pausing a random time so that together they
send about `--rate` requests a second, spread over the connections as Postfix's are (its
queue of ~400 messages/s made 12.6 lookups each). The keys are Postfix's per recipient:
`domains`, `aliases`, `mailboxes` and `senders`, half of them existing addresses.

The server's CPU (user + system, from /proc/PID/stat) over the window, divided by the lookups
answered, is the figure. With several `--code DIR` (e.g. the tree before a change, unpacked by
`git archive`), the server is started from each in turn (`PYTHONPATH=DIR`), the order rotated
every round, and the ratio to the first is taken within each round: the machine's other work
changes from minute to minute, a ratio within a round much less. `--code constant` runs
`constant_socketmap.py` instead, which answers `OK x` to everything: the floor, what the
wake-ups and the kernel cost any server on this event loop.

`--profile FILE` runs the server (first `--code` only) under cProfile for one more window and
prints the busiest functions; `--profile-sort` picks the column. The profiler counts CPU time
(`time.process_time`), not wall time: on a busy machine a wall clock charges a function for the
time the process waited for a core (the reply's `write` wakes the client, which may take the
core at once). Its own cost, a system call per event, inflates functions called often.

`NO_METRICS=1` in the environment starts the server without metrics: what recording them costs.

    .venv/bin/python benchmarks/socketmap_many_connections.py [--connections 40]
        [--rate 4000] [--seconds 10] [--rounds 3] [--code DIR ...] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTANT_SERVER = Path(__file__).with_name("constant_socketmap.py")
# `--code constant`: the server answering `OK x` to everything, the floor of the transport.
CONSTANT = Path("constant")
MAPS = ("domains", "aliases", "mailboxes", "senders")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def mail_data(mailboxes: int, domains: int) -> object:
    from dinomail.records import AliasRow, DomainRow, MailboxRow, MailData

    domain_rows = [DomainRow(d + 1, f"d{d}.example", True) for d in range(domains)]
    mailbox_rows = [
        MailboxRow(m + 1, m % domains + 1, f"user{m}@d{m % domains}.example", "{PLAIN}x", None,
                   True)
        for m in range(mailboxes)
    ]
    alias_rows = [
        AliasRow(a + 1, a % domains + 1, f"alias{a}@d{a % domains}.example",
                 f"user{a}@d{a % domains}.example")
        for a in range(mailboxes)
    ]
    return MailData(domain_rows, [], mailbox_rows, alias_rows)


async def serve(port: int, mailboxes: int, domains: int, profile: str) -> None:
    from lookupd.metrics import LookupdMetrics
    from lookupd.snapshot import Snapshot
    from lookupd.socketmap import start_socketmap_server

    snapshot = Snapshot.build(mail_data(mailboxes, domains))  # type: ignore[arg-type]
    # As the refresher does after a load: no collection walks the snapshot's rows again.
    gc.collect()
    gc.freeze()
    server = await start_socketmap_server(
        f"127.0.0.1:{port}", lambda: snapshot,
        metrics=None if os.environ.get("NO_METRICS") else LookupdMetrics(),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    print("ready", flush=True)
    await stop.wait()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    server.close()


def keys(mailboxes: int, domains: int, count: int, seed: int) -> list[bytes]:
    """Requests as Postfix sends them for a recipient or a sender: half exist."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        m = rng.randrange(mailboxes)
        domain = f"d{m % domains}.example"
        map_name = rng.choice(MAPS)
        if map_name == "domains":
            key = domain if rng.random() < 0.5 else f"other{m}.example"
        elif map_name == "aliases":
            key = f"alias{m}@{domain}" if rng.random() < 0.5 else f"nobody{m}@{domain}"
        else:
            key = f"user{m}@{domain}" if rng.random() < 0.5 else f"nobody{m}@{domain}"
        payload = f"{map_name} {key}".encode()
        out.append(b"%d:%s," % (len(payload), payload))
    return out


async def one_connection(
    port: int, requests: list[bytes], pause: float, deadline: float, seed: int,
    answered: list[int],
) -> None:
    """Send requests one at a time until `deadline`, counting the replies in `answered[0]`."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        while loop.time() < deadline:
            await asyncio.sleep(rng.expovariate(1 / pause))
            writer.write(requests[sent % len(requests)])
            sent += 1
            # A netstring reply: `<length>:<payload>,`.
            length = int((await reader.readuntil(b":"))[:-1])
            await reader.readexactly(length + 1)
            answered[0] += 1
    finally:
        writer.close()


async def measure(args: argparse.Namespace, pid: int, port: int) -> tuple[int, float, float]:
    requests = keys(args.mailboxes, args.domains, 20_000, 1)
    pause = args.connections / args.rate
    loop = asyncio.get_running_loop()
    # Connect, let the connections settle, then count from a clean start.
    deadline = loop.time() + args.warmup + args.seconds
    answered = [0]
    tasks = [
        asyncio.ensure_future(one_connection(
            port, requests[i::args.connections], pause, deadline, i, answered))
        for i in range(args.connections)
    ]
    await asyncio.sleep(args.warmup)
    user0, sys0 = cpu_seconds(pid)
    before = answered[0]
    await asyncio.gather(*tasks)
    user1, sys1 = cpu_seconds(pid)
    return answered[0] - before, user1 - user0, sys1 - sys0


def start_server(
    args: argparse.Namespace, code: Path, port: int, profile: str = ""
) -> subprocess.Popen[bytes]:
    if code == CONSTANT:
        return start_constant(port)
    env = dict(os.environ, PYTHONPATH=str(code))
    command = [
        sys.executable, str(Path(__file__).resolve()), "--serve", str(port),
        "--mailboxes", str(args.mailboxes), "--domains", str(args.domains),
    ]
    if profile:
        command += ["--profile", profile]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, cwd=str(code))
    assert server.stdout is not None
    if server.stdout.readline().strip() != b"ready":
        server.kill()
        raise SystemExit(f"the server from {code} did not start")
    return server


def start_constant(port: int) -> subprocess.Popen[bytes]:
    import socket

    server = subprocess.Popen([sys.executable, str(CONSTANT_SERVER), "127.0.0.1", str(port)])
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return server
        except OSError:
            time.sleep(0.01)
    server.kill()
    raise SystemExit("the constant server did not start")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(args: argparse.Namespace, code: Path) -> tuple[int, float, float]:
    port = free_port()
    server = start_server(args, code, port)
    try:
        return asyncio.run(measure(args, server.pid, port))
    finally:
        stop_server(server)


def profile(args: argparse.Namespace, code: Path) -> None:
    import pstats

    port = free_port()
    server = start_server(args, code, port, profile=args.profile)
    try:
        lookups, user, system = asyncio.run(measure(args, server.pid, port))
    finally:
        stop_server(server)
    print(f"\nprofiled run: {lookups} lookups, {(user + system) / lookups * 1e6:.1f} µs each "
          "(cProfile's own cost included)")
    stats = pstats.Stats(args.profile)
    stats.sort_stats(args.profile_sort).print_stats(args.profile_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--rate", type=float, default=4000.0, help="requests/s, all together")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--code", type=Path, action="append", default=[],
                        help="a tree to take lookupd from (repeatable; default: this one)")
    parser.add_argument("--profile", default="", help="cProfile output file")
    parser.add_argument("--profile-sort", default="tottime")
    parser.add_argument("--profile-lines", type=int, default=30)
    parser.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        from lookupd.listen import event_loop_factory

        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(args.serve, args.mailboxes, args.domains, args.profile))
        return

    codes = [path if path == CONSTANT else path.resolve() for path in args.code] or [ROOT]
    print(f"{args.connections} connections, about {args.rate:g} requests/s, {args.seconds:g} s "
          f"a run, {args.mailboxes} mailboxes in {args.domains} domains; load average "
          f"{os.getloadavg()[0]:.1f}")
    per_code: dict[Path, list[float]] = {code: [] for code in codes}
    ratios: dict[Path, list[float]] = {code: [] for code in codes[1:]}
    for round_number in range(args.rounds):
        order = codes[round_number % len(codes):] + codes[:round_number % len(codes)]
        seen: dict[Path, float] = {}
        for code in order:
            lookups, user, system = run_once(args, code)
            micros = (user + system) / lookups * 1e6
            seen[code] = micros
            per_code[code].append(micros)
            print(f"round {round_number + 1} {code}: {lookups} lookups "
                  f"({lookups / args.seconds:.0f}/s), server CPU {user / lookups * 1e6:.1f} + "
                  f"{system / lookups * 1e6:.1f} = {micros:.1f} µs per lookup", flush=True)
        for code in codes[1:]:
            ratios[code].append(seen[code] / seen[codes[0]])
    print(f"\nmedian server CPU per lookup (µs), load average {os.getloadavg()[0]:.1f}:")
    for code in codes:
        values = per_code[code]
        line = (f"  {code}: {statistics.median(values):.1f} "
                f"(range {min(values):.1f}–{max(values):.1f})")
        if code in ratios:
            r = ratios[code]
            line += (f", × first within a round: median {statistics.median(r):.2f} "
                     f"(range {min(r):.2f}–{max(r):.2f})")
        print(line)
    if args.profile:
        profile(args, codes[0])


if __name__ == "__main__":
    main()
