"""What DinoMail costs a real Postfix (issue 19): messages/s through one Postfix, three ways.

One real Postfix (private configuration and queue, smtpd on a loopback port, as
tests/support/postfix.py runs it) receives mail from Postfix's own `smtp-source` (many sessions,
several recipients a message) and relays everything it accepts to Postfix's `smtp-sink`. The
same Postfix, restarted between runs, asks its recipients' questions in turn of:

  lookupd   the shipped conf/postfix/main.cf lines: socketmap maps (domains, mailboxes, aliases,
            senders) and the full-mailbox check at RCPT TO (`check_recipient_access` on the
            `recipient_access` map), `dinomail lookupd`;
  unix      the same, lookupd's socketmap reached over a unix socket in Postfix's queue
            directory (`socketmap:unix:private/dinomail-socketmap:NAME`) instead of TCP;
  policy    DinoMail's earlier lines: the full-mailbox check asked of the policy service, at
            RCPT TO and at the end of data (`check_policy_service`), for inbound mail too;
  mapsonly  the shipped lines without any full-mailbox check (what that check costs);
  lmdb      `lmdb:` maps built with `postmap` from the same data (the fastest local lookups
            Postfix has: the floor);
  pgsql     `pgsql:` maps on the same PostgreSQL with PostfixAdmin's documented queries (alias,
            alias domain, catch-all, catch-all on an alias domain), written for DinoMail's tables.

Data (filled in SQL): 100,000 mailboxes over 1,000 domains, 60,000 alias rows (catch-alls
included), 100 alias domains, 100 catch-alls. Recipients: half plain mailboxes, half aliases,
addresses on alias domains and catch-all addresses (also a catch-all reached through an alias
domain). smtp-source numbers the recipients of a message, so the data is
laid out to match: mailboxes `m<g>@d<g % domains + 1>.example.org`, `2m<g>@…` and `3m<g>@…`
(smtp-source sends to `3x`, `2x` and `x`).

Reported per way (median over rounds, rounds rotate the order): messages/s accepted (all
smtp-source messages over its wall time), the latency of a whole SMTP transaction (connect to
the reply after DATA, 3 recipients) measured by a probe client during the load, CPU per message
of lookupd (its processes), PostgreSQL (postmaster and backends) and Postfix (master and its
children), and lookups per message (lookupd's own counters). `--profile` samples lookupd with
py-spy during one more lookupd run.

    .venv/bin/python benchmarks/postfix_cost.py [--mailboxes 100000] [--aliases 60000]
        [--messages 20000] [--sessions 20] [--rounds 3] [--workers 1] [--profile]
        [--ways lookupd,policy,mapsonly,lmdb,pgsql]

`--quick` scales everything down (10,000 mailboxes, 6,000 aliases, 3,000 messages, 1 round).
Needs root (Postfix's daemons drop to the postfix user), Debian's postfix, postfix-pgsql and
postfix-lmdb, and PostgreSQL's server binaries. Everything listens on loopback; every process
and the PostgreSQL server are stopped at the end, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from socketmap_bench import (  # noqa: E402
    DINOMAIL,
    PY_SPY,
    Processes,
    cpu_model,
    machine_busy,
    migrate,
    percentile,
    stopped_on_sigterm,
    tree_cpu_split,
    wait_for_port,
    worker_pids,
)

from tests.support.ports import free_port  # noqa: E402
from tests.support.postfix import POSTMAP, PostfixInstance, postfix_folder, postmap_config  # noqa: E402
from tests.support.postgres import PostgresServer, find_bindir  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
POSTCONF = shutil.which("postconf") or "/usr/sbin/postconf"
RECIPIENTS = 3
WAYS = ("lookupd", "unix", "policy", "mapsonly", "lmdb", "pgsql")

FILL_SQL = """
SET session_replication_role = replica;
INSERT INTO core_virtualdomain (id, name)
    SELECT d, 'd' || d || '.example.org' FROM generate_series(1, {domains}) AS d;
