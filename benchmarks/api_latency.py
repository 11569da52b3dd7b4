"""Latency of the admin API on PostgreSQL with a million mailboxes.

Starts a throwaway PostgreSQL server (or uses --database-url), fills it in SQL with
10,000 domains and 1,000,000 mailboxes, runs `dinomail adminapi` in a subprocess, and times
requests made one at a time with httpx (no concurrency: the figures are latencies, not
throughput):

- the first page of the mailbox list (100 per page);
- a deep page, reached as clients that follow `meta.next` reach it (the `after` cursor), and
  with a bare `offset` as a client computing offsets would;
- a page filtered by domain (`?domain=`), a random domain each time;
- a substring search (`?q=`), a random fragment matching about 11 mailboxes each time, and
  one matching a single mailbox;
- creating a mailbox (POST, with a password hashed with the default scheme).

    .venv/bin/python benchmarks/api_latency.py [--mailboxes 1000000] [--domains 10000]
        [--requests 500] [--database-url postgresql://...]

Mailboxes are written with the change log triggers off (session_replication_role = replica):
the lookup daemon's change log is not what is measured, and it would only slow the filling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dinomail import migrate  # noqa: E402
from dinomail.store import Store, admins, apikeys  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

PAGE = 100
WARMUP = 20


def domain_name(number: int) -> str:
    return f"domain{number}.example.org"


FILL_SQL = """
SET session_replication_role = replica;
INSERT INTO core_virtualdomain (id, name)
    SELECT d, 'domain' || d || '.example.org' FROM generate_series(1, :domains) AS d;
SELECT setval(pg_get_serial_sequence('core_virtualdomain', 'id'), :domains);
-- Mailboxes of one domain are spread over the table, as they are when created over years.
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT m, (m % :domains) + 1,
           'firstname.lastname' || m || '@domain' || ((m % :domains) + 1) || '.example.org',
           '{SHA512-CRYPT}$6$' || lpad(to_hex(m), 16, '0') || '$' || md5(m::text) || md5(m::text),
           1073741824
    FROM generate_series(1, :mailboxes) AS m;
