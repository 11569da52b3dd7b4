"""`dinomail postfix-config` and `dovecot-config` say what the shipped conf/ files say, for the
default settings; they follow the settings; `--apply` really configures a Postfix; the lookup
daemon's unix sockets get the owner, group and mode of the settings."""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from dinomail import dovecot_config, postfix_config
from dinomail.doctor import can_connect
from dinomail.settings import SettingsError, load_settings
from dinomail.store import Store
from tests.support.cli import dinomail
from tests.support.lookupd import running_lookupd
from tests.support.postfix import have_postmap

CONF = Path(__file__).parent.parent / "conf"
# What the shipped files assume: the installed state folder, Postfix's default queue.
SHIPPED_ENV = {"DINOMAIL_STATE_DIR": "/var/lib/dinomail", "DINOMAIL_UNIX_SOCKET_GROUP": "dinomail"}


def shipped_settings(**extra: str):  # type: ignore[no-untyped-def]
    return load_settings(environ={**SHIPPED_ENV, **extra})


def main_cf_parameters(text: str) -> dict[str, str]:
    """`name = value` of a main.cf, continuation lines joined, comments left out."""
    parameters: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:
            parameters[name] = f"{parameters[name]} {line.strip()}".strip()
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        parameters[name] = value.strip()
    return parameters


def normalized(value: str) -> str:
    return re.sub(r"\s*,\s*", ", ", " ".join(value.split()))


def pairs(text: str) -> set[tuple[str, str]]:
    found = set()
    for line in text.splitlines():
        match = re.match(r"^\s*([\w/]+) = (.*)$", line)
        if match and not line.lstrip().startswith("#"):
            found.add((match.group(1), match.group(2).strip()))
    return found


def test_postfix_config_says_what_conf_postfix_main_cf_says() -> None:
    shipped = main_cf_parameters((CONF / "postfix/main.cf").read_text())
    generated = postfix_config.main_cf(shipped_settings())
    assert set(generated) == set(shipped)
    for name, value in generated.items():
        assert normalized(value) == normalized(shipped[name]), name


def test_postfix_config_says_what_conf_postfix_master_cf_says() -> None:
    shipped = re.findall(r"^\s+-o (\{ (.*?) \}|(\S+))$",
                         (CONF / "postfix/master.cf").read_text(), re.MULTILINE)
    options = []
    for _, braced, plain in shipped:
        name, _, value = (braced or plain).partition("=")
        options.append((name.strip(), value.strip()))
    assert options == postfix_config.submission_options(shipped_settings())


def test_dovecot_config_says_what_conf_dovecot_says() -> None:
    settings = shipped_settings()
    generated = dovecot_config.conf_d_file(
        settings, dict_file="/etc/dovecot/dinomail-dict-auth.conf.ext",
        queue_directory="/var/spool/postfix",
    )
    shipped_text = (CONF / "dovecot/2.3/dovecot.conf").read_text()
    shipped = pairs(shipped_text)
    shipped_names = {name for name, _ in shipped}
    compared = [pair for pair in pairs(generated) if pair[0] in shipped_names]
    assert len(compared) >= 15
    for pair in compared:
        assert pair in shipped, pair
    for listener in ("/var/spool/postfix/private/dovecot-lmtp", "/var/spool/postfix/private/auth"):
        assert f"unix_listener {listener} {{" in generated and listener in shipped_text
    # The dict settings file: the same lines, the same socket (idle_msecs aside: below 30 s).
    dict_file = dovecot_config.dict_auth_file(settings)
    shipped_dict = (CONF / "dovecot/2.3/dinomail-dict-auth.conf.ext").read_text()
    without_idle = re.compile(r"proxy:idle_msecs=\d+:")
    assert {(name, without_idle.sub("proxy:", value)) for name, value in pairs(dict_file)} <= {
        (name, without_idle.sub("proxy:", value)) for name, value in pairs(shipped_dict)
    }
    assert dovecot_config.DICT_IDLE_MSECS < 30000