SELECT setval(pg_get_serial_sequence('core_virtualdomain', 'id'), {domains});
-- Mailbox n: <i>m<n / 3>@d<(n / 3) % domains + 1>, i = "", 2, 3 for n % 3 = 0, 1, 2.
INSERT INTO core_virtualuser (id, domain_id, email, password, quota)
    SELECT n + 1, (n / 3) % {domains} + 1,
           {prefix} || 'm' || (n / 3) || {domain},
           '{{SHA512-CRYPT}}$6$0123456789abcdef$' || md5(n::text), 1073741824
    FROM generate_series(0, {mailboxes} - 1) AS n;
SELECT setval(pg_get_serial_sequence('core_virtualuser', 'id'), {mailboxes});
-- Alias n: <i>a<n / 3>@d... to the mailbox of the same numbers; one in four to a
-- second, outside address too.
INSERT INTO core_virtualalias (domain_id, source, destination)
    SELECT (n / 3) % {domains} + 1,
           {prefix} || 'a' || (n / 3) || {domain},
           {prefix} || 'm' || (n / 3) || {domain}
    FROM generate_series(0, {plain_aliases} - 1) AS n;
INSERT INTO core_virtualalias (domain_id, source, destination)
    SELECT (n / 3) % {domains} + 1,
           {prefix} || 'a' || (n / 3) || {domain}, 'someone' || n || '@elsewhere.example.net'
    FROM generate_series(0, {plain_aliases} - 1, 4) AS n;
-- Catch-alls of the first domains, each to a mailbox of its domain.
INSERT INTO core_virtualalias (domain_id, source, destination)
    SELECT d, '@d' || d || '.example.org', 'm' || (d - 1) || '@d' || d || '.example.org'
    FROM generate_series(1, {catchalls}) AS d;
-- Alias domain k: ad<k>.example.net for d<k>.example.org.
INSERT INTO dinomail_aliasdomain (name, target_domain_id)
    SELECT 'ad' || k || '.example.net', k FROM generate_series(1, {alias_domains}) AS k;
