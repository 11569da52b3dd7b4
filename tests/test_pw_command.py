"""`dinomail pw`: the flags, output and exit codes of `doveadm pw`, compared with the real one
where /usr/bin/doveadm is installed."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dinomail import pw_command
from dinomail.passwords import SCHEMES, verify_password
from dinomail.pw_command import main
from tests.support.password_vectors import DOVEADM_SCHEMES, DOVEADM_VECTORS, PASSWORD, USER, WRONG

DOVEADM = Path("/usr/bin/doveadm")
needs_doveadm = pytest.mark.skipif(not DOVEADM.exists(), reason="doveadm is not installed")

SHA_OF_SECRET = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="
MISMATCH = "Fatal: reverse password verification check failed: Password mismatch\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str, **kwargs: str) -> tuple[int, str, str]:
    status = main(list(argv), **kwargs)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class Keyboard:
    """What the user types at the prompts, in order, and the prompts shown."""

    answers: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    def getpass(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


@pytest.fixture
def keyboard(monkeypatch: pytest.MonkeyPatch) -> Keyboard:
    typing = Keyboard()
    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(pw_command.getpass, "getpass", typing.getpass)
    return typing


# -- listing and hashing ------------------------------------------------------------------------


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-l")
    assert (status, err) == (0, "")
    assert out == " ".join(SCHEMES) + " \n"


def test_hash_with_a_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-s", "sha", "-p", "secret") == (0, SHA_OF_SECRET + "\n", "")
    assert run(capsys, "-s", "sha.hex", "-p", "secret") == (
        0, "{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4\n", ""
    )
    status, out, _ = run(capsys, "-p", "secret", "-s", "digest-md5", "-u", "user@example.com")
    assert (status, out) == (0, "{DIGEST-MD5}30969131580e626606ce70ceaab77719\n")


def test_default_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-p", "secret")
    assert status == 0 and out.startswith("{SHA512-CRYPT}$6$")
    status, out, _ = run(capsys, "-p", "secret", default_scheme="ARGON2ID")
    assert status == 0 and out.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify_password("secret", out.strip())


def test_reverse_verify(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-s", "SSHA512", "-p", "secret", "-V")
    assert (status, err) == (0, "")
    assert out.startswith("{SSHA512}") and out.endswith(" (verified)\n")
    assert verify_password("secret", out.removesuffix(" (verified)\n"))


def test_rounds_are_clamped_or_ignored_as_doveadm_does(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-s", "SHA512-CRYPT", "-r", "10", "-p", "x")
    assert status == 0 and out.startswith("{SHA512-CRYPT}$6$rounds=1000$")
    status, out, _ = run(capsys, "-s", "BLF-CRYPT", "-r", "3", "-p", "x")
    assert status == 0 and out.startswith("{BLF-CRYPT}$2y$04$")
    status, out, _ = run(capsys, "-s", "SHA256-CRYPT", "-r", "0", "-p", "x")
    assert status == 0 and "rounds=" not in out
    assert run(capsys, "-s", "SHA", "-r", "6", "-p", "secret") == (0, SHA_OF_SECRET + "\n", "")


@pytest.mark.parametrize("rounds", ["abc", "-5", "1.5", "4294967296", ""])
def test_bad_rounds(capsys: pytest.CaptureFixture[str], rounds: str) -> None:
    assert run(capsys, "-s", "SHA512-CRYPT", "-r", rounds, "-p", "x") == (
        75, "", f"Fatal: Invalid number of rounds: {rounds}\n"
    )


# -- checking a hash ----------------------------------------------------------------------------


def test_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-t", SHA_OF_SECRET, "-p", "secret") == (
        0, SHA_OF_SECRET + " (verified)\n", ""
    )
    assert run(capsys, "-t", SHA_OF_SECRET, "-p", "wrong") == (75, "", MISMATCH)
    # The scheme is printed as written in the hash.
    assert run(capsys, "-t", "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ=", "-p", "secret")[1] == (
        "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ= (verified)\n"
    )
    assert run(capsys, "-t", "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/", "-p", "secret")[1] == (
        "{MD5-CRYPT}$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/ (verified)\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-t", "abc", "-p", "x"], "Fatal: Missing {scheme} prefix from hash\n"),
        (["-t", "{FOO}abc", "-p", "x"], "Fatal: reverse decode check failed: Unknown scheme\n"),
        (["-s", "foo", "-p", "x"], "Fatal: Unknown scheme: FOO\n"),
        (["-s", "sha.foo", "-p", "x"], "Fatal: Unknown scheme: SHA.FOO\n"),
        (["-t", SHA_OF_SECRET, "-s", "FOO", "-p", "secret"], "Fatal: Unknown scheme: FOO\n"),
        (
            ["-t", "{SHA}!!!!", "-p", "x"],
            "Fatal: reverse password verification check failed: the hash is not valid base64\n",
        ),
        (
            ["-t", "{DIGEST-MD5}30969131580e626606ce70ceaab77719", "-p", "secret"],
            "Fatal: reverse password verification check failed: "
            "DIGEST-MD5 needs the user name (user@realm)\n",
        ),
        (["-s", "DIGEST-MD5", "-p", "x"], "Fatal: DIGEST-MD5 needs the user name (user@realm)\n"),
    ],
)
def test_fatal_errors(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert run(capsys, *argv) == (75, "", message)


def test_digest_md5_with_the_user(capsys: pytest.CaptureFixture[str]) -> None:
    stored = "{DIGEST-MD5}30969131580e626606ce70ceaab77719"
    assert run(capsys, "-t", stored, "-p", "secret", "-u", "user@example.com")[0] == 0
    assert run(capsys, "-t", stored, "-p", "secret", "-u", "other@example.com")[0] == 75


# -- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "first_part"),
    [
        (["-x"], "pw: invalid option -- 'x'"),
        (["-h"], "pw: invalid option -- 'h'"),
        (["-s"], "pw: option requires an argument -- 's'"),
        (["-p"], "pw: option requires an argument -- 'p'"),
        (["--foo"], "pw: unrecognized option '--foo'"),
        (["extra"], "Error: Extraneous arguments found: extra"),
        (["a", "-p", "x", "b"], "Error: Extraneous arguments found: a b"),
        (["-l", "extra"], "Error: Extraneous arguments found: extra"),
        (["-s", "SHA", "-p", "x", "--", "-l"], "Error: Extraneous arguments found: -l"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], first_part: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (64, "")
    assert err == f"{first_part}; {pw_command.USAGE}\n"


def test_grouped_and_attached_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-sSHA", "-psecret") == (0, SHA_OF_SECRET + "\n", "")
    assert run(capsys, "-lV")[0] == 0


# -- prompts ------------------------------------------------------------------------------------


def test_prompts_twice_on_a_terminal(
    capsys: pytest.CaptureFixture[str], keyboard: Keyboard
) -> None:
    keyboard.answers.extend(["secret", "secret"])
    assert run(capsys, "-s", "SHA") == (0, SHA_OF_SECRET + "\n", "")
    assert keyboard.prompts == ["Enter new password: ", "Retype new password: "]


def test_different_passwords_three_times(
    capsys: pytest.CaptureFixture[str], keyboard: Keyboard
) -> None:
    # doveadm says so after each pair and gives up with status 1 after the third.
    keyboard.answers.extend(["a", "b", "c", "d", "e", "f"])
    status, out, err = run(capsys, "-s", "SHA")
    assert (status, out) == (1, "")
    assert err == "Error: Passwords don't match!\n" * 3


def test_a_second_try_after_different_passwords(
    capsys: pytest.CaptureFixture[str], keyboard: Keyboard
) -> None:
    keyboard.answers.extend(["a", "b", "secret", "secret"])
    assert run(capsys, "-s", "SHA") == (
        0, SHA_OF_SECRET + "\n", "Error: Passwords don't match!\n"
    )


def test_prompt_to_check(capsys: pytest.CaptureFixture[str], keyboard: Keyboard) -> None:
    keyboard.answers.append("secret")
    assert run(capsys, "-t", SHA_OF_SECRET)[0] == 0
    assert keyboard.prompts == ["Enter password to verify: "]


def test_end_of_input_is_not_an_empty_password(
    capsys: pytest.CaptureFixture[str], keyboard: Keyboard
) -> None:
    assert run(capsys, "-s", "SHA") == (75, "", "Fatal: no password given (end of input)\n")


def test_a_pipe_is_read_without_prompts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret\nsecret\n"))
    assert run(capsys, "-s", "SHA") == (0, SHA_OF_SECRET + "\n", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret\n"))
    assert run(capsys, "-s", "SHA")[0] == 75


def test_interrupted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(prompt: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr(pw_command.getpass, "getpass", interrupt)
    assert run(capsys, "-s", "SHA") == (130, "", "\n")


# -- as a program -------------------------------------------------------------------------------


def python_m(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "dinomail.pw_command", *argv],
        input=stdin, capture_output=True, timeout=60, check=False,
    )


def test_python_m() -> None:
    done = python_m("-s", "SHA", "-p", "secret")
    assert (done.returncode, done.stdout, done.stderr) == (0, SHA_OF_SECRET.encode() + b"\n", b"")
    done = python_m("-t", SHA_OF_SECRET, stdin=b"wrong\n")
    assert (done.returncode, done.stderr) == (75, MISMATCH.encode())
    assert python_m("-x").returncode == 64


def test_bytes_that_are_not_utf8_pass_through() -> None:
    # doveadm hashes argv bytes as they are; so does `dinomail pw`.
    program = [sys.executable.encode(), b"-m", b"dinomail.pw_command", b"-p", b"a\xffb"]
    done = subprocess.run([*program, b"-s", b"PLAIN.b64"], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, b"{PLAIN.B64}Yf9i\n")
    done = subprocess.run([*program, b"-s", b"PLAIN"], capture_output=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, b"{PLAIN}a\xffb\n")


# -- hashes made by doveadm ---------------------------------------------------------------------


@pytest.mark.parametrize("stored", DOVEADM_VECTORS, ids=lambda stored: stored.split("}")[0][1:])
def test_checks_doveadm_vectors(capsys: pytest.CaptureFixture[str], stored: str) -> None:
    assert run(capsys, "-t", stored, "-p", PASSWORD, "-u", USER) == (
        0, f"{stored} (verified)\n", ""
    )
    assert run(capsys, "-t", stored, "-p", WRONG, "-u", USER) == (75, "", MISMATCH)


@needs_doveadm
@pytest.mark.parametrize("scheme", sorted(set(DOVEADM_SCHEMES) - {"PLAIN-TRUNC"}))
def test_checks_fresh_doveadm_hashes(capsys: pytest.CaptureFixture[str], scheme: str) -> None:
    made = subprocess.run(
        [str(DOVEADM), "pw", "-s", scheme, "-p", PASSWORD, "-u", USER],
        capture_output=True, text=True, timeout=60, check=True,
    )
    stored = made.stdout.strip()
    assert run(capsys, "-t", stored, "-p", PASSWORD, "-u", USER) == (
        0, f"{stored} (verified)\n", ""
    )
    assert run(capsys, "-t", stored, "-p", WRONG, "-u", USER) == (75, "", MISMATCH)


# -- the same answers as doveadm ----------------------------------------------------------------


DOVEADM_PARITY = [
    ["-s", "SHA", "-p", "secret"],
    ["-s", "sha.hex", "-p", "secret"],
    ["-s", "PLAIN.b64", "-p", "pässwörd"],
    ["-s", "CRAM-MD5", "-p", "secret"],
    ["-s", "DIGEST-MD5", "-p", "secret", "-u", "user@example.com"],
    ["-t", SHA_OF_SECRET, "-p", "secret"],
    ["-t", "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ=", "-p", "secret", "-V"],
    ["-t", SHA_OF_SECRET, "-p", "wrong"],
    ["-t", "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/", "-p", "secret"],
    ["-t", "{PLAIN-TRUNC}3-sec", "-p", "secret"],
    ["-t", "{PLAIN-TRUNC}3-sec", "-p", "se"],
    ["-t", "abc", "-p", "x"],
    ["-t", "{FOO}abc", "-p", "x"],
    ["-s", "FOO", "-p", "x"],
    ["-s", "sha.foo", "-p", "x"],
    ["-t", SHA_OF_SECRET, "-s", "FOO", "-p", "secret"],
    ["-r", "99999999999999", "-s", "SHA256-CRYPT", "-p", "x"],
]


@needs_doveadm
@pytest.mark.parametrize("argv", DOVEADM_PARITY, ids=" ".join)
def test_same_output_as_doveadm(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    theirs = subprocess.run(
        [str(DOVEADM), "pw", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert run(capsys, *argv) == (theirs.returncode, theirs.stdout, theirs.stderr)


@needs_doveadm
@pytest.mark.parametrize(
    "argv", [["-x"], ["-s"], ["--foo"], ["extra", "-s", "SHA"], ["-l", "x"]], ids=" ".join
)
def test_same_usage_errors_as_doveadm(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    theirs = subprocess.run(
        [str(DOVEADM), "pw", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    status, out, err = run(capsys, *argv)
    # Ours adds the usage to doveadm's line.
    assert (status, out) == (theirs.returncode, theirs.stdout)
    assert err.startswith(theirs.stderr.rstrip("\n") + "; usage: ")


@needs_doveadm
def test_same_list_as_doveadm_plus_windows(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = subprocess.run(
        [str(DOVEADM), "pw", "-l"], capture_output=True, text=True, timeout=60, check=False
    )
    ours = run(capsys, "-l")[1]
    assert set(ours.split()) == {*theirs.stdout.split(), "LANMAN", "NTLM"}
    assert ours.endswith(" \n") and theirs.stdout.endswith(" \n")
