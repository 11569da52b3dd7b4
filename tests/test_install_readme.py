"""README's "Install on a mail server", run as written, into a throwaway root; then mail flows.

The commands are read from the `sh` blocks under that heading (not copied here). Every absolute
path under /etc, /var, /opt, /usr/local and /run in them is moved under the throwaway root (what
`DESTDIR` does for the install script), and `DESTDIR` is set to that root. The steps that need a
real Debian machine are done by the test itself, each one named in `SYSTEM_STEPS`:
- `apt-get install` (the packages are on the test machine already),
- `systemctl ...`: each unit's ExecStartPre and ExecStart run as its user, with its
  environment (no systemd as PID 1), and `postfix reload` / `systemctl restart dovecot` start
  the real daemons on the root's private configuration.
Before the README's commands, the root gets what Debian's packages would have put there
(`/etc/postfix` with Debian's main.cf, `/etc/dovecot` copied from the machine), plus loopback
ports and private folders so the test disturbs nothing else; after the install step, the
daemon's listeners are moved to free loopback ports; certbot's certificate is a self-signed
one. The `dinomail` and `vmail` users are created on the machine when missing (by the install
script: the test runs as root on a throwaway machine).

Then `dinomail doctor` passes, a mailbox made through the API receives mail sent with smtplib
(Postfix → socketmap → LMTP → Dovecot) and reads it over IMAP with the password set through the
API, and Dovecot's quota_clone reaches DinoMail through the dict socket. Last, doctor fails with
a clear line for each broken wiring: the dict socket's mode, a wrong socketmap port in Postfix,
a MAIL_UID that Dovecot refuses, a missing certificate, and the daemon stopped.
"""

from __future__ import annotations

import base64
import imaplib
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.dovecot import DOVECOT, have_dovecot
from tests.support.ports import free_port
from tests.support.postfix import POSTFIX, have_postfix, loopback_master_cf
from tests.support.tls import write_self_signed
from tests.support.units import read_unit

pytestmark = [
    pytest.mark.skipif(not have_postfix(), reason="postfix is not installed"),
    pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="installing needs root"),
]

REPO = Path(__file__).parent.parent
HEADING = "## Install on a mail server"
ROOTED = re.compile(r"(?<![\w/.~-])/(etc|var|opt|usr/local|run)/")
ADMIN = ("admin", "change-this-password")
MAILBOX = "alice@example.org"
MAILBOX_PASSWORD = "Mailbox-Password-1"
TIMEOUT = 30.0


def readme_commands() -> list[str]:
    """The commands of the `sh` blocks under the install heading, a here-document kept whole."""
    text = (REPO / "README.md").read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start:end if end != -1 else None]
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        lines = iter(block.splitlines())
        for line in lines:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            heredoc = re.search(r"<<'?(\w+)'?\s*$", line)
            if heredoc:
                body = [line]
                for more in lines:
                    body.append(more)
                    if more.strip() == heredoc.group(1):
                        break
                line = "\n".join(body)
            commands.append(line)
    return commands