SET session_replication_role = origin;
"""

# The local part's number as smtp-source writes it (none, 2, 3) and the domain of row n.
PREFIX_SQL = "(CASE n % 3 WHEN 0 THEN '' ELSE (n % 3 + 1)::text END)"
DOMAIN_SQL = "'@d' || ((n / 3) % {domains} + 1) || '.example.org'"

# PostfixAdmin's documented queries (DOCUMENTS/POSTFIX_CONF.txt), on DinoMail's tables. Its
# `alias` table also holds a row for each mailbox (address = goto), which DinoMail keeps in
# core_virtualuser: the alias query asks both in one round trip. Alias domains are rows of its
# `domain` table; here a second table, in the same one query.
PGSQL_MAPS = {
    "domains": "SELECT name FROM core_virtualdomain WHERE name='%s' AND active "
               "UNION ALL SELECT name FROM dinomail_aliasdomain WHERE name='%s' AND active",
    "mailboxes": "SELECT email FROM core_virtualuser WHERE email='%s' AND active",
    "alias_domain_mailboxes": (
        "SELECT m.email FROM core_virtualuser m, dinomail_aliasdomain ad, "
        "core_virtualdomain t WHERE ad.name = '%d' AND ad.target_domain_id = t.id "
        "AND m.email = '%u' || '@' || t.name AND m.active AND ad.active"),
    "aliases": "SELECT email FROM core_virtualuser WHERE email='%s' AND active "
               "UNION ALL SELECT destination FROM core_virtualalias WHERE source='%s'",
    "alias_domain_aliases": (
        "SELECT a.destination FROM core_virtualalias a, dinomail_aliasdomain ad, "
        "core_virtualdomain t WHERE ad.name = '%d' AND ad.target_domain_id = t.id "
        "AND a.source = '%u' || '@' || t.name AND ad.active "
        "UNION ALL SELECT m.email FROM core_virtualuser m, dinomail_aliasdomain ad, "
        "core_virtualdomain t WHERE ad.name = '%d' AND ad.target_domain_id = t.id "
        "AND m.email = '%u' || '@' || t.name AND m.active AND ad.active"),
    "alias_domain_catchall": (
        "SELECT a.destination FROM core_virtualalias a, dinomail_aliasdomain ad, "
        "core_virtualdomain t WHERE ad.name = '%d' AND ad.target_domain_id = t.id "
        "AND a.source = '@' || t.name AND ad.active"),
}


@dataclass
class Data:
    domains: int
    mailboxes: int
    aliases: int  # alias rows, catch-alls included
    alias_domains: int
    catchalls: int

    @property
    def plain_aliases(self) -> int:
        return self.aliases - self.catchalls - (self.aliases - self.catchalls) // 5

    def domain_of(self, group: int) -> int:
        return group % self.domains + 1


def fill(server: PostgresServer, database: str, data: Data) -> None:
    server.psql(FILL_SQL.format(
        prefix=PREFIX_SQL, domain=DOMAIN_SQL.format(domains=data.domains),
        domains=data.domains, mailboxes=data.mailboxes, plain_aliases=data.plain_aliases,
        catchalls=data.catchalls, alias_domains=data.alias_domains,
    ), database)
    server.psql("VACUUM ANALYZE", database)


# --- lmdb maps from the same data ----------------------------------------------------------------


async def write_lmdb_maps(url: str, folder: Path) -> dict[str, str]:
    """The same data as postmap source files, the alias domains expanded (an lmdb map has no
    joins): each address of a target domain also under the alias domain, its catch-all too."""
    connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        domains = [r[0] for r in await connection.fetch(
            "SELECT name FROM core_virtualdomain WHERE active")]
        alias_domains = [(r[0], r[1]) for r in await connection.fetch(
            "SELECT ad.name, t.name FROM dinomail_aliasdomain ad JOIN core_virtualdomain t "
            "ON t.id = ad.target_domain_id WHERE ad.active")]
        mailboxes = [r[0] for r in await connection.fetch(
            "SELECT email FROM core_virtualuser WHERE active")]
        aliases: dict[str, list[str]] = {}
        for source, destination in await connection.fetch(
                "SELECT source, destination FROM core_virtualalias ORDER BY id"):
            aliases.setdefault(source, []).append(destination)
    finally:
        await connection.close()
    # A mailbox resolves to itself, so that a catch-all does not take its mail (as lookupd).
    for mailbox in mailboxes:
        aliases.setdefault(mailbox, [mailbox])
    by_domain: dict[str, list[str]] = {}
    for source in list(aliases):
        by_domain.setdefault(source.rpartition("@")[2], []).append(source)
    for alias_domain, target in alias_domains:
        for source in by_domain.get(target, []):
            local = source.rpartition("@")[0]
            aliases[f"{local}@{alias_domain}"] = aliases[source]
    files = {
        "domains": "".join(f"{name} OK\n" for name in [*domains, *(a for a, _ in alias_domains)]),
        "mailboxes": "".join(f"{email} {email.replace('@', '/')}/\n" for email in mailboxes),
        "aliases": "".join(f"{source} {','.join(targets)}\n"
                           for source, targets in aliases.items()),
    }
    maps = {}
    config = postmap_config(folder / "postmap")
    for name, text in files.items():
        path = folder / f"{name}.map"
        path.write_text(text)
        subprocess.run([POSTMAP, "-c", str(config), f"lmdb:{path}"], check=True, timeout=600)
        maps[name] = f"lmdb:{path}"
    return maps


# --- the recipients ------------------------------------------------------------------------------


def source_targets(data: Data, count: int) -> list[tuple[str, str]]:
    """(kind, smtp-source -t address) for `count` smtp-source processes: half to mailboxes,
    half to aliases, alias domains and catch-alls. A message goes to `3<to>`, `2<to>`, `<to>`."""
    groups = data.mailboxes // RECIPIENTS
    alias_groups = data.plain_aliases // RECIPIENTS
    kinds = ["mailbox", "alias", "mailbox", "alias domain", "mailbox", "catch-all",
             "mailbox", "catch-all on alias domain"]
    targets = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        if kind == "mailbox":
            group = (n * 7919) % groups
            to = f"m{group}@d{data.domain_of(group)}.example.org"
        elif kind == "alias":
            group = (n * 104729) % alias_groups
            to = f"a{group}@d{data.domain_of(group)}.example.org"
        elif kind == "alias domain":
            k = n % data.alias_domains + 1
            to = f"m{k - 1}@ad{k}.example.net"  # group k-1 lives in domain k
        elif kind == "catch-all":
            to = f"nobody{n}@d{n % data.catchalls + 1}.example.org"
        else:
            to = f"nobody{n}@ad{n % min(data.catchalls, data.alias_domains) + 1}.example.net"
        targets.append((kind, to))
    return targets


# --- CPU of process trees ------------------------------------------------------------------------


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and every descendant, the exited ones included (a parent that
    reaped them counts them in its cutime/cstime)."""
    user, system = tree_cpu_split(root)
    return user + system


def voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def lookupd_workers(pid: int) -> list[int]:
    """lookupd's workers: the process itself when it runs alone (a supervisor has children)."""
    return worker_pids(pid) or [pid]


def lookups_done(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
               if line.startswith("dinomail_lookupd_lookups_total{"))


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Run:
    way: str
    messages: int
    seconds: float
    latencies: list[float]
    lookupd_cpu: float = 0.0
    lookupd_sys: float = 0.0  # the part of lookupd_cpu spent in the kernel
    # Times lookupd's workers went to sleep in epoll_wait and were woken (voluntary context
    # switches): one per lookup means each lookup pays a whole turn of the event loop.
    lookupd_wakeups: int = 0
    postgres_cpu: float = 0.0
    postfix_cpu: float = 0.0
    lookups: float = 0.0
    machine_busy: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def probe(port: int, to: list[str], stop: threading.Event, latencies: list[float]) -> None:
    """One SMTP transaction after another during the load: connect, 3 recipients, DATA."""
    message = b"Subject: probe\r\n\r\nprobe\r\n"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("probe@client.example", to, message)
        except (OSError, smtplib.SMTPException) as error:
            print(f"probe: {error}", flush=True)
            time.sleep(0.1)
            continue
        latencies.append(time.perf_counter() - started)
        stop.wait(0.02)


def queue_empty(postfix: PostfixInstance) -> bool:
    return not any(
        any(folder.rglob("*")) for name in ("incoming", "active", "deferred", "maildrop")
        if (folder := postfix.queue / name).exists()
    )


