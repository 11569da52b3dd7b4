"""Time to hash and to verify a password with each scheme at its default cost.

For every scheme of `dinomail.passwords`, times `hash_password` and `verify_password` (the
median of a few runs) and, where /usr/bin/doveadm is installed, `doveadm pw -t` on the same
hash minus the time doveadm takes for a PLAIN hash (the fastest of more runs each, since process
start-up varies more than a fast scheme costs), which leaves what Dovecot spends checking the
password at login. Prints a Markdown table; `--write FILE` also puts it, with the command and
the machine, under the "## Password schemes (issue 3)" heading of FILE (benchmarks/RESULTS.md),
replacing that section only.

    .venv/bin/python benchmarks/passwords.py [--iterations N] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dinomail.passwords import SCHEMES, WEAK_SCHEMES, hash_password, verify_password

HEADING = "## Password schemes (issue 3)"
TITLE = "# Benchmark results"
DOVEADM = Path("/usr/bin/doveadm")
PASSWORD = "correct horse battery staple"
USER = "anne@example.org"

# What "default cost" means for each scheme that has one (Dovecot 2.3's defaults).
DEFAULT_COSTS = {
    "CRYPT": "bcrypt cost 5",
    "BLF-CRYPT": "cost 5",
    "SHA256-CRYPT": "5000 rounds",
    "SHA512-CRYPT": "5000 rounds",
    "MD5-CRYPT": "1000 rounds",
    "DES-CRYPT": "25 DES rounds",
    "MD5": "MD5-CRYPT, 1000 rounds",
    "ARGON2I": "t=4, m=32 MiB",
    "ARGON2ID": "t=3, m=64 MiB",
    "PBKDF2": "5000 iterations",
    "SCRAM-SHA-1": "4096 iterations",
    "SCRAM-SHA-256": "4096 iterations",
    "OTP": "1024 steps",
}


DOVEADM_RUNS = 15


def timings_ms(action: Callable[[], object], iterations: int) -> list[float]:
    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def median_ms(action: Callable[[], object], iterations: int) -> float:
    return statistics.median(timings_ms(action, iterations))


def doveadm_check_ms(stored: str) -> float:
    def check() -> None:
        subprocess.run(
            [str(DOVEADM), "pw", "-t", stored, "-p", PASSWORD, "-u", USER],
            check=True, capture_output=True,
        )

    return min(timings_ms(check, DOVEADM_RUNS))


def measure(iterations: int) -> list[tuple[str, str, float, float, float | None]]:
    doveadm_schemes: set[str] = set()
    baseline = 0.0
    if DOVEADM.exists():
        listed = subprocess.run(
            [str(DOVEADM), "pw", "-l"], check=True, capture_output=True, text=True
        )
        doveadm_schemes = set(listed.stdout.split())
        baseline = doveadm_check_ms("{PLAIN}" + PASSWORD)
    rows = []
    for scheme in SCHEMES:
        stored = hash_password(PASSWORD, scheme, user=USER)
        hashing = median_ms(lambda s=scheme: hash_password(PASSWORD, s, user=USER), iterations)
        checking = median_ms(lambda h=stored: verify_password(PASSWORD, h, user=USER), iterations)
        dovecot = None
        if scheme in doveadm_schemes:
            dovecot = max(doveadm_check_ms(stored) - baseline, 0.0)
        rows.append((scheme, DEFAULT_COSTS.get(scheme, "none"), hashing, checking, dovecot))
    rows.sort(key=lambda row: row[3], reverse=True)
    return rows


def table(rows: list[tuple[str, str, float, float, float | None]]) -> str:
    lines = [
        "| scheme | weak | default cost | hash (ms) | verify (ms) | verifications/s, 1 core "
        "| Dovecot check (ms) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for scheme, cost, hashing, checking, dovecot in rows:
        per_second = f"{1000 / checking:,.0f}" if checking > 0 else "-"
        dovecot_text = "-" if dovecot is None else f"{dovecot:.1f}"
        lines.append(
            f"| {scheme} | {'weak' if scheme in WEAK_SCHEMES else ''} | {cost} | {hashing:.3f} "
            f"| {checking:.3f} | {per_second} | {dovecot_text} |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def section(rows: list[tuple[str, str, float, float, float | None]], command: str) -> str:
    by_name = {row[0]: row for row in rows}

    def check_ms(scheme: str) -> float:
        row = by_name[scheme]
        return row[4] if row[4] is not None else row[3]

    default = check_ms("SHA512-CRYPT")
    argon = check_ms("ARGON2ID")
    cores = os.cpu_count() or 1
    return "\n".join([
        HEADING,
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cores} cores, {cpu_model()}, Python {platform.python_version()}"
        f" ({sys.implementation.name}), {platform.system()} {platform.release()}.",
        "",
        "Every hash uses the scheme's default cost. \"hash\" and \"verify\" are the median of"
        " the runs of `hash_password` and `verify_password` in Python (libpass computes DES, MD5"
        " and SHA crypt in Python, argon2-cffi and bcrypt in C). \"Dovecot check\" is the fastest"
        f" of {DOVEADM_RUNS} runs of `doveadm pw -t` on the same hash minus the fastest for a"
        " PLAIN hash: what Dovecot's auth worker spends on the password at login, to about"
        " ±0.5 ms (\"-\": doveadm 2.3.19 lacks the scheme).",
        "",
        table(rows),
        "",
        "What it means for logins: Dovecot checks the password once per login that misses its"
        " auth cache, in an auth worker process. At the default SHA512-CRYPT that costs about"
        f" {default:.1f} ms of CPU, so {cores} cores absorb roughly"
        f" {cores * 1000 / max(default, 0.001):,.0f} uncached logins per second; ARGON2ID at its"
        f" default costs about {argon:.0f} ms and 64 MiB per check, about"
        f" {cores * 1000 / max(argon, 0.001):,.0f} logins per second on these cores and up to"
        " `auth_worker_max_count` × 64 MiB of memory. An attacker holding the database pays the"
        " same per guess and core, so the microsecond rows (unsalted digests, MD5 and DES era"
        " schemes) are refused as weak unless ALLOW_WEAK_PASSWORD_SCHEMES is set; the salted"
        " SSHA family is as fast and stays allowed only because Dovecot 2.4 allows it and it was"
        " the original default (SSHA512).",
        "",
    ])


def write_section(path: Path, text: str) -> None:
    """Put `text` in place of the section under HEADING, or append it; keep everything else."""
    content = path.read_text() if path.exists() else f"{TITLE}\n\n"
    lines = content.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == HEADING), None)
    if start is None:
        if not content.endswith("\n\n"):
            content = content.rstrip("\n") + "\n\n"
        path.write_text(content + text)
        return
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "# "))),
        len(lines),
    )
    after = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + text + ("\n" + after if after else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="runs per measure (median)")
    parser.add_argument("--write", type=Path, help="update this Markdown file's section")
    args = parser.parse_args()
    rows = measure(args.iterations)
    command = ".venv/bin/python benchmarks/passwords.py " + " ".join(sys.argv[1:])
    text = section(rows, command.strip())
    print(text)
    if args.write is not None:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
