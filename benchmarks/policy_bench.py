"""Postfix policy requests per second and the latency they add to each message (issue 9).

Starts `dinomail lookupd` (uvloop) in a subprocess on a throwaway SQLite database holding one
domain with sending limits (high enough never to be reached, so every check runs in full), its
mailboxes, and one full mailbox (so the quota check resolves every local recipient). Then N
client processes (default 16, as many smtpd processes), each with one persistent connection,
send messages for a fixed time, as Postfix does: for each message a RCPT request, then an
END-OF-MESSAGE request with the same `instance`, one request at a time, each with the full
attribute set Postfix 3.7 sends (30 attributes, ~800 bytes). Half the messages are
authenticated submissions to outside addresses (limits checked at RCPT, counted at the end),
half are inbound mail to local mailboxes (quota checked at RCPT).

Reported: requests/s over the measured interval (after a warm-up), latency per request and per
message (both of its requests), as seen by the clients; the daemon's CPU use over the interval;
and, with `--baseline`, the same clients against a server that answers `action=DUNNO` without
parsing anything (the floor: what the clients, the event loop and the loopback cost).

With `--scan-mailboxes N`, it also times, on a throwaway PostgreSQL holding N mailboxes and
their usage rows (filled in SQL), the two loads each lookup daemon repeats every
POLICY_REFRESH_INTERVAL and POLICY_SYNC_INTERVAL: the full mailboxes (one scan of the usage
table) and the sending counts changed since the last sync (N/10 senders' rows).

    .venv/bin/python benchmarks/policy_bench.py [--clients 16] [--seconds 10] [--warmup 2]
        [--mailboxes 1000] [--baseline] [--scan-mailboxes 1000000]

Everything listens on loopback; the daemon is stopped at the end, also on error, and the counts
it wrote are checked against the messages sent.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOMAIN = "bench.example"
HIGH = 1_000_000_000  # limits that are checked but never reached

ATTRIBUTES = [
    ("request", "smtpd_access_policy"),
    ("protocol_state", "RCPT"),
    ("protocol_name", "ESMTP"),
    ("client_address", "192.0.2.7"),
    ("client_name", "client.example.net"),
    ("client_port", "52814"),
    ("reverse_client_name", "client.example.net"),
    ("server_address", "198.51.100.25"),
    ("server_port", "587"),
    ("helo_name", "client.example.net"),
    ("sender", ""),
    ("recipient", ""),
    ("recipient_count", "0"),
    ("queue_id", ""),
    ("instance", ""),
    ("size", "12345"),
    ("etrn_domain", ""),
    ("stress", ""),
    ("sasl_method", ""),
    ("sasl_username", ""),
    ("sasl_sender", ""),
    ("ccert_subject", ""),
    ("ccert_issuer", ""),
    ("ccert_fingerprint", ""),
    ("ccert_pubkey_fingerprint", ""),
    ("encryption_protocol", "TLSv1.3"),
    ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
    ("encryption_keysize", "256"),
    ("policy_context", ""),
    ("compatibility_level", "3.6"),
]


def encode(**values: str) -> bytes:
    attributes = dict(ATTRIBUTES)
    attributes.update(values)
    return "".join(f"{name}={value}\n" for name, value in attributes.items()).encode() + b"\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the data ------------------------------------------------------------------------------------


async def fill(url: str, mailboxes: int) -> None:
    from dinomail import migrate
    from dinomail.store import EVERYTHING, Store, domains, policy
    from dinomail.store import mailboxes as mailbox_store

    store = Store(url)
    try:
        await migrate.upgrade(store.engine)
        async with store.write() as conn:
            domain = await domains.create(conn, "bench", EVERYTHING, {"name": DOMAIN})
            await policy.set_domain_limits(conn, "bench", EVERYTHING, domain["id"], {
                "mailbox_messages_per_hour": HIGH, "mailbox_recipients_per_day": HIGH,
                "domain_messages_per_day": HIGH, "domain_recipients_per_hour": HIGH,
            })
            for number in range(mailboxes):
                await mailbox_store.create(
                    conn, "bench", EVERYTHING,
                    {"email": f"user{number}@{DOMAIN}", "quota": 10**9},
                    password_hash="{PLAIN}x",
                )
            await mailbox_store.record_usage(conn, {f"user0@{DOMAIN}": (10**9, 1)})
    finally:
        await store.close()


# --- the clients ---------------------------------------------------------------------------------


def messages(client: int, mailboxes: int) -> list[tuple[bytes, bytes, bool]]:
    """A cycle of (RCPT, END-OF-MESSAGE, authenticated) messages; `instance` is filled in per
    message."""
    pairs = []
    for number in range(200):
        user = f"user{(client * 200 + number) % (mailboxes - 1) + 1}@{DOMAIN}"
        if number % 2:  # an authenticated submission to the outside
            common = {"sasl_method": "PLAIN", "sasl_username": user, "sender": user}
            rcpt = encode(recipient=f"friend{number}@elsewhere.example", **common)
        else:  # inbound mail to a local mailbox
            common = {"sender": f"someone{number}@elsewhere.example", "server_port": "25"}
            rcpt = encode(recipient=user, **common)
        end = encode(protocol_state="END-OF-MESSAGE", recipient_count="1", **common)
        pairs.append((rcpt, end, bool(number % 2)))
    return pairs


def client_process(number: int, port: int, mailboxes: int, start: float, measure_from: float,
                   stop: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    pairs = messages(number, mailboxes)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request_latencies: list[float] = []
    message_latencies: list[float] = []
    requests = 0
    refused = 0
    counted = 0  # authenticated messages accepted, warm-up included: what the daemon counts
    buffer = b""

    def ask(request: bytes) -> bytes:
        nonlocal buffer
        sock.sendall(request)
        while b"\n\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            buffer += data
        reply, _, buffer = buffer.partition(b"\n\n")
        return reply

    while time.time() < start:
        time.sleep(0.001)
    sequence = 0
    clock = time.perf_counter
    while True:
        now = time.time()
        if now >= stop:
            break
        measuring = now >= measure_from
        rcpt, end, authenticated = pairs[sequence % len(pairs)]
        instance = b"instance=%d.%d\n" % (number, sequence)
        rcpt = rcpt.replace(b"instance=\n", instance)
        end = end.replace(b"instance=\n", instance)
        sequence += 1
        t0 = clock()
        first = ask(rcpt)
        t1 = clock()
        second = ask(end) if first == b"action=DUNNO" else None
        t2 = clock()
        if authenticated and second == b"action=DUNNO":
            counted += 1
        if measuring:
            request_latencies.append(t1 - t0)
            requests += 1
            if second is not None:
                request_latencies.append(t2 - t1)
                message_latencies.append(t2 - t0)
                requests += 1
            if first != b"action=DUNNO" or second not in (None, b"action=DUNNO"):
                refused += 1
    sock.close()
    results.put((requests, refused, request_latencies, message_latencies, counted))


def run_clients(port: int, args: argparse.Namespace, pid: int | None) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    start = time.time() + 1.0
    measure_from = start + args.warmup
    stop = measure_from + args.seconds
    processes = [
        context.Process(target=client_process, args=(
            n, port, args.mailboxes, start, measure_from, stop, results
        ))
        for n in range(args.clients)
    ]
    for process in processes:
        process.start()
    while time.time() < measure_from:
        time.sleep(0.001)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    busy_before = machine_busy()
    while time.time() < stop:
        time.sleep(0.001)
    cpu_after = cpu_seconds(pid) if pid else 0.0
    busy_after = machine_busy()
    collected = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    requests = sum(item[0] for item in collected)
    refused = sum(item[1] for item in collected)
    latencies = sorted(value for item in collected for value in item[2])
    per_message = sorted(value for item in collected for value in item[3])
    return {
        "counted": sum(item[4] for item in collected),
        "requests_per_second": requests / args.seconds,
        "messages": len(per_message),
        "refused": refused,
        "p50": percentile(latencies, 0.50) * 1000,
        "p90": percentile(latencies, 0.90) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "p999": percentile(latencies, 0.999) * 1000,
        "max": latencies[-1] * 1000,
        "message_p50": percentile(per_message, 0.50) * 1000,
        "message_p99": percentile(per_message, 0.99) * 1000,
        "server_cpu": (cpu_after - cpu_before) / args.seconds,
        "machine_busy": (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]),
    }


# --- the floor: a server that answers without looking --------------------------------------------


def constant_server(port: int) -> None:
    import uvloop

    class Constant(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            # One reply per request end; Postfix-like clients send one request at a time.
            self.transport.write(b"action=DUNNO\n\n" * data.count(b"\n\n"))  # type: ignore[attr-defined]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Constant, "127.0.0.1", port)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


# --- the periodic loads at scale (PostgreSQL) ----------------------------------------------------

SCAN_FILL_SQL = """
INSERT INTO core_virtualdomain (id, name) VALUES (1, 'scan.example');
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT m, 1, 'user' || m || '@scan.example', '{{PLAIN}}x', 1073741824
    FROM generate_series(1, {mailboxes}) AS m;
