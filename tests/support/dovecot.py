"""A real Dovecot for tests, configured from the shipped `conf/dovecot/` files, and a lookup
daemon running in a thread of its own (so tests may block on doveadm, imaplib or LMTP while it
answers).

The shipped files are copied with only their site-specific values replaced (paths, ports, the
mail uid, TLS off), each replacement checked to still match the shipped text, so what the tests
prove is what an admin installs.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dinomail.settings import Settings, load_settings
from dinomail.store import Store
from lookupd.daemon import Lookupd, start_lookupd
from tests.support.daemon_logs import assert_clean_log
from tests.support.ports import free_port
from tests.support.tls import Certificate

T = TypeVar("T")

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
SHIPPED = Path(__file__).parent.parent.parent / "conf" / "dovecot"
SHIPPED_DICT_SOCKET = "/var/lib/dinomail/dovecot-dict.sock"
SHIPPED_LOOKUPD_URL = "http://127.0.0.1:10029"

# Dovecot refuses to give mail processes uid 0; `nobody` exists everywhere.
TEST_MAIL_USER = "nobody"


def have_dovecot() -> bool:
    return Path(DOVECOT).exists() and Path(DOVEADM).exists()


def have_dovecot_lua() -> bool:
    return (
        Path("/usr/lib/dovecot/modules/auth/libauthdb_lua.so").exists()
        and Path("/usr/share/lua/5.4/dkjson.lua").exists()
        and Path("/usr/share/lua/5.4/socket/http.lua").exists()
    )


def mail_ids(user: str = TEST_MAIL_USER) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make_root(prefix: str = "dinomail-dovecot-") -> Path:
    """A folder Dovecot's unprivileged processes can traverse (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def _replace(text: str, old: str, new: str, where: str) -> str:
    if old not in text:
        raise AssertionError(f"{where} no longer contains {old!r}: update tests/support/dovecot.py")
    return text.replace(old, new)


def lookupd_settings_for_dovecot(root: Path, database_url: str, **overrides: str) -> Settings:
    """Settings of a lookup daemon that a `DovecotInstance` under `root` asks: dict socket in
    `root`, mailboxes under `root/vmail` owned by the test mail user, loopback ports."""
    uid, gid = mail_ids()
    environ = {
        "DINOMAIL_DATABASE_URL": database_url,
        "DINOMAIL_STATE_DIR": str(root / "lookupd-state"),
        "DINOMAIL_SOCKETMAP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_LOOKUPD_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_POLICY_LISTEN": f"127.0.0.1:{free_port()}",
        "DINOMAIL_DICT_LISTEN": f"unix:{root / 'dict.sock'}",
        # The group DovecotInstance names in mail_access_groups: its folder's.
        "DINOMAIL_UNIX_SOCKET_GROUP": grp.getgrgid(os.stat(root).st_gid).gr_name,
        "DINOMAIL_MAIL_HOME": f"{root}/vmail/%d/%n",
        "DINOMAIL_MAIL_UID": str(uid),
        "DINOMAIL_MAIL_GID": str(gid),
        "DINOMAIL_SQLITE_POLL_INTERVAL": "0.05",
        "DINOMAIL_QUOTA_FLUSH_INTERVAL": "0.2",
    }
    environ.update({f"DINOMAIL_{key}": value for key, value in overrides.items()})
    return load_settings(environ=environ)


