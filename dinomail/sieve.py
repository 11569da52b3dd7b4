"""The Sieve script of a vacation reply (RFC 5230), made from a mailbox's settings.

Dovecot's Pigeonhole runs it before the user's own scripts (`sieve_before`, read from the lookup
daemon over the dict protocol), so scripts a user uploads with ManageSieve keep running after it.

What it never answers (RFC 3834 section 2): mail marked automatic (`Auto-Submitted` other than
`no`), mail from lists (any `List-*` header of RFC 2369/2919) and bulk mail (`Precedence` bulk,
list or junk). Pigeonhole's vacation also skips some of these, and mail from `<>` or
mailer-daemons; saying it here makes the rule not depend on its version or settings.

Every user text goes into quoted strings, where only `"` and `\\` are special (RFC 5228 2.4.2):
escaping those two is all it takes, whatever the text holds (line breaks, a lone "." line,
non-ASCII, `${...}`, which only the variables extension, not required here, would expand).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

# Headers whose presence marks list mail (RFC 2369, RFC 2919).
LIST_HEADERS = (
    "list-id", "list-unsubscribe", "list-post", "list-help", "list-subscribe", "list-owner",
    "list-archive",
)
BULK_PRECEDENCES = ("bulk", "list", "junk")


def quote(text: str) -> str:
    """A Sieve quoted string holding exactly `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(quote(item) for item in items) + "]"


def vacation_script(settings: Mapping[str, Any], addresses: Sequence[str] = ()) -> str:
    """The script for enabled vacation `settings` (the store's fields: subject, body, starts,
    ends, interval_days); `addresses` are the mailbox's other addresses (aliases, alias
    domains), for which a message counts as sent to the mailbox too."""
    starts: date | None = settings.get("starts")
    ends: date | None = settings.get("ends")
    require = ["vacation"]
    tests = [
        "not anyof (" + ", ".join(f"exists {quote(name)}" for name in LIST_HEADERS) + ")",
        'not header :comparator "i;ascii-casemap" :is "precedence" '
        + string_list(BULK_PRECEDENCES),
        'anyof (not exists "auto-submitted", '
        'header :comparator "i;ascii-casemap" :is "auto-submitted" "no")',
    ]
    if starts is not None or ends is not None:
        require += ["date", "relational"]
    if starts is not None:
        tests.append(f'currentdate :value "ge" "date" {quote(starts.isoformat())}')
    if ends is not None:
        tests.append(f'currentdate :value "le" "date" {quote(ends.isoformat())}')
    arguments = [f":days {int(settings['interval_days'])}"]
    if settings.get("subject"):
        arguments.append(f":subject {quote(settings['subject'])}")
    if addresses:
        arguments.append(f":addresses {string_list(addresses)}")
    conditions = ",\n    ".join(tests)
    return (
        "# DinoMail: the vacation reply of this mailbox, made from its settings.\n"
        f"require {string_list(require)};\n"
        "\n"
        f"if allof (\n    {conditions}\n) {{\n"
        f"  vacation {' '.join(arguments)}\n"
        f"    {quote(settings['body'])};\n"
        "}\n"
    )


def script_id(script: str) -> str:
    """A name for this version of a script: Pigeonhole compares it to know when to recompile."""
    return "vacation-" + hashlib.sha256(script.encode("utf-8")).hexdigest()[:32]
