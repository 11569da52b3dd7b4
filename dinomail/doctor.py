"""`dinomail doctor`: is this installation wired so that mail flows, end to end?

Each check asks the real thing (the daemon's listeners, `postconf`, `postmap`, `doveconf`,
`doveadm`, the database) and, when something is wrong, says what in plain words and how to fix
it. Everything it compares with comes from DinoMail's settings, through the same functions
`postfix-config` and `dovecot-config` write them with.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dinomail import postfix_config
from dinomail.listen import parse_listen
from dinomail.settings import Settings

if TYPE_CHECKING:
    # For annotations only: SQLAlchemy is imported where it is used, as in the rest of the module.
    from sqlalchemy.ext.asyncio import AsyncConnection

TIMEOUT = 10.0
# A name that is never a mail domain (RFC 2606): lookups of it must answer "not found".
PROBE_DOMAIN = "doctor.invalid"
PROBE_ADDRESS = f"postmaster@{PROBE_DOMAIN}"
# doveadm's exit codes (sysexits): 67 = no such user, 75 = temporary failure.
DOVEADM_NO_USER = 67
MAX_CLOCK_SKEW = 60.0
# Dovecot's defaults, which `doveconf -n` leaves out.
DOVECOT_FIRST_VALID = "500"
EARLIEST_SANE_YEAR = 2025

START_FIX = "start DinoMail (`systemctl start dinomail`) and read `journalctl -u dinomail`"
POSTFIX_FIX = "run `dinomail postfix-config --apply`, then `postfix reload`"
DOVECOT_FIX = ("run `dinomail dovecot-config --output /etc/dovecot/conf.d/99-dinomail.conf`, "
               "then `systemctl restart dovecot`")


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ok(self, what: str) -> None:
        self.passed.append(what)

    def problem(self, what: str, fix: str) -> None:
        self.problems.append(f"{what}. Fix: {fix}.")


@dataclass(frozen=True)
class Sample:
    """One real mailbox from the database, to look up through Dovecot."""

    mailbox: str | None


def _run(command: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# --- the database --------------------------------------------------------------------------------


async def check_database(settings: Settings, report: Report) -> Sample:
    from dinomail import migrate
    from dinomail.store import EVERYTHING, Store, mailboxes
    from dinomail.store.common import ListRequest
    from dinomail.store.errors import as_unavailable

    store = Store(settings.DATABASE_URL)
    try:
        current = await migrate.current_revision(store.engine)
        if current != migrate.head_revision():
            report.problem(f"the database is at revision {current or 'none (empty)'}, not "
                           f"{migrate.head_revision()}", "run `dinomail migrate`")
            return Sample(None)
        report.ok("database reachable and migrated")
        async with store.read() as conn:
            window = await mailboxes.list_window(conn, EVERYTHING, ListRequest(limit=20))
            if store.url.startswith("postgresql"):
                await _check_database_clock(conn, report)
    except Exception as error:
        unavailable = as_unavailable(error)
        if unavailable is None:
            raise
        report.problem(unavailable.message, "check DATABASE_URL and that the database server runs")
        return Sample(None)
    finally:
        await store.close()
    mailbox = next((row["email"] for row in window.rows if row["active"]), None)
    return Sample(mailbox)


async def _check_database_clock(conn: AsyncConnection, report: Report) -> None:
    import sqlalchemy as sa

    database_now = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
    skew = abs((datetime.datetime.now(datetime.UTC) - database_now).total_seconds())
    if skew > MAX_CLOCK_SKEW:
        report.problem(f"this machine's clock and the database server's differ by {skew:.0f} s",
                       "run an NTP client on both (`apt install systemd-timesyncd`)")


# --- the daemon's listeners ----------------------------------------------------------------------


def _connect(value: str) -> socket.socket:
    address = parse_listen(value)
    if address.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(address.path)
        return sock
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host or "",
                                                                     address.host or "")
    return socket.create_connection((host, address.port), timeout=TIMEOUT)


def _not_listening(report: Report, name: str, value: str, error: OSError) -> None:
    report.problem(f"nothing answers on {name} = {value} ({error.strerror or error})",
                   START_FIX)


def check_listeners(settings: Settings, report: Report) -> None:
    _check_socketmap(settings, report)
    for name, value in (("POLICY_LISTEN", settings.POLICY_LISTEN),
                        ("DICT_LISTEN", settings.dict_listen)):
        try:
            _connect(value).close()
            report.ok(f"{name} = {value} accepts connections")
        except OSError as error:
            _not_listening(report, name, value, error)
    for name, value in (("LOOKUPD_HTTP_LISTEN", settings.LOOKUPD_HTTP_LISTEN),
                        ("HTTP_LISTEN", settings.HTTP_LISTEN)):
        _check_http(report, name, value)


def _check_socketmap(settings: Settings, report: Report) -> None:
    value = settings.SOCKETMAP_LISTEN
    request = f"domains {PROBE_DOMAIN}".encode()
    try:
        with _connect(value) as sock:
            sock.sendall(b"%d:%s," % (len(request), request))
            reply = sock.recv(4096)
    except OSError as error:
        _not_listening(report, "SOCKETMAP_LISTEN", value, error)
        return
    if b":TEMP" in reply:
        report.problem(f"the lookup daemon on {value} has no mail data loaded yet",
                       "check that it reaches the database (`journalctl -u dinomail`)")
    elif b":NOTFOUND" in reply or b":OK" in reply:
        report.ok(f"SOCKETMAP_LISTEN = {value} answers lookups")
    else:
        report.problem(f"SOCKETMAP_LISTEN = {value} answered {reply[:60]!r}, not a socketmap "
                       "reply", "check that no other program uses that address")


def _check_http(report: Report, name: str, value: str) -> None:
    address = parse_listen(value)
    if address.path is not None:
        return  # urllib speaks no HTTP over unix sockets; the reverse proxy checks it
    host = "127.0.0.1" if address.host in ("", "0.0.0.0") else address.host or ""
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{address.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            json.loads(response.read() or b"{}")
        report.ok(f"{name} = {value} answers /healthz")
    except urllib.error.HTTPError as error:
        report.problem(f"{url} answered {error.code}: the daemon is not ready",
                       "check that it reaches the database (`journalctl -u dinomail`)")
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        report.problem(f"nothing answers on {name} = {value} ({reason})", START_FIX)


# --- unix socket permissions ---------------------------------------------------------------------


def can_connect(path: str, uid: int, gids: set[int]) -> bool:
    """Whether a process with `uid` and `gids` may connect to the unix socket at `path`:
    search permission on every folder above it, and write permission on the socket."""
    if uid == 0:
        return True
    target = Path(path)
    try:
        for folder in reversed(target.parents):
            if not _permits(os.stat(folder), uid, gids, 0o1):
                return False
        return _permits(os.stat(target), uid, gids, 0o2)
    except OSError:
        return False  # a folder the doctor itself may not search (run it as root)


def _permits(info: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & (bit << 6))
    if info.st_gid in gids:
        return bool(info.st_mode & (bit << 3))
    return bool(info.st_mode & bit)


def _group_ids(names: str) -> set[int]:
    ids = set()
    for name in re.split(r"[\s,]+", names.strip()):
        if not name:
            continue
        with contextlib.suppress(KeyError):
            ids.add(int(name) if name.isdigit() else grp.getgrnam(name).gr_gid)
    return ids


def check_dict_socket_access(settings: Settings, report: Report, access_groups: str) -> None:
    """Dovecot's mail processes (quota_clone) run as MAIL_UID, with MAIL_GID and the groups of
    its mail_access_groups: they must reach the dict socket."""
    path = parse_listen(settings.dict_listen).path
    if path is None:
        return
    try:
        info = os.stat(path)
    except OSError:
        return  # reported by the listener check
    if not stat.S_ISSOCK(info.st_mode):
        report.problem(f"{path} is not a socket", START_FIX)
        return
    gids = {settings.MAIL_GID} | _group_ids(access_groups)
    if can_connect(path, settings.MAIL_UID, gids):
        report.ok(f"Dovecot's mail processes may connect to {path}")
        return
    group = _group_name(info.st_gid)
    report.problem(
        f"Dovecot's mail processes (uid {settings.MAIL_UID}, groups "
        f"{access_groups or settings.MAIL_GID}) cannot connect to {path} "
        f"({_owner_name(info.st_uid)}:{group} {stat.S_IMODE(info.st_mode):04o}), so quota "
        "usage never reaches DinoMail",
        "set UNIX_SOCKET_GROUP (e.g. dinomail) and UNIX_SOCKET_MODE = \"0660\" in DinoMail's "
        "settings and restart it, name that group in Dovecot's mail_access_groups "
        "(dovecot-config does), and let the group search the folders above the socket",
    )


def check_postfix_socket_access(settings: Settings, report: Report) -> None:
    """Postfix's daemons run as `postfix`: a unix socketmap or policy socket must let it in."""
    try:
        account = pwd.getpwnam("postfix")
    except KeyError:
        return  # reported by the Postfix checks
    gids = {account.pw_gid} | {entry.gr_gid for entry in grp.getgrall()
                               if "postfix" in entry.gr_mem}
    for name, value in (("SOCKETMAP_LISTEN", settings.SOCKETMAP_LISTEN),
                        ("POLICY_LISTEN", settings.POLICY_LISTEN)):
        path = parse_listen(value).path
        if path is None or not os.path.exists(path):
            continue
        if not can_connect(path, account.pw_uid, gids):
            report.problem(
                f"Postfix (user postfix) cannot connect to {path} ({name})",
                "set UNIX_SOCKET_GROUP to a group postfix is in (or add postfix to the "
                "socket's group: `adduser postfix dinomail`) and restart both; note that a "
                "chrooted smtpd reaches only sockets inside /var/spool/postfix",
            )


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# --- Postfix -------------------------------------------------------------------------------------