-- Everyone has a usage row; one in a thousand is full.
INSERT INTO dinomail_quotausage (user_id, bytes, messages)
    SELECT m, CASE WHEN m % 1000 = 0 THEN 1073741824 ELSE m * 1000 END, m % 5000
    FROM generate_series(1, {mailboxes}) AS m;
-- A tenth of the mailboxes sent mail today: their rows of the current buckets.
INSERT INTO dinomail_sendcount (kind, name, bucket_seconds, bucket_start, messages, recipients)
    SELECT 'mailbox', 'user' || m || '@scan.example', b, {now} - {now} % b, 3, 5
    FROM generate_series(1, {mailboxes} / 10) AS m, (VALUES (600), (3600)) AS s(b);
"""


def scan_timings(mailboxes: int) -> dict[str, float]:
    """Median seconds of load_full_mailboxes, and of a sync that finds every count row new."""
    from dinomail import migrate
    from dinomail.store import Store
    from dinomail.store.policy import load_counts, load_full_mailboxes
    from lookupd.counters import oldest_bucket
    from tests.support.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("--scan-mailboxes needs PostgreSQL (apt install postgresql)")
    server = PostgresServer(bindir)
    try:
        server.start()
        url = server.create_database("scan")

        async def measure() -> dict[str, float]:
            store = Store(url)
            try:
                await migrate.upgrade(store.engine)
                now = int(time.time())
                server.psql(SCAN_FILL_SQL.format(mailboxes=mailboxes, now=now), "scan")
                server.psql("VACUUM ANALYZE", "scan")  # as autovacuum would have by now
                full, sync = [], []
                for _ in range(5):
                    async with store.read() as conn:
                        started = time.perf_counter()
                        found = await load_full_mailboxes(conn)
                        full.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        rows, _ = await load_counts(conn, since_bucket=oldest_bucket(now))
                        sync.append(time.perf_counter() - started)
                assert len(found) == mailboxes // 1000, len(found)
                return {"full_mailboxes": sorted(full)[2], "count_rows": len(rows),
                        "sync": sorted(sync)[2]}
            finally:
                await store.close()

        return asyncio.run(measure())
    finally:
        server.destroy()


# --- measuring -----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def wait_ready(port: int, http_port: int, process: subprocess.Popen[bytes]) -> None:
    """Until /healthz says the snapshot is loaded and a policy request gets a reply (the limits
    and the counts are loaded too)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("dinomail lookupd exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1):
                pass
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(encode(recipient="x@elsewhere.example"))
                if sock.recv(100).startswith(b"action="):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("dinomail lookupd did not become ready")


def stored_messages(path: Path) -> int:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT coalesce(sum(messages), 0) FROM dinomail_sendcount "
            "WHERE kind = 'domain' AND bucket_seconds = 3600"
        ).fetchone()
    return int(row[0])