class DovecotInstance:
    """Dovecot 2.3 from `conf/dovecot/2.3/`, with private base, state, log and mail folders
    under `root`, IMAP on a loopback port, LMTP and SASL on unix sockets under `root`.

    `auth` picks the shipped auth include: `dict` (dict proxy, the 2.3 default) or `lua`
    (Lua + HTTP). `sieve_port` opens ManageSieve there (closed by default); `pop3_port` opens
    POP3 (Debian's dovecot-pop3d; the shipped configuration has no POP3).
    `postfix_private` puts the LMTP and SASL sockets in a real Postfix's `private` folder
    (`PostfixInstance.private`) instead. `auth_policy` includes the shipped
    auth-policy.conf.ext, as its instructions say, asking `lookupd_url`. `tls` keeps the
    shipped `ssl = required` with a test certificate (otherwise TLS is off).
    Runs as root, as Dovecot does; mail processes run as `nobody`.
    """

    def __init__(
        self,
        root: Path,
        *,
        dict_socket: str,
        imap_port: int,
        lookupd_url: str = SHIPPED_LOOKUPD_URL,
        auth: str = "dict",
        postfix_private: Path | None = None,
        auth_policy: bool = False,
        tls: Certificate | None = None,
        extra_conf: str = "",
        sieve_port: int = 0,
        pop3_port: int = 0,
    ) -> None:
        self.root = root
        self.config_dir = root / "conf"
        self.config = self.config_dir / "dovecot.conf"
        self.base_dir = root / "run"
        self.state_dir = root / "state"
        self.log = root / "dovecot.log"
        self.vmail = root / "vmail"
        # Stands for /var/spool/postfix/private.
        self.private = postfix_private or root / "postfix-private"
        self.lmtp_socket = self.private / "dovecot-lmtp"
        self.sasl_socket = self.private / "auth"
        self.imap_port = imap_port
        # ManageSieve's port; 0 (the default) closes it.
        self.sieve_port = sieve_port
        self.pop3_port = pop3_port
        self.mail_uid, self.mail_gid = mail_ids()
        for folder in (self.config_dir, self.state_dir, self.private):
            folder.mkdir(parents=True, exist_ok=True)
        self.vmail.mkdir(exist_ok=True)
        os.chown(self.vmail, self.mail_uid, self.mail_gid)
        socket_group = grp.getgrgid(os.stat(Path(dict_socket).parent).st_gid).gr_name
        self._write_config(dict_socket, lookupd_url, auth, socket_group, auth_policy, tls,
                           extra_conf)

    @property
    def mail_home(self) -> str:
        """The MAIL_HOME setting the lookup daemon must give."""
        return f"{self.vmail}/%d/%n"

    def _write_config(
        self, dict_socket: str, lookupd_url: str, auth: str, socket_group: str,
        auth_policy: bool, tls: Certificate | None, extra: str,
    ) -> None:
        source = SHIPPED / "2.3"
        conf_dir = f"{self.config_dir}/"
        main = (source / "dovecot.conf").read_text()
        where = "conf/dovecot/2.3/dovecot.conf"
        if tls is None:
            replacements = [
                ("ssl = required", "ssl = no"),
                ("ssl_cert = </etc/ssl/mail/fullchain.pem", "# ssl_cert: none in tests"),
                ("ssl_key = </etc/ssl/mail/privkey.pem", "# ssl_key: none in tests"),
            ]
        else:
            replacements = [
                ("/etc/ssl/mail/fullchain.pem", str(tls.certificate)),
                ("/etc/ssl/mail/privkey.pem", str(tls.key)),
            ]
        for old, new in (
            *replacements,
            ("listen = *, ::", "listen = 127.0.0.1"),
            ("first_valid_uid = 5000", f"first_valid_uid = {self.mail_uid}"),
            ("last_valid_uid = 5000", f"last_valid_uid = {self.mail_uid}"),
            ("first_valid_gid = 5000", f"first_valid_gid = {self.mail_gid}"),
            ("last_valid_gid = 5000", f"last_valid_gid = {self.mail_gid}"),
            ("mail_access_groups = dinomail", f"mail_access_groups = {socket_group}"),
            (SHIPPED_DICT_SOCKET, dict_socket),
            ("port = 143", f"port = {self.imap_port}"),
            ("port = 993", "port = 0"),
            ("port = 4190", f"port = {self.sieve_port}"),
            ("/var/spool/postfix/private/", f"{self.private}/"),
        ):
            main = _replace(main, old, new, where)
        if auth == "lua":
            main = _replace(
                main, "!include auth-dinomail-dict.conf.ext",
                "!include auth-dinomail-lua.conf.ext", where,
            )
        elif auth != "dict":
            raise ValueError(f"auth must be dict or lua, not {auth!r}")
        if auth_policy:
            main += "\n!include auth-policy.conf.ext\n"
        if self.pop3_port:
            main += f"""
protocols = $protocols pop3
service pop3-login {{
  inet_listener pop3 {{
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
        main += f"""
