"""What a real Postfix or Dovecot must never write to its log during a test.

A panic, a fatal error or a process killed by a signal means mail stopped for someone, even when
the test's own checks passed (an auth worker that dies after the lookup the test made, say).
`PostfixInstance.stop` and `DovecotInstance.stop` call `assert_clean_log`, so every test that
starts one of them fails on such a line.
"""

from __future__ import annotations

import re

# Dovecot: "Panic: …", "Fatal: …", "child 123 (auth) killed with signal 6";
# Postfix: "fatal: …", "panic: …", "process … pid 123 killed by signal 11".
CRASH_LINE = re.compile(
    r"\b(?:Panic|Fatal|panic|fatal): |killed (?:with|by) signal", re.MULTILINE
)


def crash_lines(log: str) -> list[str]:
    """The lines of `log` that report a panic, a fatal error or a crash."""
    return [line for line in log.splitlines() if CRASH_LINE.search(line)]


def assert_clean_log(name: str, log: str) -> None:
    bad = crash_lines(log)
    if bad:
        shown = "\n".join(bad[:20])
        raise AssertionError(f"{name} logged {len(bad)} crash or fatal line(s):\n{shown}")
