"""Running Postfix's own tools (postmap) with a private configuration directory."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.daemon_logs import assert_clean_log
from tests.support.tls import write_self_signed

POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"


def have_postmap() -> bool:
    return Path(POSTMAP).exists()


def postmap_config(directory: Path) -> Path:
    """A configuration directory postmap accepts: a main.cf with nothing but the level."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.cf").write_text("compatibility_level = 3.6\n")
    return directory


def postmap_query(config: Path, key: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTMAP, "-c", str(config), "-q", key, table],
        capture_output=True, text=True, timeout=30,
    )


POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SHIPPED_MAIN_CF = Path(__file__).parent.parent.parent / "conf" / "postfix" / "main.cf"
SHIPPED_MASTER_CF = SHIPPED_MAIN_CF.with_name("master.cf")
SHIPPED_SOCKETMAP = "inet:127.0.0.1:10027"
SHIPPED_POLICY = "inet:127.0.0.1:10028"


def have_postfix() -> bool:
    return Path(POSTFIX).exists() and Path("/etc/postfix/master.cf").exists()


@contextmanager
def postfix_folder() -> Iterator[Path]:
    """A folder Postfix's unprivileged daemons can reach (pytest's own are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="dinomail-postfix-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _adapt_policy(text: str, policy: str | None) -> str:
    """The shipped lines with the policy endpoint replaced, or its entries left out."""
    if policy is None:
        return re.sub(rf"\n?\s*check_policy_service {SHIPPED_POLICY},?", "", text)
    return text.replace(SHIPPED_POLICY, policy)


def loopback_master_cf(text: str, smtp_port: int, submission_port: int | None) -> str:
    """A master.cf with its smtp (and submission) services on loopback ports, and no chroot:
    a private queue folder holds none of the files a chroot needs."""
    lines = []
    for line in text.splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            lines.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{smtp_port}"
        elif fields[0] == "submission" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{submission_port}"
        fields[4] = "n"
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"


class PostfixInstance:
    """A real Postfix with a private configuration, queue and log, its smtpd on a loopback
    port, and the shipped `conf/postfix/main.cf` lines (socketmap and policy endpoints adapted;
    without a `policy` endpoint, the shipped `check_policy_service` entries are left out).

    With `submission_port`, the shipped `conf/postfix/master.cf` submission service listens
    there too, with a self-signed certificate for its TLS. Dovecot's LMTP and SASL sockets
    (`virtual_transport`, `smtpd_sasl_path`) are expected in `private`, as on a real server.

    Runs as root, as Postfix does (its daemons drop to the `postfix` user).
    """

    def __init__(self, root: Path, *, smtp_port: int, socketmap: str,
                 policy: str | None = None, submission_port: int | None = None,
                 extra_main_cf: str = "") -> None:
        self.root = root
        self.config = root / "conf"
        self.queue = root / "queue"
        self.data = root / "data"
        self.log = root / "postfix.log"
        self.smtp_port = smtp_port
        self.submission_port = submission_port
        self.policy = policy
        for folder in (self.config, self.queue, self.data):
            folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix")
        shipped = _adapt_policy(
            SHIPPED_MAIN_CF.read_text().replace(SHIPPED_SOCKETMAP, socketmap), policy
        )
        if submission_port is not None:
            tls = write_self_signed(self.config)
            extra_main_cf = (
                f"smtpd_tls_chain_files = {tls.key}, {tls.certificate}\n{extra_main_cf}"
            )
        (self.config / "main.cf").write_text(
            f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.dinomail.test
mydomain = dinomail.test
mydestination =
mynetworks = 127.0.0.0/8
maillog_file = {self.log}
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP
# The tests look at replies to RCPT TO; whatever is accepted is held in the private queue.
default_transport = error:no delivery in tests
{shipped}
{extra_main_cf}
"""
        )
        (self.config / "master.cf").write_text(self._master_cf())

    @property
    def private(self) -> Path:
        """Where Postfix's daemons find `private/...` sockets: Dovecot's LMTP and SASL."""
        return self.queue / "private"

    def _master_cf(self) -> str:
        text = Path("/etc/postfix/master.cf").read_text()
        if self.submission_port is not None:
            text += "\n" + _adapt_policy(SHIPPED_MASTER_CF.read_text(), self.policy)
        return loopback_master_cf(text, self.smtp_port, self.submission_port)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config), *args], capture_output=True, text=True, timeout=60
        )

    def start(self) -> None:
        result = self._postfix("start")
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"postfix did not start:\n{log}")

    def stop(self) -> None:
        """Stop Postfix, then fail if its log reports a panic, a fatal error or a crash."""
        self._postfix("stop")
        assert_clean_log("postfix", self.log_text())

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


async def postmap_query_async(
    config: Path, key: str, table: str
) -> tuple[int, str, str]:
    """`postmap -q`, without blocking the event loop a daemon under test runs on."""
    process = await asyncio.create_subprocess_exec(
        POSTMAP, "-c", str(config), "-q", key, table,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, stdout.decode(), stderr.decode()
