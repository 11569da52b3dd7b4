"""The vacation Sieve script, compiled by Pigeonhole's sievec and run by its sieve-test: texts
that could break out of a string stay text, and automatic or list mail gets no reply."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

from dinomail.sieve import quote, script_id, vacation_script
from tests.support.dovecot import make_root

SIEVEC = shutil.which("sievec") or "/usr/bin/sievec"
SIEVE_TEST = shutil.which("sieve-test") or "/usr/bin/sieve-test"

TRICKY = [
    'a "quoted" word',
    "a backslash \\ and \\\" an escaped quote",
    "ends with a backslash \\",
    'closing the string " ; discard; "',
    "line one\n.\nline three after a lone dot\n.",
    "}\nkeep;\nif true {",
    "non-ASCII: élan, Grüße, 日本語, 🦕",
    "${variables} and ${hex:41} stay as they are",
    "text:\nsome\n.\n",
    "#comment-looking\n/* and a comment */",
]


def _settings(body: str, subject: str = "", **extra: object) -> dict:
    return {"subject": subject, "body": body, "starts": None, "ends": None,
            "interval_days": 7, **extra}


def _write(folder: Path, script: str) -> Path:
    path = folder / "vacation.sieve"
    path.write_text(script, encoding="utf-8")
    return path


def _compile(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIEVEC, str(path), str(path.with_suffix(".svbin"))],
                          capture_output=True, text=True, timeout=30)


def _run(folder: Path, script: str, headers: str) -> str:
    """sieve-test's list of actions for a message with `headers` to ann@example.org."""
    config = folder / "sieve-test.conf"
    config.write_text(f"mail_uid = nobody\nmail_gid = nogroup\n"
                      f"mail_location = maildir:{folder}/Maildir\n")
    path = _write(folder, script)
    message = folder / "message.eml"
    message.write_text(
        f"From: bob@example.net\nTo: ann@example.org\n{headers}Subject: hello\n\nHi!\n"
    )
    result = subprocess.run(
        [SIEVE_TEST, "-c", str(config), "-a", "ann@example.org", "-r", "ann@example.org",
         "-f", "bob@example.net", str(path), str(message)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def folder() -> Path:
    root = make_root("dinomail-sieve-")
    root.chmod(0o777)  # sieve-test drops to nobody
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_quote_escapes_only_quote_and_backslash() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\nd"'


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts_compile_and_are_replied_verbatim(folder: Path, text: str) -> None:
    script = vacation_script(_settings(text, subject=text.replace("\n", " ")),
                             ["ann@example.org", 'we"ird@example.org'])
    compiled = _compile(_write(folder, script))
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    actions = _run(folder, script, "")
    assert "send vacation message" in actions
    assert f"START MESSAGE\n{text}\nEND MESSAGE" in actions
    assert f"subject : {text.replace(chr(10), ' ')}\n" in actions
    # Nothing from the text ran as a command: the message is kept, one reply is all.
    assert "Implicit keep:\n\n * store message in folder: INBOX" in actions
    assert actions.count("send vacation message") == 1


@pytest.mark.parametrize(
    ("headers", "replied"),
    [
        ("", True),
        ("Auto-Submitted: no\n", True),
        ("Auto-Submitted: auto-generated\n", False),
        ("Auto-Submitted: auto-replied\n", False),
        ("List-Id: Friends <friends.example.net>\n", False),
        ("List-Unsubscribe: <mailto:leave@example.net>\n", False),
        ("Precedence: bulk\n", False),
        ("Precedence: LIST\n", False),
        ("Precedence: junk\n", False),
        ("Precedence: first-class\n", True),
    ],
)
def test_automatic_and_list_mail_get_no_reply(folder: Path, headers: str, replied: bool) -> None:
    actions = _run(folder, vacation_script(_settings("Away.")), headers)
    assert ("send vacation message" in actions) is replied
    assert "store message in folder: INBOX" in actions  # the message itself is always kept


@pytest.mark.parametrize(
    ("starts", "ends", "replied"),
    [
        (-1, 1, True),
        (0, 0, True),
        (1, None, False),
        (None, -1, False),
        (None, 0, True),
        (-3, None, True),
    ],
)
def test_dates_bound_the_replies(
    folder: Path, starts: int | None, ends: int | None, replied: bool
) -> None:
    today = date.today()
    settings = _settings(
        "Away.",
        starts=None if starts is None else today + timedelta(days=starts),
        ends=None if ends is None else today + timedelta(days=ends),
    )
    actions = _run(folder, vacation_script(settings), "")
    assert ("send vacation message" in actions) is replied


def test_days_and_addresses_reach_the_action(folder: Path) -> None:
    script = vacation_script(_settings("Away.", interval_days=3), ["alias@example.org"])
    actions = _run(folder, script, "")
    assert f"seconds : {3 * 86400}" in actions
    assert ':addresses ["alias@example.org"]' in script
    assert script_id(script) != script_id(vacation_script(_settings("Away.")))