def send_load(way: str, postfix: PostfixInstance, args: argparse.Namespace, data: Data,
              probe_to: list[str], cpu_roots: dict[str, int], http_port: int | None) -> Run:
    targets = source_targets(data, args.sources)
    per_source = args.messages // len(targets)
    sessions = [args.sessions // len(targets) + (1 if n < args.sessions % len(targets) else 0)
                for n in range(len(targets))]
    before = {name: tree_cpu(pid) for name, pid in cpu_roots.items()}
    workers = lookupd_workers(cpu_roots["lookupd"])
    wakeups_before = sum(voluntary_switches(pid) for pid in workers)
    lookupd_sys_before = tree_cpu_split(cpu_roots["lookupd"])[1]
    lookups_before = lookups_done(http_port) if http_port else 0.0
    busy_before = machine_busy()
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(postfix.smtp_port, probe_to, stop, latencies))
    started = time.perf_counter()
    sources = [subprocess.Popen(
        [SMTP_SOURCE, "-s", str(max(1, count)), "-m", str(per_source), "-r", str(RECIPIENTS),
         "-f", "sender@client.example", "-t", to, "-l", "2000", "-M", "client.example",
         f"127.0.0.1:{postfix.smtp_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ) for (_, to), count in zip(targets, sessions, strict=True)]
    prober.start()
    errors = []
    for process in sources:
        _, stderr = process.communicate(timeout=1800)
        if process.returncode:
            errors.append(stderr.decode(errors="replace"))
    seconds = time.perf_counter() - started
    stop.set()
    prober.join()
    deadline = time.monotonic() + 600
    while not queue_empty(postfix) and time.monotonic() < deadline:
        time.sleep(0.2)
    busy_after = machine_busy()
    if errors:
        raise RuntimeError(f"smtp-source ({way}):\n" + "\n".join(errors)[:3000])
    messages = per_source * len(targets)
    run = Run(way, messages, seconds, latencies)
    after = {name: tree_cpu(pid) for name, pid in cpu_roots.items()}
    run.lookupd_cpu = after["lookupd"] - before["lookupd"]
    run.lookupd_sys = tree_cpu_split(cpu_roots["lookupd"])[1] - lookupd_sys_before
    run.lookupd_wakeups = sum(voluntary_switches(pid) for pid in workers) - wakeups_before
    run.postgres_cpu = after["postgres"] - before["postgres"]
    run.postfix_cpu = after["postfix"] - before["postfix"]
    run.lookups = (lookups_done(http_port) - lookups_before) if http_port else 0.0
    run.machine_busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    return run


# --- Postfix configured each way -----------------------------------------------------------------


def configure(postfix: PostfixInstance, way: str, sink_port: int, lmdb: dict[str, str],
              pgsql: dict[str, str], shipped: str, tcp_ports: tuple[int, int]) -> None:
    """The shipped main.cf again, then this way's maps and the relay to the sink."""
    (postfix.config / "main.cf").write_text(shipped)
    relay = f"smtp:[127.0.0.1]:{sink_port}"
    settings = [
        f"virtual_transport = {relay}", f"default_transport = {relay}",
        f"relay_transport = {relay}",
        # The sink takes every message: the bottleneck stays in front of it.
        "smtp_destination_concurrency_limit = 50", "default_destination_concurrency_limit = 50",
        "smtpd_client_connection_count_limit = 0", "smtpd_client_connection_rate_limit = 0",
        "smtpd_client_message_rate_limit = 0", "smtpd_client_recipient_rate_limit = 0",
        "smtp_connection_cache_on_demand = yes",
    ]
    if way == "unix":
        # The shipped lines, the lookup daemon reached over unix sockets in the queue's
        # private/ (which chrooted daemons see too).
        (postfix.config / "main.cf").write_text(
            shipped.replace(f"inet:127.0.0.1:{tcp_ports[0]}", "unix:private/dinomail-socketmap")
            .replace(f"inet:127.0.0.1:{tcp_ports[1]}", "unix:private/dinomail-policy"))
    if way == "policy":
        policy = f"check_policy_service inet:127.0.0.1:{tcp_ports[1]}"
        settings += [f"smtpd_recipient_restrictions = {policy}, permit_sasl_authenticated, "
                     "reject_unauth_destination", f"smtpd_end_of_data_restrictions = {policy}"]
    elif way == "mapsonly":
        settings += ["smtpd_recipient_restrictions = permit_sasl_authenticated, "
                     "reject_unauth_destination", "smtpd_end_of_data_restrictions ="]
    elif way == "lmdb":
        settings += [
            f"virtual_mailbox_domains = {lmdb['domains']}",
            f"virtual_mailbox_maps = {lmdb['mailboxes']}",
            f"virtual_alias_maps = {lmdb['aliases']}",
            f"smtpd_sender_login_maps = {lmdb['aliases']}",
            "smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_end_of_data_restrictions =",
        ]
    elif way == "pgsql":
        settings += [
            f"virtual_mailbox_domains = {pgsql['domains']}",
            f"virtual_mailbox_maps = {pgsql['mailboxes']}, {pgsql['alias_domain_mailboxes']}",
            f"virtual_alias_maps = {pgsql['aliases']}, {pgsql['alias_domain_aliases']}, "
            f"{pgsql['alias_domain_catchall']}",
            f"smtpd_sender_login_maps = {pgsql['aliases']}",
            "smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_end_of_data_restrictions =",
        ]
    subprocess.run([POSTCONF, "-c", str(postfix.config), "-e", *settings], check=True,
                   capture_output=True, timeout=60)


def postfix_master_pid(postfix: PostfixInstance) -> int:
    return int((postfix.queue / "pid" / "master.pid").read_text().split()[0])


def write_pgsql_maps(folder: Path, server: PostgresServer, database: str) -> dict[str, str]:
    maps = {}
    for name, query in PGSQL_MAPS.items():
        path = folder / f"pgsql-{name}.cf"
        path.write_text(f"user = postgres\nhosts = 127.0.0.1:{server.port}\n"
                        f"dbname = {database}\nquery = {query}\n")
        maps[name] = f"pgsql:{path}"
    return maps


# --- lookupd -------------------------------------------------------------------------------------


@dataclass
class Lookupd:
    process: subprocess.Popen[bytes]
    socketmap_port: int
    policy_port: int
    http_port: int
    log: Path
    worker_pids: list[int] = field(default_factory=list)


def start_lookupd(processes: Processes, url: str, folder: Path, workers: int,
                  unix_dir: Path | None = None) -> Lookupd:
    """`dinomail lookupd` on loopback ports; with `unix_dir`, its socketmap and policy on unix
    sockets there instead (Postfix's queue `private/`, as Dovecot's LMTP socket)."""
    ports = [free_port() for _ in range(3)]
    name = "lookupd-unix" if unix_dir else "lookupd"
    environ = {
        **os.environ,
        "DINOMAIL_DATABASE_URL": url,
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{ports[0]}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{ports[1]}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{ports[2]}",
        "DINOMAIL_DICT_LISTEN": f"unix:{folder / (name + '-dict.sock')}",
        "DINOMAIL_STATE_DIR": str(folder / f"{name}-state"),
        "DINOMAIL_LOOKUPD_WORKERS": str(workers),
    }
    if unix_dir is not None:
        environ |= {
            "DINOMAIL_SOCKETMAP_LISTEN": f"unix:{unix_dir / 'dinomail-socketmap'}",
            "DINOMAIL_POLICY_LISTEN": f"unix:{unix_dir / 'dinomail-policy'}",
            "DINOMAIL_UNIX_SOCKET_GROUP": "postfix",
        }
    log = folder / f"{name}.log"
    with log.open("wb") as stderr:
        process = processes.start([str(DINOMAIL), "lookupd"], env=environ,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    daemon = Lookupd(process, *ports, log)
    deadline = time.monotonic() + 300
    while log.read_text().count("snapshot loaded") < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"lookupd did not load:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    wait_for_port(ports[2], process)
    daemon.worker_pids = lookupd_workers(process.pid)
    return daemon


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- profile -------------------------------------------------------------------------------------


def profiled(processes: Processes, pid: int, folder: Path, work: object,
             native: bool) -> tuple[object, str]:
    """Run `work()` while py-spy samples `pid` (with `native`, uvloop's and CPython's C
    functions too); the busiest functions by own and total time."""
    from collections import Counter

    raw = folder / "profile.txt"
    spy = processes.start([str(PY_SPY), "record", "--pid", str(pid), "--format", "raw",
                           "--rate", "250", "--output", str(raw),
                           *(["--native"] if native else [])],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    result = work()  # type: ignore[operator]
    processes.stop(spy, 2)  # SIGINT: py-spy writes its output
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        samples += int(count_text)
        own[frames[-1]] += int(count_text)
        for frame in set(frames):
            total[frame] += int(count_text)
    lines = [f"py-spy: {samples} samples of a lookupd worker while busy (idle excluded).", "",
             "| function | own % | total % |", "|---|---:|---:|"]
    shown = [name for name, _ in own.most_common(30)]
    shown += [name for name, _ in total.most_common(40) if name not in shown][:12]
    for name in shown:
        short = name.replace(str(ROOT) + "/", "")
        short = short.split("site-packages/")[-1].split("lib/python3.11/")[-1]
        lines.append(f"| `{short}` | {100 * own[name] / max(1, samples):.1f} "
                     f"| {100 * total[name] / max(1, samples):.1f} |")
    return result, "\n".join(lines)


# --- report --------------------------------------------------------------------------------------


def report(runs: dict[str, list[Run]], ways: list[str]) -> str:
    out = ["| way | messages/s | vs lmdb | vs pgsql | latency p50 ms | p99 ms | lookupd CPU "
           "ms/msg | PostgreSQL CPU ms/msg | Postfix CPU ms/msg | lookups/msg | lookupd µs/lookup "
           "(in the kernel) | lookupd wake-ups/lookup | machine busy |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for way in ways:
        done = runs[way]
        rate = statistics.median(r.rate for r in done)

        def ratio(other: str, done: list[Run] = done, way: str = way) -> str:
            if other not in runs or other == way:
                return "-"
            each = [a.rate / b.rate for a, b in zip(done, runs[other], strict=True)]
            return f"{statistics.median(each):.2f} ({min(each):.2f}–{max(each):.2f})"

        latencies = [value for r in done for value in r.latencies]

        def per_message(attr: str, done: list[Run] = done) -> float:
            return statistics.median(getattr(r, attr) / r.messages for r in done) * 1000

        lookups = statistics.median(r.lookups / r.messages for r in done)
        per_lookup = (statistics.median(r.lookupd_cpu / r.lookups for r in done) * 1e6
                      if lookups else 0.0)
        kernel = (statistics.median(r.lookupd_sys / r.lookups for r in done) * 1e6
                  if lookups else 0.0)
        wakeups = (statistics.median(r.lookupd_wakeups / r.lookups for r in done)
                   if lookups else 0.0)
        out.append(
            f"| {way} | {rate:,.0f} | {ratio('lmdb')} | {ratio('pgsql')} "
            f"| {1000 * percentile(latencies, 0.5):.1f} | {1000 * percentile(latencies, 0.99):.1f} "
            f"| {per_message('lookupd_cpu'):.2f} | {per_message('postgres_cpu'):.2f} "
            f"| {per_message('postfix_cpu'):.2f} | {lookups:.1f} "
            f"| {per_lookup:.0f} ({kernel:.0f}) | {wakeups:.2f} "
            f"| {100 * statistics.median(r.machine_busy for r in done):.0f}% |")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, server: PostgresServer, processes: Processes,
              folder: Path, postfix_root: Path) -> None:
    started = time.perf_counter()
    data = Data(domains=args.domains, mailboxes=args.mailboxes, aliases=args.aliases,
                alias_domains=args.alias_domains, catchalls=args.catchalls)
    database = "dinomail_bench"
    url = server.create_database(database)
    migrate(url)
    print(f"filling {data.mailboxes:,} mailboxes, {data.aliases:,} alias rows ...", flush=True)
    fill(server, database, data)
    lmdb = asyncio.run(write_lmdb_maps(url, postfix_root)) if "lmdb" in args.ways else {}
    pgsql = write_pgsql_maps(postfix_root, server, database)
    lookupd = start_lookupd(processes, url, folder, args.workers)
    memory = [rss_mib(pid) for pid in lookupd.worker_pids]
    print(f"lookupd loaded; RSS per worker {memory} MiB", flush=True)

    sink_port = free_port()
    sink = processes.start([SMTP_SINK, "-u", "postfix", f"127.0.0.1:{sink_port}", "256"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(sink_port, sink)
    postfix = PostfixInstance(
        postfix_root / "postfix", smtp_port=free_port(),
        socketmap=f"inet:127.0.0.1:{lookupd.socketmap_port}",
        policy=f"inet:127.0.0.1:{lookupd.policy_port}",
    )
    shipped = (postfix.config / "main.cf").read_text()
    tcp_ports = (lookupd.socketmap_port, lookupd.policy_port)
    daemons = {"lookupd": lookupd, "policy": lookupd, "mapsonly": lookupd}
    if "unix" in args.ways:
        private = postfix.queue / "private"
        private.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(private, "postfix")
        daemons["unix"] = start_lookupd(processes, url, folder, args.workers, private)
    probe_to = [f"{i}m0@d1.example.org" for i in ("", "2", "3")]
    postgres_pid = int((server.data / "postmaster.pid").read_text().split()[0])
    runs: dict[str, list[Run]] = {way: [] for way in args.ways}
    profile = ""
    try:
        for number in range(args.rounds + 1):  # round 0 warms every way up, not counted
            shift = number % len(args.ways)
            for way in args.ways[shift:] + args.ways[:shift]:
                configure(postfix, way, sink_port, lmdb, pgsql, shipped, tcp_ports)
                postfix.start()
                try:
                    daemon = daemons.get(way, lookupd)
                    roots = {"postgres": postgres_pid, "postfix": postfix_master_pid(postfix),
                             "lookupd": daemon.process.pid}
                    http = daemon.http_port if way in daemons else None
                    quick = argparse.Namespace(**{**vars(args), "messages": args.messages // 5}) \
                        if number == 0 else args
                    run = send_load(way, postfix, quick, data, probe_to, roots, http)
                finally:
                    postfix.stop()
                if number == 0:
                    print(f"warm-up {way}: {run.rate:,.0f} messages/s", flush=True)
                    continue
                runs[way].append(run)
                print(f"round {number} {way}: {run.rate:,.0f} messages/s, "
                      f"lookups/msg {run.lookups / run.messages:.1f}", flush=True)
        if args.profile:
            configure(postfix, "lookupd", sink_port, lmdb, pgsql, shipped, tcp_ports)
            postfix.start()
            try:
                roots = {"postgres": postgres_pid, "postfix": postfix_master_pid(postfix),
                         "lookupd": lookupd.process.pid}
                run, profile = profiled(
                    processes, lookupd.worker_pids[0], folder,
                    lambda: send_load("lookupd", postfix, args, data, probe_to, roots,
                                      lookupd.http_port),
                    args.profile == "native")
            finally:
                postfix.stop()
            assert isinstance(run, Run)
            profile += f"\n\n(That run, slowed by sampling: {run.rate:,.0f} messages/s.)"
    finally:
        with contextlib.suppress(Exception):
            postfix.stop()
    memory_end = [rss_mib(pid) for pid in lookupd.worker_pids]

    print()
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}, shared with other work; load "
          f"average at the end {os.getloadavg()[0]:.2f}.")
    print(f"Data: {data.domains:,} domains, {data.mailboxes:,} mailboxes, {data.aliases:,} alias "
          f"rows ({data.catchalls} catch-alls), {data.alias_domains} alias domains. Load: "
          f"{args.messages:,} messages a run from {args.sources} smtp-source processes, "
          f"{args.sessions} sessions in all, {RECIPIENTS} recipients a message; {args.rounds} "
          f"rounds after a warm-up round, medians (ratios: per round, median and range). "
          f"lookupd workers: {args.workers}, RSS per worker after load {memory} MiB, at the "
          f"end {memory_end} MiB. Took {time.perf_counter() - started:.0f} s.")
    print()
    print(report(runs, args.ways))
    if profile:
        print()
        print(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--aliases", type=int, default=60_000)
    parser.add_argument("--alias-domains", type=int, default=100)
    parser.add_argument("--catchalls", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--sessions", type=int, default=20, help="SMTP sessions at once")
    parser.add_argument("--sources", type=int, default=8, help="smtp-source processes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="LOOKUPD_WORKERS")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--profile", nargs="?", const="python", choices=("python", "native"),
                        help="sample a lookupd worker with py-spy (native: C functions too)")
    parser.add_argument("--quick", action="store_true", help="a small run to try it out")
    args = parser.parse_args()
    args.ways = args.ways.split(",")
    if args.quick:
        args.mailboxes, args.aliases, args.domains = 10_000, 6_000, 100
        args.catchalls, args.alias_domains = 10, 10
        args.messages, args.rounds = 3_000, 1
    if args.profile and not PY_SPY.exists():
        sys.exit(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
    bindir = find_bindir()
    if bindir is None or not Path(SMTP_SOURCE).exists():
        sys.exit("needs PostgreSQL's server binaries and Postfix (smtp-source, smtp-sink)")
    folder = Path(tempfile.mkdtemp(prefix="dinomail-postfix-cost-"))
    processes = Processes()
    with stopped_on_sigterm(), postfix_folder() as postfix_root:
        server = PostgresServer(bindir)
        try:
            server.start()
            benchmark(args, server, processes, folder, postfix_root)
        finally:
            processes.stop_all()
            server.destroy()
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
