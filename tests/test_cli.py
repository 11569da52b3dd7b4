"""The `dinomail` command on SQLite and PostgreSQL, as an admin runs it."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import dinomail
from tests.support.ports import free_port


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version() -> None:
    result = dinomail("--version")
    assert result.returncode == 0 and result.stdout.startswith("dinomail ")


def test_migrate_then_check(database_url: str, tmp_path: Path) -> None:
    env = {"DINOMAIL_DATABASE_URL": database_url}
    unmigrated = dinomail("check", env=env, cwd=tmp_path)
    assert unmigrated.returncode == 1
    assert "dinomail migrate" in _one_line_error(unmigrated)

    first = dinomail("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "migrated" in first.stdout
    again = dinomail("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout

    checked = dinomail("check", env=env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "No issues found" in checked.stdout


def test_check_fails_clearly_on_unreachable_databases(tmp_path: Path) -> None:
    for url in (
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        f"sqlite:///{tmp_path}/no/such/folder/db.sqlite3",
    ):
        result = dinomail("check", env={"DINOMAIL_DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 1
        assert "database" in _one_line_error(result)


def test_a_sqlite_file_that_cannot_open_is_one_line_every_time(tmp_path: Path) -> None:
    # aiosqlite's worker thread reports the closing of the failed connection to the event loop;
    # were the loop closed first, a traceback would follow the line about half the time.
    url = f"sqlite:///{tmp_path}/no/such/folder/db.sqlite3"
    for _ in range(5):
        result = dinomail("check", env={"DINOMAIL_DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 1
        assert "unable to open database file" in _one_line_error(result)


def test_createsuperuser_noinput(database_url: str, tmp_path: Path) -> None:
    env = {"DINOMAIL_DATABASE_URL": database_url}
    assert dinomail("migrate", env=env, cwd=tmp_path).returncode == 0
    missing = dinomail("createsuperuser", "--username", "root", "--noinput", env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert "DINOMAIL_SUPERUSER_PASSWORD" in _one_line_error(missing)

    env["DINOMAIL_SUPERUSER_PASSWORD"] = "correct horse battery"
    args = ("createsuperuser", "--username", "root", "--email", "root@example.org", "--noinput")
    created = dinomail(*args, env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "root" in created.stdout
    duplicate = dinomail(*args, env=env, cwd=tmp_path)
    assert duplicate.returncode == 1
    assert "already exists" in _one_line_error(duplicate)

    # A user named `pw` is a user, not the `pw` sub-command.
    named_pw = dinomail("createsuperuser", "--username", "pw", "--noinput", env=env, cwd=tmp_path)
    assert named_pw.returncode == 0, named_pw.stderr
    assert "pw" in named_pw.stdout and "{" not in named_pw.stdout

    env["DINOMAIL_SUPERUSER_PASSWORD"] = "short"
    weak = dinomail("createsuperuser", "--username", "other", "--noinput", env=env, cwd=tmp_path)
    assert weak.returncode == 2
    assert "password" in _one_line_error(weak)


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = dinomail("serve", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "dinomail migrate" in _one_line_error(result)


def test_unknown_command_is_a_usage_error() -> None:
    result = dinomail("frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_pw_through_the_dinomail_command() -> None:
    made = dinomail("pw", "-s", "SSHA512", "-p", "s3cret")
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    assert stored.startswith("{SSHA512}")
    verified = dinomail("pw", "-t", stored, "-p", "s3cret")
    assert verified.returncode == 0 and verified.stdout.strip() == f"{stored} (verified)"
    wrong = dinomail("pw", "-t", stored, "-p", "wrong")
    assert wrong.returncode == 75
    assert "Password mismatch" in wrong.stderr and "Traceback" not in wrong.stderr
    with_config = dinomail("--config", "/dev/null", "pw", "-s", "SSHA512", "-p", "s3cret")
    assert with_config.returncode == 0 and with_config.stdout.startswith("{SSHA512}")
    default = dinomail("pw", "-p", "s3cret")
    assert default.stdout.startswith("{SHA512-CRYPT}$6$")  # the configured default scheme