def test_generated_configuration_follows_the_settings() -> None:
    settings = load_settings(environ={
        "DINOMAIL_SOCKETMAP_LISTEN": "[::1]:20027", "DINOMAIL_POLICY_LISTEN": "0.0.0.0:20028",
        "DINOMAIL_DICT_LISTEN": "unix:/run/dm/dict.sock", "DINOMAIL_MAIL_UID": "6001",
        "DINOMAIL_MAIL_GID": "6002", "DINOMAIL_UNIX_SOCKET_GROUP": "mailctl",
        "DINOMAIL_TLS_CERT_FILE": "/etc/ssl/mx.pem", "DINOMAIL_TLS_KEY_FILE": "/etc/ssl/mx.key",
    })
    main = postfix_config.main_cf(settings)
    assert main["virtual_mailbox_maps"] == "socketmap:inet:[::1]:20027:mailboxes"
    assert main["smtpd_recipient_restrictions"].startswith(
        "check_recipient_access socketmap:inet:[::1]:20027:recipient_access, ")
    assert "smtpd_end_of_data_restrictions" not in main  # only the submission service counts
    assert ("smtpd_end_of_data_restrictions", "check_policy_service inet:127.0.0.1:20028") in (
        postfix_config.submission_options(settings))
    assert main["smtpd_tls_chain_files"] == "/etc/ssl/mx.key, /etc/ssl/mx.pem"
    conf = dovecot_config.conf_d_file(settings, dict_file="/d.ext", queue_directory="/q")
    for line in ("first_valid_uid = 6001", "last_valid_gid = 6002",
                 "mail_access_groups = mailctl", "quota_clone_dict = proxy:/run/dm/dict.sock:quota",
                 "ssl_cert = </etc/ssl/mx.pem", "unix_listener /q/private/dovecot-lmtp {",
                 "args = /d.ext"):
        assert line in conf, line
    assert ":/run/dm/dict.sock:auth" in dovecot_config.dict_auth_file(settings)