@dataclass
class Sandbox:
    root: Path
    smtp_port: int = field(default_factory=free_port)
    submission_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    cwd: Path = REPO
    serve: subprocess.Popen[bytes] | None = None
    postfix_running: bool = False
    dovecot_running: bool = False

    @property
    def postfix_dir(self) -> Path:
        return self.root / "etc/postfix"

    @property
    def dovecot_conf(self) -> Path:
        return self.root / "etc/dovecot/dovecot.conf"

    @property
    def config(self) -> Path:
        return self.root / "etc/dinomail/dinomail.toml"

    def rooted(self, command: str) -> str:
        return ROOTED.sub(lambda match: f"{self.root}/{match.group(1)}/", command)

    def env(self) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")}
        environ["PATH"] = f"{self.root}/usr/local/bin:{environ.get('PATH', '/usr/bin:/bin')}"
        environ["DESTDIR"] = str(self.root)
        environ.pop("VIRTUAL_ENV", None)
        return environ

    def shell(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-ec", command], cwd=self.cwd, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def dinomail(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = self.env() | env
        return subprocess.run([f"{self.root}/usr/local/bin/dinomail", *args], env=environ,
                              capture_output=True, text=True, timeout=120)

    def doctor(self, **env: str) -> subprocess.CompletedProcess[str]:
        return self.dinomail("doctor", "--postfix-config-dir", str(self.postfix_dir),
                             "--dovecot-config", str(self.dovecot_conf), **env)

    # --- what Debian's packages and a real machine provide ---------------------------------------

    def prepare(self) -> None:
        """The root as apt-get would leave it, on private folders and loopback ports."""
        source = self.root / "usr/local/src"
        source.mkdir(parents=True)
        (source / "dinomail").symlink_to(REPO)
        self._prepare_postfix()
        self._prepare_dovecot()
        cert_dir = self.root / "etc/letsencrypt/live/mail.example.org"
        tls = write_self_signed(cert_dir, "mail.example.org")
        tls.certificate.rename(cert_dir / "fullchain.pem")
        tls.key.rename(cert_dir / "privkey.pem")

    def _prepare_postfix(self) -> None:
        self.postfix_dir.mkdir(parents=True)
        shutil.copy("/usr/share/postfix/main.cf.debian", self.postfix_dir / "main.cf")
        shutil.copy("/etc/postfix/master.cf", self.postfix_dir / "master.cf")
        queue = self.root / "var/spool/postfix"
        data = self.root / "var/lib/postfix"
        for folder in (queue, data):
            folder.mkdir(parents=True)
        shutil.chown(data, "postfix")
        for setting in (
            "myhostname = mail.example.org", "mydestination = localhost",
            f"queue_directory = {queue}", f"data_directory = {data}",
            "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            f"maillog_file = {self.root}/var/log/postfix.log",
            f"maillog_file_prefixes = {self.root}", "mynetworks = 127.0.0.0/8",
            "smtpd_tls_cert_file =", "smtpd_tls_key_file =",
        ):
            self._postconf("-e", setting)
        (self.root / "var/log").mkdir(parents=True, exist_ok=True)

    def _postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.postfix_dir), *args], check=True,
                       capture_output=True, timeout=30)

    def _prepare_dovecot(self) -> None:
        conf = self.root / "etc/dovecot"
        shutil.copytree("/etc/dovecot", conf, symlinks=True)
        # Debian's postinst makes this certificate; 10-ssl.conf names it.
        tls = write_self_signed(conf / "private", "mail.example.org")
        tls.certificate.rename(conf / "private/dovecot.pem")
        tls.key.rename(conf / "private/dovecot.key")
        for path in conf.rglob("*.conf*"):
            text = path.read_text()
            if "/etc/dovecot/" in text:
                path.write_text(text.replace("/etc/dovecot/", f"{conf}/"))
        for folder in ("run/dovecot", "var/lib/dovecot"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (conf / "conf.d/98-test-sandbox.conf").write_text(f"""# tests: private folders, loopback
base_dir = {self.root}/run/dovecot
state_dir = {self.root}/var/lib/dovecot
log_path = {self.root}/var/log/dovecot.log
instance_name = dinomail-install-{self.root.name}
listen = 127.0.0.1
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")

    def after_install(self) -> None:
        """The daemon's listeners on free loopback ports (the defaults may be taken)."""
        with self.config.open("a") as file:
            file.write(f"""# tests: free loopback ports
HTTP_LISTEN = "127.0.0.1:{self.http_port}"
SOCKETMAP_LISTEN = "127.0.0.1:{free_port()}"
POLICY_LISTEN = "127.0.0.1:{free_port()}"
LOOKUPD_HTTP_LISTEN = "127.0.0.1:{free_port()}"
SQLITE_POLL_INTERVAL = 0.05
QUOTA_FLUSH_INTERVAL = 0.2
""")

    # --- the steps systemd and the packages' scripts do on a real machine --------------------

    def start_dinomail(self) -> None:
        unit = read_unit(self.root / "etc/systemd/system/dinomail.service")
        assert unit.user == "dinomail" and unit.exec_start
        unit.run_pre()
        self.serve = unit.start(self.root / "var/log/dinomail.log")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{self.http_port}/healthz"),
                   "DinoMail's /healthz", self.log)

    def stop_dinomail(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            self.serve.wait(30)

    def postfix_reload(self) -> None:
        master = self.postfix_dir / "master.cf"
        master.write_text(loopback_master_cf(master.read_text(), self.smtp_port,
                                             self.submission_port))
        action = "reload" if self.postfix_running else "start"
        result = subprocess.run([POSTFIX, "-c", str(self.postfix_dir), action],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr + self.log()
        self.postfix_running = True

    def restart_dovecot(self) -> None:
        self.stop_dovecot()
        # The daemon keeps the standard streams it was given: a pipe would never reach EOF.
        errors = self.root / "var/log/dovecot.stderr"
        with errors.open("wb") as stderr:
            result = subprocess.run([DOVECOT, "-c", str(self.dovecot_conf)], timeout=60,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=stderr)
        self.dovecot_running = True
        assert result.returncode == 0, errors.read_text() + self.log()
        wait_until(lambda: (self.root / "var/spool/postfix/private/dovecot-lmtp").exists(),
                   "Dovecot's LMTP socket", self.log)

    def stop_dovecot(self) -> None:
        if self.dovecot_running:
            subprocess.run(["doveadm", "-c", str(self.dovecot_conf), "stop"],
                           capture_output=True, timeout=30)
            self.dovecot_running = False

    def stop_all(self) -> None:
        self.stop_dinomail()
        self.stop_dovecot()
        if self.postfix_running:
            subprocess.run([POSTFIX, "-c", str(self.postfix_dir), "stop"], capture_output=True,
                           timeout=60)

    def log(self) -> str:
        parts = []
        for name in ("dinomail.log", "postfix.log", "dovecot.log"):
            path = self.root / "var/log" / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


# The commands that need systemd or the package manager, and what the test does instead.
SYSTEM_STEPS = {
    "apt-get install -y postfix dovecot-imapd dovecot-lmtpd dovecot-sieve dovecot-managesieved"
    " python3-venv make":
        lambda box: None,
    "systemctl daemon-reload": lambda box: None,
    "systemctl enable --now dinomail": Sandbox.start_dinomail,
    "postfix reload": Sandbox.postfix_reload,
    "systemctl restart dovecot": Sandbox.restart_dovecot,
}


def wait_until(condition, what: str, log=lambda: "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log()}")
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def api(box: Sandbox, method: str, path: str, body: object = None,
        auth: str = "") -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{box.http_port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        payload = response.read()
    return json.loads(payload) if payload else {}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="dinomail-install-"))
    root.chmod(0o755)
    box = Sandbox(root)
    try:
        yield box
    finally:
        box.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def test_readme_section_is_found() -> None:
    commands = readme_commands()
    assert "make install-system" in commands
    assert any(command.startswith("dinomail doctor") for command in commands)


def test_install_section_of_the_readme_delivers_mail(sandbox: Sandbox) -> None:
    box = sandbox
    box.prepare()
    for command in readme_commands():
        if command in SYSTEM_STEPS:
            SYSTEM_STEPS[command](box)
            continue
        rooted = box.rooted(command)
        if rooted.startswith("cd "):
            box.cwd = Path(rooted[3:].strip())
            continue
        result = box.shell(rooted)
        assert result.returncode == 0, (
            f"README command failed: {command}\n{result.stdout}\n{result.stderr}\n{box.log()}"
        )
        if command == "make install-system":
            box.after_install()
        if command.startswith("dinomail doctor"):
            assert "No problems found: mail would flow." in result.stdout, result.stdout

    # The install: users, settings written once and private, folders owned right.
    config = box.config.stat()
    assert (config.st_mode & 0o777, config.st_uid) == (0o640, 0)
    assert (box.root / "var/lib/dinomail").owner() == "dinomail"
    assert (box.root / "var/vmail").owner() == "vmail"
    assert (box.root / "opt/dinomail/venv/bin/dinomail").exists()
    dict_socket = box.root / "var/lib/dinomail/dovecot-dict.sock"
    assert dict_socket.group() == "dinomail" and dict_socket.stat().st_mode & 0o777 == 0o660

    # A mailbox and its password through the API, then mail in over SMTP, out over IMAP.
    basic = base64.b64encode(":".join(ADMIN).encode()).decode()
    keys = api(box, "GET", "/api/apikey/", auth=f"Basic {basic}")
    key = f"ApiKey admin:{keys['objects'][0]['key']}"  # type: ignore[index]
    api(box, "POST", "/api/virtualdomain/", {"name": "example.org"}, key)
    mailbox = api(box, "POST", "/api/virtualuser/", {"email": MAILBOX}, key)
    api(box, "PUT", f"/api/changeuserpassword/{mailbox['id']}/",
        {"password": MAILBOX_PASSWORD}, key)
    doctor = box.doctor()
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr + box.log()
    assert f"doveadm user and auth lookup answer for {MAILBOX}" in doctor.stdout

    with smtplib.SMTP("127.0.0.1", box.smtp_port, timeout=TIMEOUT) as smtp:
        smtp.sendmail("sender@elsewhere.net", [MAILBOX],
                      b"Subject: installed\r\n\r\nDelivered by the README's install.\r\n")

    def delivered() -> bool:
        with imaplib.IMAP4("127.0.0.1", box.imap_port, timeout=TIMEOUT) as imap:
            imap.login(MAILBOX, MAILBOX_PASSWORD)
            imap.select("INBOX")
            _, found = imap.search(None, "SUBJECT", "installed")
            return bool(found[0].split())

    wait_until(delivered, "the message in the IMAP inbox", box.log)

    # quota_clone reached DinoMail through the dict socket (its group and mode let vmail in).
    def usage() -> int:
        row = api(box, "GET", f"/api/virtualuser/{mailbox['id']}/", auth=key)
        return int(row.get("quota_used_bytes") or 0)  # type: ignore[call-overload]

    wait_until(lambda: usage() > 0, "the mailbox usage from quota_clone", box.log)
    for problem in ("Panic", "Fatal", "killed with signal"):
        assert problem not in box.log(), box.log()

    # Broken wirings: each named by doctor, with its fix.
    dict_socket.chmod(0o600)
    result = box.doctor()
    assert result.returncode == 1 and f"cannot connect to {dict_socket}" in result.stdout
    assert "UNIX_SOCKET_MODE" in result.stdout
    dict_socket.chmod(0o660)

    wrong = f"socketmap:inet:127.0.0.1:{free_port()}:mailboxes"
    subprocess.run(["postconf", "-c", str(box.postfix_dir), "-e",
                    f"virtual_mailbox_maps = {wrong}"], check=True, timeout=30)
    result = box.doctor()
    assert result.returncode == 1, result.stdout
    assert f"Postfix's virtual_mailbox_maps is '{wrong}'" in result.stdout
    assert "dinomail postfix-config --apply" in result.stdout
    assert box.dinomail("postfix-config", "--apply", "--config-dir",
                        str(box.postfix_dir)).returncode == 0

    result = box.doctor(DINOMAIL_MAIL_UID="4999")
    assert result.returncode == 1
    assert "MAIL_UID = 4999 is outside Dovecot's first_valid_uid" in result.stdout

    certificate = box.root / "etc/letsencrypt/live/mail.example.org/fullchain.pem"
    certificate.rename(certificate.with_suffix(".moved"))
    result = box.doctor()
    assert result.returncode == 1
    assert f"Postfix's TLS file {certificate} is missing or unreadable" in result.stdout
    certificate.with_suffix(".moved").rename(certificate)

    assert box.doctor().returncode == 0
    box.stop_dinomail()
    result = box.doctor()
    assert result.returncode == 1
    assert "nothing answers on SOCKETMAP_LISTEN" in result.stdout
    assert "systemctl start dinomail" in result.stdout


def test_uninstall_keeps_the_data(sandbox: Sandbox) -> None:
    box = sandbox
    environ = box.env() | {"CREATE_USERS": "yes"}
    install = subprocess.run([str(REPO / "scripts/install.sh")], env=environ,
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    secret = box.config.read_text()
    # Run again (an upgrade), with the users left to the admin: they exist now.
    again = subprocess.run([str(REPO / "scripts/install.sh")], env=environ | {"CREATE_USERS": "no"},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Keeping" in again.stdout
    assert box.config.read_text() == secret  # never overwritten
    assert (box.root / "usr/share/doc/dinomail/conf/postfix/main.cf").exists()
    (box.root / "var/lib/dinomail/dinomail.sqlite3").write_text("data")
    removed = subprocess.run([str(REPO / "scripts/uninstall.sh")], env=environ,
                             capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert not (box.root / "opt/dinomail").exists()
    assert not (box.root / "usr/local/bin/dinomail").exists()
    assert not (box.root / "etc/systemd/system/dinomail.service").exists()
    assert box.config.read_text() == secret
    assert (box.root / "var/lib/dinomail/dinomail.sqlite3").read_text() == "data"
    assert (box.root / "var/vmail").owner() == "vmail"