SELECT setval(pg_get_serial_sequence('core_virtualuser', 'id'), :mailboxes);
SET session_replication_role = origin;
"""


async def fill(url: str, domains: int, mailboxes: int) -> tuple[str, float]:
    """Migrate, fill, and make a superadmin with a key; returns (key, seconds to fill)."""
    store = Store(url)
    await migrate.upgrade(store.engine)
    started = time.perf_counter()
    async with store.engine.begin() as conn:
        for statement in filter(str.strip, FILL_SQL.split(";\n")):
            await conn.execute(sa.text(statement), {"domains": domains, "mailboxes": mailboxes})
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(sa.text("VACUUM ANALYZE"))
    seconds = time.perf_counter() - started
    async with store.write() as conn:
        account = await admins.create(conn, "benchmark", username="bench",
                                      password="benchmark password", is_superadmin=True)
        _, secret = await apikeys.create(conn, "benchmark", account["id"])
    await store.close()
    return secret, seconds


async def exact_count_ms(url: str, runs: int = 7) -> float:
    """What an exact total of the unfiltered list costs, for comparison."""
    store = Store(url)
    times = []
    async with store.engine.connect() as conn:
        for _ in range(runs):
            started = time.perf_counter()
            await conn.execute(sa.text("SELECT count(*) FROM core_virtualuser"))
            times.append((time.perf_counter() - started) * 1000)
    await store.close()
    return statistics.median(times)


def start_api(url: str, port: int, state: Path) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{port}",
        "DINOMAIL_ALLOWED_HOSTS": "127.0.0.1",
        "DINOMAIL_STATE_DIR": str(state),
        "DINOMAIL_API_LIMIT_PER_PAGE": str(PAGE),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dinomail")), "adminapi"],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def wait_until_up(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the admin API did not start")


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


async def measure(
    client: httpx.AsyncClient, requests: int, make: Callable[[int], httpx.Request],
    expected: int,
) -> list[float]:
    times = []
    for number in range(WARMUP + requests):
        request = make(number)
        started = time.perf_counter()
        response = await client.send(request)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != expected:
            raise RuntimeError(f"{request.method} {request.url}: {response.status_code} "
                               f"{response.text[:200]}")
        if number >= WARMUP:
            times.append(elapsed)
    return times


async def run(url: str, args: argparse.Namespace) -> None:
    print(f"filling {args.domains:,} domains and {args.mailboxes:,} mailboxes ...", flush=True)
    secret, fill_seconds = await fill(url, args.domains, args.mailboxes)
    print(f"filled in {fill_seconds:.0f} s", flush=True)
    count_ms = await exact_count_ms(url)
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        process = start_api(url, port, Path(state))
        headers = {"Authorization": f"ApiKey bench:{secret}"}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers,
                                         timeout=30) as client:
                await wait_until_up(client, process)
                results = await scenarios(client, args)
        finally:
            process.terminate()
            process.wait(10)
    rng = args.requests
    print()
    print(f"PostgreSQL, {args.domains:,} domains, {args.mailboxes:,} mailboxes; {rng} requests "
          f"per line after {WARMUP} to warm up; one request at a time; milliseconds.")
    print()
    print("| request | p50 | p99 | max |")
    print("|---|---:|---:|---:|")
    for label, times in results:
        print(f"| {label} | {percentile(times, 0.5):.1f} | {percentile(times, 0.99):.1f} "
              f"| {max(times):.1f} |")
    print()
    print(f"For comparison, an exact `SELECT count(*) FROM core_virtualuser`: {count_ms:.0f} ms "
          "(median of 7).")


async def scenarios(
    client: httpx.AsyncClient, args: argparse.Namespace
) -> list[tuple[str, list[float]]]:
    rng = random.Random(6)
    base = "/api/virtualuser/"
    deep = args.mailboxes // 2
    # The cursor a client holds after following `next` down to the middle of the list.
    before_deep = (await client.get(base, params={"limit": PAGE, "offset": deep - PAGE})).json()
    deep_next = before_deep["meta"]["next"]
    assert "after=" in deep_next

    def get(path: str, **params: object) -> Callable[[int], httpx.Request]:
        return lambda _: client.build_request("GET", path, params=params)

    def by_domain(_: int) -> httpx.Request:
        name = domain_name(rng.randint(1, args.domains))
        return client.build_request("GET", base, params={"limit": PAGE, "domain": name})

    def search(_: int) -> httpx.Request:
        # "lastname12345" matches mailboxes 12345 and 123450 to 123459 (with 1M mailboxes);
        # "lastname" is in every address, so its trigrams match every row of the index.
        fragment = f"lastname{rng.randint(10_000, 99_999)}"
        return client.build_request("GET", base, params={"limit": PAGE, "q": fragment})

    def rare_search(_: int) -> httpx.Request:
        # "123456@": only rare trigrams, as a search for a person's name mostly has.
        fragment = f"{rng.randint(100_000, 999_999)}@"
        return client.build_request("GET", base, params={"limit": PAGE, "q": fragment})

    def create(number: int) -> httpx.Request:
        domain = rng.randint(1, args.domains)
        body = {"email": f"new{number}.user@{domain_name(domain)}", "password": "a password"}
        return client.build_request("POST", base, json=body)

    plan: list[tuple[str, Callable[[int], httpx.Request], int]] = [
        ("first page (`?limit=100`)", get(base, limit=PAGE), 200),
        (f"deep page at {deep:,} by cursor (`meta.next`)", lambda _: client.build_request(
            "GET", deep_next), 200),
        (f"deep page at {deep:,} by `offset`", get(base, limit=PAGE, offset=deep), 200),
        (f"last page ({args.mailboxes - PAGE:,}) by `offset`",
         get(base, limit=PAGE, offset=args.mailboxes - PAGE), 200),
        ("filtered by domain (`?domain=`)", by_domain, 200),
        ("substring search, fragment with common parts (`?q=lastname12345`)", search, 200),
        ("substring search, rare fragment (`?q=123456@`)", rare_search, 200),
        ("create a mailbox (POST, SHA512-CRYPT)", create, 201),
    ]
    results = []
    for label, make, expected in plan:
        print(f"measuring: {label}", flush=True)
        results.append((label, await measure(client, args.requests, make, expected)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1_000_000)
    parser.add_argument("--domains", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--database-url", help="an empty PostgreSQL database to fill")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args))
        return
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries are not installed")
    server = PostgresServer(bindir)
    server.start()
    try:
        asyncio.run(run(server.create_database("dinomail_bench"), args))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