def _normalize(value: str) -> str:
    return re.sub(r"\s*,\s*", ", ", " ".join(value.split()))


def check_postfix(settings: Settings, report: Report, config_dir: str) -> None:
    result = _run(["postconf", "-c", config_dir, "-n"])
    if result is None or result.returncode != 0:
        detail = _last_line(result.stderr) if result else "postconf is not installed"
        report.problem(f"cannot read Postfix's settings in {config_dir} ({detail})",
                       "install Postfix (`apt install postfix`), or give --postfix-config-dir")
        return
    # `name = value`, or `name =` for a setting made empty on purpose, which is not the same as
    # one left out: that takes Postfix's default (virtual_alias_domains = $virtual_alias_maps).
    current: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, equals, value = line.partition("=")
        if equals:
            current[name.strip()] = value.strip()
    wrong = False
    wanted_main_cf = postfix_config.main_cf(settings)
    earlier = postfix_config.earlier_recipient_restrictions(settings)
    if all(_normalize(current.get(name, "")) == _normalize(value)
           for name, value in earlier.items()):
        # Correct, only dearer: a policy request for every inbound recipient.
        wanted_main_cf["smtpd_recipient_restrictions"] = earlier["smtpd_recipient_restrictions"]
        report.ok("Postfix asks DinoMail's policy service for inbound mail, as DinoMail's "
                  "earlier lines did: this works; `dinomail postfix-config --apply` sets the "
                  "recipient_access map, one short lookup a recipient instead")
    for name, wanted in wanted_main_cf.items():
        have = current.get(name)
        if have is None or _normalize(have) != _normalize(wanted):
            wrong = True
            shown = "not set" if have is None else f"{have!r}"
            report.problem(f"Postfix's {name} is {shown}, DinoMail's settings need {wanted!r}",
                           POSTFIX_FIX)
    if not _submission_asks_policy(config_dir, postfix_config.policy_service(settings),
                                   current):
        wrong = True
        report.problem("Postfix has no submission service (port 587, smtpd_sasl_auth_enable) "
                       "asking DinoMail's policy service", POSTFIX_FIX)
    if not wrong:
        report.ok("Postfix's main.cf and master.cf ask DinoMail as its settings say")
    files = re.split(r"[\s,]+", current.get("smtpd_tls_chain_files", ""))
    files += [current.get("smtpd_tls_cert_file", ""), current.get("smtpd_tls_key_file", "")]
    _check_files_readable(report, "Postfix", [path for path in files if path.startswith("/")])
    # A name that is never ours must come back "not found" (exit 1) without a warning: Postfix
    # reached the lookup daemon and understood its answer.
    table = postfix_config.socketmap(settings, "domains")
    query = _run(["postmap", "-c", config_dir, "-q", PROBE_DOMAIN, table])
    if query is None or query.returncode != 1 or "warning" in query.stderr:
        detail = _last_line(query.stderr) if query else "postmap is not installed"
        report.problem(f"`postmap -q {PROBE_DOMAIN} {table}` does not answer ({detail})",
                       "start DinoMail and check SOCKETMAP_LISTEN")
        return
    report.ok(f"postmap answers through {table}")