def test_dovecot_config_writes_both_files_and_refuses_a_tcp_dict(tmp_path: Path) -> None:
    output = tmp_path / "conf.d" / "99-dinomail.conf"
    output.parent.mkdir()
    result = dinomail("dovecot-config", "--output", str(output),
                      env={"DINOMAIL_STATE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    dict_file = output.parent / "dinomail-dict-auth.conf.ext"
    assert f"args = {dict_file}" in output.read_text()
    assert f":{tmp_path.resolve()}/dovecot-dict.sock:auth" in dict_file.read_text()
    refused = dinomail("dovecot-config", env={"DINOMAIL_DICT_LISTEN": "127.0.0.1:9999"})
    assert refused.returncode == 2 and "unix socket" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")
def test_postfix_config_apply_configures_a_real_postfix(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    (tmp_path / "master.cf").write_text(Path("/etc/postfix/master.cf").read_text())
    env = {"DINOMAIL_SOCKETMAP_LISTEN": "127.0.0.1:20027"}
    printed = dinomail("postfix-config", env=env)
    assert printed.returncode == 0 and printed.stdout.startswith("postconf -e ")
    applied = dinomail("postfix-config", "--apply", "--config-dir", str(tmp_path), env=env)
    assert applied.returncode == 0, applied.stderr
    shown = subprocess.run(["postconf", "-c", str(tmp_path), "-n"], capture_output=True,
                           text=True, check=True).stdout
    assert "virtual_mailbox_domains = socketmap:inet:127.0.0.1:20027:domains" in shown
    services = subprocess.run(["postconf", "-c", str(tmp_path), "-P"], capture_output=True,
                              text=True, check=True).stdout
    assert "submission/inet/smtpd_sasl_auth_enable = yes" in services
    assert ("submission/inet/smtpd_recipient_restrictions = check_policy_service "
            "inet:127.0.0.1:10028, permit_sasl_authenticated, reject") in services
    assert ("submission/inet/smtpd_end_of_data_restrictions = check_policy_service "
            "inet:127.0.0.1:10028") in services
    assert "smtpd_end_of_data_restrictions" not in shown
    assert printed.stdout.splitlines()[-1].startswith("# A main.cf set up by an earlier DinoMail")
    # A main.cf an earlier DinoMail set up: its end-of-data policy check goes (the submission
    # service has its own); an end-of-data restriction of the admin's own stays.
    for earlier, kept in (("check_policy_service inet:127.0.0.1:10028", False),
                          ("reject_unauth_pipelining", True)):
        folder = tmp_path / ("kept" if kept else "earlier")
        folder.mkdir()
        (folder / "main.cf").write_text(
            f"compatibility_level = 3.6\nsmtpd_end_of_data_restrictions = {earlier}\n")
        (folder / "master.cf").write_text(Path("/etc/postfix/master.cf").read_text())
        again = dinomail("postfix-config", "--apply", "--config-dir", str(folder), env=env)
        assert again.returncode == 0, again.stderr
        shown = subprocess.run(["postconf", "-c", str(folder), "-n"], capture_output=True,
                               text=True, check=True).stdout
        assert (f"smtpd_end_of_data_restrictions = {earlier}" in shown) == kept, shown
    missing = dinomail("postfix-config", "--apply", "--config-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and missing.stderr.startswith("dinomail: error: ")


def test_socket_settings_are_validated() -> None:
    assert shipped_settings(DINOMAIL_UNIX_SOCKET_MODE="0640").unix_socket_mode == 0o640
    for bad in ("rw", "0888", "0060"):
        with pytest.raises(SettingsError, match="UNIX_SOCKET_MODE"):
            load_settings(environ={"DINOMAIL_UNIX_SOCKET_MODE": bad})
    with pytest.raises(SettingsError, match="UNIX_SOCKET_GROUP"):
        load_settings(environ={"DINOMAIL_UNIX_SOCKET_GROUP": "bad group"})


async def test_unix_sockets_get_the_group_and_mode_of_the_settings(
    store: Store, tmp_path: Path
) -> None:
    # Root gives the socket any group; anyone else, one of their own.
    group = "nogroup" if os.geteuid() == 0 else grp.getgrgid(os.getgroups()[-1]).gr_name
    async with running_lookupd(store, tmp_path, UNIX_SOCKET_GROUP=group,
                               UNIX_SOCKET_MODE="0640"):
        info = os.stat(tmp_path / "dict.sock")
        assert stat.S_IMODE(info.st_mode) == 0o640
        assert info.st_gid == grp.getgrnam(group).gr_gid
    with pytest.raises(OSError, match="no group named"):
        async with running_lookupd(store, tmp_path, UNIX_SOCKET_GROUP="no-such-group-x"):
            pass


def test_can_connect_follows_owner_group_and_other_bits() -> None:
    folder = Path(tempfile.mkdtemp(prefix="dinomail-can-connect-"))
    try:
        folder.chmod(0o755)
        path = folder / "socket"
        path.touch()
        path.chmod(0o660)
        owner = path.stat()
        other_uid, other_gid = owner.st_uid + 4242, owner.st_gid + 4242
        assert not can_connect(str(path), other_uid, {other_gid})
        assert can_connect(str(path), other_uid, {owner.st_gid})
        path.chmod(0o666)
        assert can_connect(str(path), other_uid, {other_gid})
        folder.chmod(0o700)
        assert not can_connect(str(path), other_uid, {other_gid})
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating the dinomail group needs root")
async def test_unix_sockets_default_to_the_dinomail_group(store: Store, tmp_path: Path) -> None:
    """Run by root (`make run` on a mail server), the dict socket still lets Dovecot's mail
    processes in: its group is `dinomail` (scripts/install.sh makes it; made here if missing,
    as the test machine is a throwaway one)."""
    if subprocess.run(["getent", "group", "dinomail"], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", "dinomail"], check=True)
    async with running_lookupd(store, tmp_path):
        info = os.stat(tmp_path / "dict.sock")
        assert info.st_gid == grp.getgrnam("dinomail").gr_gid
        assert stat.S_IMODE(info.st_mode) == 0o660
