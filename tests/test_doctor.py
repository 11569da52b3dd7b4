"""`dinomail doctor` without a running installation: one line per problem, each with its fix,
exit 1. (The whole path, working and broken, is tried in tests/test_install_readme.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from dinomail import postfix_config
from dinomail.doctor import Report, check_postfix
from dinomail.settings import load_settings
from tests.support.cli import dinomail
from tests.support.ports import free_port
from tests.support.postfix import have_postmap


def test_doctor_names_each_problem_with_its_fix(tmp_path: Path) -> None:
    env = {
        "DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        "DINOMAIL_STATE_DIR": str(tmp_path / "state"),
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_TLS_CERT_FILE": str(tmp_path / "missing.pem"),
        "DINOMAIL_TLS_KEY_FILE": str(tmp_path / "missing.key"),
    }
    result = dinomail("doctor", "--postfix-config-dir", str(tmp_path / "no-postfix"),
                      "--dovecot-config", str(tmp_path / "no-dovecot.conf"), env=env)
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM: ")]
    assert all(". Fix: " in line for line in problems), problems
    text = "\n".join(problems)
    for expected in (
        "the database is at revision none (empty)", "run `dinomail migrate`",
        f"nothing answers on SOCKETMAP_LISTEN = {env['DINOMAIL_SOCKETMAP_LISTEN']}",
        "nothing answers on DICT_LISTEN", "systemctl start dinomail",
        f"cannot read Postfix's settings in {tmp_path / 'no-postfix'}",
        f"cannot read Dovecot's settings in {tmp_path / 'no-dovecot.conf'}",
        "cannot read the certificate or key",
    ):
        assert expected in text, (expected, text)
    assert "mail would not flow" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_postfix_setting_left_out_is_not_one_made_empty(tmp_path: Path) -> None:
    """`virtual_alias_domains` must be set empty: left out, Postfix's default is
    `$virtual_alias_maps`, which the doctor must not take for the empty value it needs."""
    settings = load_settings(environ={})
    wanted = postfix_config.main_cf(settings)
    assert wanted["virtual_alias_domains"] == ""
    for with_it in (True, False):
        config = tmp_path / ("with" if with_it else "without")
        config.mkdir()
        lines = [f"{name} = {value}".rstrip() for name, value in wanted.items()
                 if with_it or name != "virtual_alias_domains"]
        (config / "main.cf").write_text("\n".join(lines) + "\n")
        report = Report()
        check_postfix(settings, report, str(config))
        named = [line for line in report.problems if "virtual_alias_domains" in line]
        if with_it:
            assert named == []
        else:
            assert named and "virtual_alias_domains is not set" in named[0]


@pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")
def test_earlier_policy_lines_pass_and_submission_must_count_messages(tmp_path: Path) -> None:
    """A Postfix still set up with DinoMail's earlier lines (the policy service asked for every
    recipient and at the end of data in main.cf) is correct: the doctor says so and asks for
    nothing. With today's main.cf, a submission service that does not ask the policy service
    at the end of data would never count a message: that is a problem."""
    settings = load_settings(environ={})
    main = postfix_config.main_cf(settings)
    options = postfix_config.submission_options(settings)

    def problems(main_cf: dict[str, str], submission: list[tuple[str, str]]) -> list[str]:
        folder = tmp_path / f"config{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "main.cf").write_text(
            "".join(f"{name} = {value}\n" for name, value in main_cf.items()))
        entry = " ".join([postfix_config.SUBMISSION_ENTRY, *(
            f"-o {{ {name} = {value} }}" for name, value in submission)])
        (folder / "master.cf").write_text(entry + "\n")
        report = Report()
        check_postfix(settings, report, str(folder))
        return [line for line in report.problems if "postmap -q" not in line]

    assert problems(main, options) == []
    earlier = {**main, **postfix_config.earlier_recipient_restrictions(settings)}
    without_count = [option for option in options
                     if option[0] != "smtpd_end_of_data_restrictions"]
    assert problems(earlier, without_count) == []  # main.cf's end-of-data check applies
    found = problems(main, without_count)
    assert len(found) == 1 and "submission service" in found[0], found
    dropped = {**main, "smtpd_recipient_restrictions": "reject_unauth_destination"}
    assert any("smtpd_recipient_restrictions" in line for line in problems(dropped, options))