# --- tests: private folders ---
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log}
instance_name = dinomail-test-{self.root.name}
auth_verbose = yes
# A failed login waits 2 s by default (against guessing); tests make many on purpose.
auth_failure_delay = 0
{extra}
"""
        self.config.write_text(main)
        for name in ("auth-dinomail-dict.conf.ext", "auth-dinomail-lua.conf.ext",
                     "dinomail-dict-auth.conf.ext", "auth-policy.conf.ext"):
            text = (source / name).read_text()
            if "/etc/dovecot/" in text:
                text = text.replace("/etc/dovecot/", conf_dir)
            text = text.replace(SHIPPED_DICT_SOCKET, dict_socket)
            text = text.replace(SHIPPED_LOOKUPD_URL, lookupd_url)
            (self.config_dir / name).write_text(text)
        # Dovecot 2.3 passes no settings to a Lua script: its URL is edited in the script.
        script = _replace(
            (SHIPPED / "dinomail-auth.lua").read_text(), f'url = "{SHIPPED_LOOKUPD_URL}"',
            f'url = "{lookupd_url}"', "conf/dovecot/dinomail-auth.lua",
        )
        (self.config_dir / "dinomail-auth.lua").write_text(script)

    # --- running ---------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        # The daemon keeps the standard streams it was given: a pipe would never reach EOF.
        errors = self.root / "dovecot.stderr"
        with errors.open("wb") as stderr:
            result = subprocess.run(
                [DOVECOT, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, timeout=30,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"dovecot did not start: {errors.read_text()}\n{self.log_text()}"
            )
        deadline = time.monotonic() + timeout
        while not (self.base_dir / "auth-client").exists() or not self.lmtp_socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not open its sockets:\n{self.log_text()}")
            time.sleep(0.02)

    def master_pid(self) -> int | None:
        try:
            return int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Dovecot, then fail if its log reports a panic, a fatal error or a crash."""
        self._stop(timeout)
        assert_clean_log("dovecot", self.log_text())

    def _stop(self, timeout: float) -> None:
        pid = self.master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def doveadm(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DOVEADM, "-c", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout,
        )

    def auth_test(self, login: str, password: str) -> subprocess.CompletedProcess[str]:
        """`doveadm auth test`, exempt from the growing delay Dovecot puts on repeated failures
        (tests fail logins on purpose)."""
        return self.doveadm("auth", "test", "-x", "no-penalty", login, password)

    def deliver(self, sender: str, recipient: str, message: str) -> None:
        """Deliver one message over LMTP, as Postfix would."""
        with smtplib.LMTP(str(self.lmtp_socket)) as lmtp:
            lmtp.sendmail(sender, [recipient], message.encode("utf-8"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class LookupdThread:
    """The real lookup daemon on an event loop in a thread of its own, with its own store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.store: Store | None = None
        self.daemon: Lookupd | None = None

    def start(self, *, wait_loaded: bool = True, timeout: float = 30.0) -> None:
        self._thread.start()

        async def start() -> None:
            self.store = Store(self.settings.DATABASE_URL)
            self.daemon = await start_lookupd(self.settings, self.store)

        self._run(start(), timeout)
        if wait_loaded:
            self.wait_until(lambda: self.daemon is not None and self.daemon.holder.current
                            is not None, "the first snapshot", timeout)

    def _run(self, coroutine: Awaitable[T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, function: Callable[[Store], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run `await function(store)` on the daemon's loop, e.g. a write through the store."""
        assert self.store is not None
        store = self.store
        return self._run(function(store), timeout)

    def wait_until(self, condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    def stop(self) -> None:
        async def stop() -> None:
            if self.daemon is not None:
                await self.daemon.stop()
            if self.store is not None:
                await self.store.close()

        if self._thread.is_alive():
            try:
                self._run(stop(), 30.0)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
        self.loop.close()