def _submission_asks_policy(config_dir: str, policy: str, main_cf: dict[str, str]) -> bool:
    """Whether master.cf has a service with SASL logins (submission, whatever its address) and
    each such service checks the policy at RCPT TO and at the end of data (with its own
    restrictions, or main.cf's)."""
    result = _run(["postconf", "-c", config_dir, "-P"])
    if result is None or result.returncode != 0:
        return False
    services: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" = ")
        service, _, parameter = key.rpartition("/")
        services.setdefault(service, {})[parameter] = value.strip()
    submissions = [options for options in services.values()
                   if options.get("smtpd_sasl_auth_enable") == "yes"]
    return bool(submissions) and all(
        policy in options.get(name, main_cf.get(name, ""))
        for options in submissions
        for name in ("smtpd_recipient_restrictions", "smtpd_end_of_data_restrictions")
    )


# --- Dovecot -------------------------------------------------------------------------------------


def _doveconf(config_file: str) -> tuple[str, str | None]:
    result = _run(["doveconf", "-c", config_file, "-n"])
    if result is None:
        return "", "doveconf is not installed (apt install dovecot-imapd dovecot-lmtpd)"
    if result.returncode != 0:
        return "", _last_line(result.stderr)
    return result.stdout, None


def _setting(text: str, name: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)} = (.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def check_dovecot(settings: Settings, report: Report, config_file: str, sample: Sample) -> None:
    text, error = _doveconf(config_file)
    if error is not None:
        report.problem(f"cannot read Dovecot's settings in {config_file} ({error})",
                       "fix the line it names, or give --dovecot-config")
        return
    certificate = _setting(text, "ssl_cert")
    if certificate.startswith("<"):
        _check_files_readable(report, "Dovecot", [certificate[1:].strip()])
    socket_path = parse_listen(settings.dict_listen).path or ""
    quota_dict = _setting(text, "quota_clone_dict")
    if not re.fullmatch(rf"proxy:(\S*:)?{re.escape(socket_path)}:quota", quota_dict):
        report.problem(f"Dovecot's quota_clone_dict is {quota_dict!r}, not DinoMail's dict "
                       f"socket {socket_path}", DOVECOT_FIX)
    _check_dovecot_auth(report, text, socket_path)
    for kind, value in (("uid", settings.MAIL_UID), ("gid", settings.MAIL_GID)):
        low = _setting(text, f"first_valid_{kind}") or DOVECOT_FIRST_VALID
        high = _setting(text, f"last_valid_{kind}") or "0"
        if value < int(low) or (int(high) and value > int(high)):
            report.problem(
                f"MAIL_{kind.upper()} = {value} is outside Dovecot's first_valid_{kind}.."
                f"last_valid_{kind} ({low}..{high}): Dovecot refuses every mailbox",
                f"make MAIL_{kind.upper()} the vmail user's {kind} and restart DinoMail, or "
                f"{DOVECOT_FIX}",
            )
    check_dict_socket_access(settings, report, _setting(text, "mail_access_groups"))
    _check_doveadm(settings, report, config_file, sample)
    _check_mail_home(settings, report)


def _check_dovecot_auth(report: Report, text: str, socket_path: str) -> None:
    drivers = re.findall(r"^\s*(passdb|userdb) \{\s*\n((?:.*\n)*?)\s*\}", text, re.MULTILINE)
    for kind, body in drivers:
        driver, args = _setting(body, "driver"), _setting(body, "args")
        if driver == "dict":
            uri = ""
            with contextlib.suppress(OSError):
                uri = _setting(Path(args).read_text(), "uri")
            if f":{socket_path}:auth" in uri:
                continue
            report.problem(f"Dovecot's {kind} asks {uri or args!r}, not DinoMail's dict socket "
                           f"{socket_path}", DOVECOT_FIX)
            return
        if driver == "lua":
            continue  # its URL is inside the script: the doveadm lookups below prove it works
    if not any(_setting(body, "driver") in ("dict", "lua") for _, body in drivers):
        report.problem("Dovecot has no passdb/userdb asking DinoMail", DOVECOT_FIX)
        return
    report.ok("Dovecot's passdb, userdb and quota_clone ask DinoMail")


def _check_doveadm(settings: Settings, report: Report, config_file: str, sample: Sample) -> None:
    probe = _run(["doveadm", "-c", config_file, "user", PROBE_ADDRESS])
    if probe is None or probe.returncode != DOVEADM_NO_USER:
        detail = _last_line((probe.stderr + probe.stdout) if probe else "doveadm is missing")
        report.problem(f"`doveadm user {PROBE_ADDRESS}` fails ({detail})",
                       "start Dovecot, and DinoMail, and check their logs")
        return
    if sample.mailbox is None:
        report.ok("doveadm user answers (no mailbox yet to look up)")
        return
    user = _run(["doveadm", "-c", config_file, "user", sample.mailbox])
    auth = _run(["doveadm", "-c", config_file, "auth", "lookup", sample.mailbox])
    if user is None or user.returncode != 0 or auth is None or auth.returncode != 0:
        failed = user if user is None or user.returncode != 0 else auth
        detail = _last_line((failed.stderr + failed.stdout) if failed else "")
        report.problem(f"Dovecot cannot look up {sample.mailbox} ({detail})",
                       "check DinoMail's and Dovecot's logs")
        return
    # doveadm prints a table: one `field<TAB>value` line per userdb field.
    fields = dict(line.split(None, 1) for line in user.stdout.splitlines()
                  if len(line.split(None, 1)) == 2)
    wanted = {"uid": str(settings.MAIL_UID), "gid": str(settings.MAIL_GID)}
    for name, value in wanted.items():
        if fields.get(name) != value:
            report.problem(f"Dovecot gives {sample.mailbox} {name} {fields.get(name)}, not "
                           f"MAIL_{name.upper()} = {value}", "restart DinoMail after changing "
                           f"MAIL_{name.upper()}")
            return
    report.ok(f"doveadm user and auth lookup answer for {sample.mailbox}")


def _check_mail_home(settings: Settings, report: Report) -> None:
    base = Path(settings.MAIL_HOME.split("%", 1)[0])
    folder = base if settings.MAIL_HOME.split("%", 1)[0].endswith("/") else base.parent
    try:
        info = os.stat(folder)
    except OSError:
        report.problem(f"{folder} (MAIL_HOME = {settings.MAIL_HOME}) does not exist",
                       f"install -d -o {settings.MAIL_UID} -g {settings.MAIL_GID} -m 0750 {folder}")
        return
    if info.st_uid != settings.MAIL_UID:
        report.problem(f"{folder} belongs to uid {info.st_uid}, not MAIL_UID = "
                       f"{settings.MAIL_UID}: Dovecot cannot create mailboxes there",
                       f"chown {settings.MAIL_UID}:{settings.MAIL_GID} {folder}, or set MAIL_UID")
        return
    report.ok(f"{folder} belongs to MAIL_UID = {settings.MAIL_UID}")


def _check_files_readable(report: Report, daemon: str, paths: list[str]) -> None:
    for path in paths:
        if not os.access(path, os.R_OK):
            report.problem(f"{daemon}'s TLS file {path} is missing or unreadable, so TLS (and "
                           "every login over it) fails",
                           "point TLS_CERT_FILE and TLS_KEY_FILE at your certificate and key, "
                           "then run postfix-config and dovecot-config again")


# --- certificates, clock, DNS --------------------------------------------------------------------


def check_certificates(settings: Settings, report: Report) -> None:
    from cryptography import x509

    if not (settings.TLS_CERT_FILE and settings.TLS_KEY_FILE):
        return
    try:
        certificate = x509.load_pem_x509_certificate(Path(settings.TLS_CERT_FILE).read_bytes())
        Path(settings.TLS_KEY_FILE).read_bytes()
    except (OSError, ValueError) as error:
        report.problem(f"cannot read the certificate or key (TLS_CERT_FILE, TLS_KEY_FILE): "
                       f"{getattr(error, 'strerror', None) or error}",
                       "point them at readable PEM files (certbot: fullchain.pem, privkey.pem)")
        return
    now = datetime.datetime.now(datetime.UTC)
    if certificate.not_valid_after_utc < now:
        report.problem(f"the certificate {settings.TLS_CERT_FILE} expired on "
                       f"{certificate.not_valid_after_utc:%Y-%m-%d}", "renew it (`certbot renew`)")
    elif certificate.not_valid_before_utc > now:
        report.problem(f"the certificate {settings.TLS_CERT_FILE} is valid only from "
                       f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                       "check this machine's clock")
    else:
        report.ok(f"certificate {settings.TLS_CERT_FILE} readable and valid")


def check_clock_and_dns(settings: Settings, report: Report) -> None:
    import dns.resolver

    if datetime.datetime.now(datetime.UTC).year < EARLIEST_SANE_YEAR:
        report.problem("this machine's clock is in the past: TLS and DKIM checks fail",
                       "run an NTP client (`apt install systemd-timesyncd`)")
    if settings.DNS_RESOLVERS:
        return
    try:
        dns.resolver.Resolver()
    except dns.resolver.NoResolverConfiguration:
        report.problem("no DNS resolver is configured (/etc/resolv.conf names none): Postfix "
                       "cannot deliver outgoing mail", "configure one, or set DNS_RESOLVERS")
        return
    if settings.MX_HOST:
        try:
            socket.getaddrinfo(settings.MX_HOST, 25)
        except OSError:
            report.problem(f"MX_HOST = {settings.MX_HOST} does not resolve",
                           "add its A/AAAA record in DNS")


# --- all of it -----------------------------------------------------------------------------------


async def run_doctor(settings: Settings, *, postfix_dir: str, dovecot_file: str) -> Report:
    report = Report()
    sample = await check_database(settings, report)
    check_listeners(settings, report)
    check_postfix(settings, report, postfix_dir)
    check_postfix_socket_access(settings, report)
    check_dovecot(settings, report, dovecot_file, sample)
    check_certificates(settings, report)
    check_clock_and_dns(settings, report)
    return report

