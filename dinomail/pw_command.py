"""`dinomail pw`: make or check a password hash with the flags, output and exit codes of
`doveadm pw` (Dovecot 2.3.19), so scripts written for one work with the other.

    dinomail pw [-l] [-p password] [-r rounds] [-s scheme] [-t hash] [-u user] [-V]

Exit codes: 0 done, 64 bad usage, 75 any fatal error (doveadm's i_fatal), 1 when the password
was typed differently three times. Where doveadm does something unhelpful, this does not:
its PLAIN-TRUNC hashes fail its own check (ours carry the length), end of input at a prompt
is an error rather than an empty password, `-r` accepts only a whole number, `-r` below the
Argon2i minimum is raised to it rather than failing, and a usage error also prints the usage.
`-l` lists LANMAN and NTLM too, which are made only when named.
"""

from __future__ import annotations

import getopt
import getpass
import sys
from dataclasses import dataclass
from typing import TextIO

from dinomail.passwords import (
    DEFAULT_SCHEME,
    SCHEMES,
    PasswordSchemeError,
    UnknownSchemeError,
    hash_password,
    split_stored,
    verify_password,
)
from dinomail.passwords.schemes import lookup_scheme

EXIT_OK = 0
EXIT_PROMPTS_DIFFER = 1
EXIT_USAGE = 64  # EX_USAGE, as doveadm
EXIT_FATAL = 75  # doveadm's status for i_fatal()
EXIT_INTERRUPTED = 130

USAGE = "usage: dinomail pw [-l] [-p password] [-r rounds] [-s scheme] [-t hash] [-u user] [-V]"
OPTIONS = "lp:r:s:t:u:V"
PROMPT_ATTEMPTS = 3
UINT_MAX = 2**32 - 1


class Fatal(Exception):
    """Printed as `Fatal: <message>`, exit 75."""


class UsageError(Exception):
    """A bad flag or an extra argument: one line with the usage, exit 64."""


class PromptsDiffer(Exception):
    pass


@dataclass
class Request:
    list_schemes: bool = False
    plaintext: str | None = None
    rounds: int = 0
    scheme: str | None = None
    test_hash: str | None = None
    user: str | None = None
    reverse_verify: bool = False


def _write(stream: TextIO, line: str) -> None:
    # A PLAIN hash of a password given as non-UTF-8 bytes holds surrogate escapes; write the
    # original bytes back rather than failing on them.
    data = (line + "\n").encode("utf-8", "surrogateescape")
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
        return
    stream.flush()
    buffer.write(data)
    buffer.flush()


def _getopt_message(error: getopt.GetoptError) -> str:
    option = error.opt
    if "requires argument" in error.msg:
        return f"pw: option requires an argument -- '{option}'"
    if len(option) > 1:
        return f"pw: unrecognized option '--{option}'"
    return f"pw: invalid option -- '{option}'"


def _parse_rounds(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > UINT_MAX:
        raise Fatal(f"Invalid number of rounds: {text}")
    return int(text)


def _parse(argv: list[str]) -> Request:
    try:
        options, extra = getopt.gnu_getopt(argv, OPTIONS)
    except getopt.GetoptError as error:
        raise UsageError(_getopt_message(error)) from None
    if extra:
        raise UsageError("Error: Extraneous arguments found: " + " ".join(extra))
    request = Request()
    for flag, value in options:
        if flag == "-l":
            request.list_schemes = True
        elif flag == "-p":
            request.plaintext = value
        elif flag == "-r":
            request.rounds = _parse_rounds(value)
        elif flag == "-s":
            request.scheme = value
        elif flag == "-t":
            request.test_hash = value
            request.reverse_verify = True
        elif flag == "-u":
            request.user = value
        else:
            request.reverse_verify = True
    return request


def _ask(prompt: str) -> str:
    # Like doveadm, a terminal gets a prompt without echo and a pipe is read line by line
    # (`echo "$pw" | dinomail pw`), without a prompt.
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            return getpass.getpass(prompt)
        except EOFError:
            pass
    elif sys.stdin is not None:
        line = sys.stdin.readline()
        if line:
            return line.removesuffix("\n")
    raise Fatal("no password given (end of input)")


def _ask_new_password() -> str:
    for _ in range(PROMPT_ATTEMPTS):
        password = _ask("Enter new password: ")
        if _ask("Retype new password: ") == password:
            return password
        _write(sys.stderr, "Error: Passwords don't match!")
    raise PromptsDiffer


def _rounds_for(scheme: str, rounds: int) -> int | None:
    # As doveadm: 0 means the default, schemes without a cost ignore -r, and a value outside
    # the scheme's limits is moved to the nearest one.
    limits = lookup_scheme(scheme)[0].rounds
    if rounds == 0 or limits is None:
        return None
    return limits.clamp(rounds)


def _check(plaintext: str, stored: str, user: str | None) -> str:
    """The line doveadm prints for a hash that matches; Fatal otherwise."""
    try:
        scheme, data = split_stored(stored)
    except PasswordSchemeError:
        raise Fatal("Missing {scheme} prefix from hash") from None
    try:
        matched = verify_password(plaintext, stored, user=user)
    except UnknownSchemeError:
        raise Fatal("reverse decode check failed: Unknown scheme") from None
    except PasswordSchemeError as error:
        raise Fatal(f"reverse password verification check failed: {error}") from None
    if not matched:
        raise Fatal("reverse password verification check failed: Password mismatch")
    return f"{{{scheme}}}{data} (verified)"


def _run(request: Request, default_scheme: str) -> None:
    scheme = (request.scheme or default_scheme).upper()
    try:
        lookup_scheme(scheme)
    except UnknownSchemeError:
        raise Fatal(f"Unknown scheme: {scheme}") from None
    plaintext = request.plaintext
    if plaintext is None:
        if request.test_hash is not None:
            plaintext = _ask("Enter password to verify: ")
        else:
            plaintext = _ask_new_password()
    if request.test_hash is not None:
        _write(sys.stdout, _check(plaintext, request.test_hash, request.user))
        return
    try:
        hashed = hash_password(
            plaintext, scheme, user=request.user, rounds=_rounds_for(scheme, request.rounds)
        )
    except PasswordSchemeError as error:
        raise Fatal(str(error)) from None
    if request.reverse_verify:
        _write(sys.stdout, _check(plaintext, hashed, request.user))
    else:
        _write(sys.stdout, hashed)


def main(argv: list[str], default_scheme: str = DEFAULT_SCHEME) -> int:
    """Run `dinomail pw` with `argv` (without the program and command names)."""
    try:
        request = _parse(argv)
    except UsageError as error:
        _write(sys.stderr, f"{error}; {USAGE}")
        return EXIT_USAGE
    except Fatal as error:
        _write(sys.stderr, f"Fatal: {error}")
        return EXIT_FATAL
    if request.list_schemes:
        # doveadm's layout: every name followed by a space, then the newline.
        _write(sys.stdout, "".join(f"{name} " for name in SCHEMES))
        return EXIT_OK
    try:
        _run(request, default_scheme)
    except Fatal as error:
        _write(sys.stderr, f"Fatal: {error}")
        return EXIT_FATAL
    except PromptsDiffer:
        return EXIT_PROMPTS_DIFFER
    except KeyboardInterrupt:
        _write(sys.stderr, "")
        return EXIT_INTERRUPTED
    except Exception as error:  # a command line tool answers in one line, never a traceback
        _write(sys.stderr, f"Fatal: {type(error).__name__}: {error}")
        return EXIT_FATAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