def describe(name: str, result: dict[str, float]) -> str:
    return (
        f"| {name} | {result['requests_per_second']:,.0f} | {result['p50']:.2f} | "
        f"{result['p90']:.2f} | {result['p99']:.2f} | {result['p999']:.2f} | "
        f"{result['max']:.1f} | {result['message_p50']:.2f} | {result['message_p99']:.2f} | "
        f"{result['server_cpu'] * 100:.0f} % | {result['machine_busy'] * 100:.0f} % |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--baseline", action="store_true",
                        help="also measure a server that answers DUNNO without parsing")
    parser.add_argument("--scan-mailboxes", type=int, default=0, metavar="N",
                        help="also time the periodic loads on PostgreSQL at N mailboxes")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dinomail-policy-bench-"))
    database = folder / "bench.sqlite3"
    url = f"sqlite:///{database}"
    started = time.monotonic()
    asyncio.run(fill(url, args.mailboxes))
    print(f"data: 1 domain, {args.mailboxes} mailboxes ({time.monotonic() - started:.1f} s)",
          file=sys.stderr)

    port, http_port = free_port(), free_port()
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{port}",
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "DINOMAIL_DICT_LISTEN": f"unix:{folder / 'dict.sock'}",
        "DINOMAIL_STATE_DIR": str(folder / "state"),
    }
    dinomail = shutil.which("dinomail", path=str(Path(sys.executable).parent)) or "dinomail"
    daemon = subprocess.Popen([dinomail, "lookupd"], env=environ, cwd=folder)
    baseline: subprocess.Popen[bytes] | None = None
    lines = []
    try:
        wait_ready(port, http_port, daemon)
        result = run_clients(port, args, daemon.pid)
        lines.append(describe("`dinomail lookupd`", result))
        if args.baseline:
            baseline_port = free_port()
            baseline = multiprocessing.get_context("spawn").Process(  # type: ignore[assignment]
                target=constant_server, args=(baseline_port,)
            )
            baseline.start()  # type: ignore[union-attr]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", baseline_port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            floor = run_clients(baseline_port, args, baseline.pid)
            lines.append(describe("constant `DUNNO` server (floor)", floor))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        if baseline is not None:
            baseline.terminate()  # type: ignore[union-attr]
            baseline.join()  # type: ignore[union-attr]
    counted = stored_messages(database)
    shutil.rmtree(folder, ignore_errors=True)

    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
          f"Linux {platform.release()}")
    print(f"{args.clients} clients, {args.seconds:.0f} s measured after {args.warmup:.0f} s "
          f"of warm-up; latencies in ms, from the clients")
    print()
    print("| server | requests/s | p50 | p90 | p99 | p99.9 | max | message p50 | message p99 "
          "| server CPU | machine busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for line in lines:
        print(line)
    print()
    print(f"authenticated messages accepted: {result['counted']:,.0f}; counted in the database: "
          f"{counted:,}; requests refused by the service: {result['refused']:,.0f}")
    if args.scan_mailboxes:
        scan = scan_timings(args.scan_mailboxes)
        print(f"PostgreSQL, {args.scan_mailboxes:,} mailboxes: full mailboxes loaded in "
              f"{scan['full_mailboxes'] * 1000:.0f} ms; a sync reading {scan['count_rows']:,.0f} "
              f"count rows in {scan['sync'] * 1000:.0f} ms (medians of 5)")


if __name__ == "__main__":
    main()
