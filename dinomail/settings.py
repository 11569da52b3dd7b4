"""Settings: one typed object, read from a TOML file and `DINOMAIL_*` environment variables.

Precedence: environment over file over default. Every value is validated when the settings are
loaded, so a bad value stops the program at start with one line naming the key (see
`SettingsError`), never in the middle of serving mail.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_ENV = "DINOMAIL_CONFIG"
# The group the installed daemons run as, which Dovecot's mail processes join (dovecot-config).
DEFAULT_UNIX_SOCKET_GROUP = "dinomail"
DEFAULT_CONFIG_FILE = "dinomail.toml"
LANGUAGES = ("en", "fr")


class SettingsError(Exception):
    """A setting has a bad value; `str()` is the one line shown to the admin."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def env_name(key: str) -> str:
    """`NAME` → `DINOMAIL_NAME`, but `DINOMAIL_NAME` stays itself (the prefix is not doubled)."""
    return key if key.startswith("DINOMAIL_") else f"DINOMAIL_{key}"


@dataclass(frozen=True)
class Settings:
    # The original product's settings, names unchanged.
    # Secrets stay out of repr(), so no log line or traceback that shows the settings has them.
    SECRET_KEY: str = field(default="", repr=False)
    DEBUG: bool = False
    ALLOWED_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    # May hold the database password.
    DATABASE_URL: str = field(default="sqlite:///dinomail.sqlite3", repr=False)
    LANGUAGE_CODE: str = "en"
    TIME_ZONE: str = "UTC"
    API_LIMIT_PER_PAGE: int = 0
    # Accept the API key in the query string (`?username=…&api_key=…`), as tastypie did; the
    # original's clients (and the `slumber` client's usual setup) send it so. Logs redact it.
    API_KEY_IN_QUERY: bool = True
    DINOMAIL_NAME: str = "DinoMail"
    DINOMAIL_CATCH_LINE: str = "Peaceful emails !"
    DINOMAIL_LEGALS: str = ""
    DINOMAIL_PASSWORD_SCHEME: str = "SHA512-CRYPT"
    ALLOW_WEAK_PASSWORD_SCHEMES: bool = False
    # Who must log in to the pages with a second factor (TOTP app, passkey): "nobody",
    # "superadmins" or "all". One who must and has none is led to enrol right after their
    # password and can do nothing else until they have (dinomail.store.twofactor).
    TWO_FACTOR_REQUIRED: str = "nobody"
    # The WebAuthn relying party id passkeys are bound to: a domain name, the host of the pages
    # or one it ends with. Empty: the host the browser asked for (browsers refuse IP addresses).
    WEBAUTHN_RP_ID: str = ""
    # The shortest new mailbox password (see `dinomail.store.mailboxes.check_new_password`).
    MAILBOX_PASSWORD_MIN_LENGTH: int = 10
    # The mailbox owners' self-service pages under `/me/` (password, forwarding, …); off here,
    # they are off for every domain, whatever each domain's own switch says.
    SELF_SERVICE: bool = True
    # The most addresses a mailbox may forward to (its own copy not counted).
    FORWARDING_MAX_DESTINATIONS: int = 10

    # Where the daemons listen: `HOST:PORT`, `[v6]:PORT` or `unix:/path`.
    HTTP_LISTEN: str = "127.0.0.1:8000"
    SOCKETMAP_LISTEN: str = "127.0.0.1:10027"
    POLICY_LISTEN: str = "127.0.0.1:10028"
    LOOKUPD_HTTP_LISTEN: str = "127.0.0.1:10029"
    DICT_LISTEN: str = ""  # empty: a socket in STATE_DIR, see `dict_listen`
    # Who may connect to the lookup daemon's unix sockets (DICT_LISTEN, and any other *_LISTEN
    # written `unix:/path`), applied right after each is bound. Empty owner: the daemon's own.
    # Empty group: DEFAULT_UNIX_SOCKET_GROUP when that group exists (and the daemon may give
    # it), else the daemon's own. Dovecot's mail processes (quota_clone) reach the dict socket
    # through this group, which Dovecot's mail_access_groups names.
    UNIX_SOCKET_OWNER: str = ""
    UNIX_SOCKET_GROUP: str = ""
    UNIX_SOCKET_MODE: str = "0660"

    # Postfix policy service (POLICY_LISTEN): a full mailbox refused at RCPT TO with
    # POLICY_QUOTA_REPLY; authenticated senders over their sending limits answered with
    # POLICY_RATE_LIMIT_REPLY (unless their domain sets its own). Seconds between reloads of
    # the limits and full mailboxes, between writes of the counts, and between reads of the
    # counts other lookup daemons wrote.
    POLICY_CHECK_QUOTA: bool = True
    POLICY_QUOTA_REPLY: str = "552 5.2.2 Mailbox full"
    POLICY_RATE_LIMIT_REPLY: str = (
        "DEFER_IF_PERMIT 4.7.1 Sending rate limit exceeded, try again later"
    )
    POLICY_REFRESH_INTERVAL: float = 5.0
    POLICY_FLUSH_INTERVAL: float = 1.0
    POLICY_SYNC_INTERVAL: float = 5.0

    # App passwords (lookup daemon): seconds between writes of their last use.
    APP_PASSWORD_FLUSH_INTERVAL: float = 5.0

    # Dovecot auth policy (brute-force protection, `/dovecot/auth-policy` on LOOKUPD_HTTP_LISTEN):
    # distinct failed passwords remembered for AUTH_POLICY_WINDOW seconds, per client address
    # and per login; past *_TARPIT_AFTER a delay of AUTH_POLICY_TARPIT_SECONDS per further
    # failure (up to AUTH_POLICY_MAX_TARPIT), past *_BLOCK_AFTER a refusal (0: never).
    AUTH_POLICY_API_KEY: str = field(default="", repr=False)  # empty: loopback clients only
    AUTH_POLICY_WINDOW: float = 600.0
    AUTH_POLICY_IP_TARPIT_AFTER: int = 5
    AUTH_POLICY_IP_BLOCK_AFTER: int = 20
    AUTH_POLICY_LOGIN_TARPIT_AFTER: int = 5
    AUTH_POLICY_LOGIN_BLOCK_AFTER: int = 30
    AUTH_POLICY_TARPIT_SECONDS: int = 2
    AUTH_POLICY_MAX_TARPIT: int = 15
    AUTH_POLICY_ALLOW_NETWORKS: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Seconds between writes of the current blocks to the database (where admins list and
    # unblock them) and reads of admins' unblocks.
    AUTH_POLICY_SYNC_INTERVAL: float = 5.0

    # Where generated state lives (the SECRET_KEY file, the default dict socket).
    # systemd's StateDirectory= sets $STATE_DIRECTORY, which is the natural default there.
    STATE_DIR: str = field(default_factory=lambda: os.environ.get("STATE_DIRECTORY", "state"))

    # The certificate Postfix (ports 25 and 587) and Dovecot (993) present, for
    # `dinomail postfix-config` and `dovecot-config` (empty: leave their TLS settings alone).
    TLS_CERT_FILE: str = ""
    TLS_KEY_FILE: str = ""

    # Mail rules shared by every lookup protocol.
    RECIPIENT_DELIMITER: str = "+"
    MAIL_HOME: str = "/var/vmail/%d/%n"
    MAIL_UID: int = 5000
    MAIL_GID: int = 5000

    # Dovecot: how often quota usage from quota_clone is written to the database (seconds), and
    # the secret Dovecot's Lua script must send to the HTTP endpoints (empty: loopback only).
    QUOTA_FLUSH_INTERVAL: float = 1.0
    DOVECOT_HTTP_SECRET: str = field(default="", repr=False)

    # The lookup daemon's refresher.
    SQLITE_POLL_INTERVAL: float = 0.25
    # Where lookupd reads the mail data from, when not DATABASE_URL (empty): a PostgreSQL
    # streaming-replication standby near it, or several servers libpq style
    # (`postgresql://h1,h2/db?target_session_attrs=prefer-standby`). Its writes (quota usage,
    # policy counters, auth blocks) still go to DATABASE_URL.
    LOOKUPD_DATABASE_URL: str = field(default="", repr=False)
    # Seconds between reads of the change log on a PostgreSQL standby (which cannot LISTEN).
    LOOKUPD_POLL_INTERVAL: float = 0.25
    FULL_RESYNC_INTERVAL: float = 3600.0
    # The last loaded mail data, kept on disk and served when the daemon starts while the
    # database is unreachable (a relative path is inside STATE_DIR; empty: off), and how often
    # it is written again after changes (seconds; it is always written after a full load).
    LOOKUPD_SNAPSHOT_FILE: str = "lookupd-snapshot.json"
    LOOKUPD_SNAPSHOT_INTERVAL: float = 300.0

    # Connection limits of the lookup listeners: past its limit, a listener leaves new clients
    # waiting in the backlog. LOOKUPD_RESERVED_FILES descriptors are kept for everything else
    # (HTTP and /healthz, the database, logs); when the process may open fewer descriptors than
    # the limits and that reserve need, the limits are lowered in proportion at start. A request
    # (socketmap, dict line, policy block) must arrive whole within LOOKUPD_REQUEST_TIMEOUT s.
    SOCKETMAP_MAX_CONNECTIONS: int = 8192
    POLICY_MAX_CONNECTIONS: int = 4096
    DICT_MAX_CONNECTIONS: int = 4096
    LOOKUPD_RESERVED_FILES: int = 256
    LOOKUPD_REQUEST_TIMEOUT: float = 10.0
    # Worker processes of `dinomail lookupd`, each with its own snapshot, sharing the listeners
    # (lookupd.supervisor); 1: one process, as `serve` always runs it.
    LOOKUPD_WORKERS: int = 1

    # DNS checks of each domain (DKIM, SPF, DMARC, MX, MTA-STS, TLS-RPT, autoconfig names).
    # Resolvers as `IP` or `IP:PORT` (`[IPv6]:PORT`); empty: the system's (/etc/resolv.conf).
    DNS_RESOLVERS: tuple[str, ...] = ()
    DNS_TIMEOUT: float = 5.0
    # Seconds between background checks of a domain; 0 checks only when asked to.
    DNS_CHECK_INTERVAL: float = 21600.0
    DNS_CHECK_CONCURRENCY: int = 4
    # The host MX records should name, unless a domain sets its own (`/api/clientconfig/`).
    MX_HOST: str = ""
    # Where the DKIM signer (OpenDKIM, Rspamd) finds the private keys DinoMail exports.
    DKIM_KEY_DIR: str = "/var/lib/dinomail/dkim"

    # DMARC and TLS-RPT report intake: where the LMTP listener Postfix delivers report mail to
    # listens (empty: no listener; the shipped conf/postfix/reports.cf uses 127.0.0.1:10030),
    # the address reports are sent to (shown in the pages for the rua= of the DMARC and TLS-RPT
    # records; empty: dmarc-reports@<each domain>), and how many days reports are kept (0: for
    # ever); the admin API's process deletes older ones daily.
    REPORTS_LMTP_LISTEN: str = ""
    REPORTS_ADDRESS: str = ""
    REPORTS_RETENTION_DAYS: int = 365

    @property
    def dict_listen(self) -> str:
        return self.DICT_LISTEN or f"unix:{Path(self.STATE_DIR).resolve() / 'dovecot-dict.sock'}"

    @property
    def unix_socket_mode(self) -> int:
        return int(self.UNIX_SOCKET_MODE, 8)

    @property
    def lookupd_database_url(self) -> str:
        """The database lookupd follows: LOOKUPD_DATABASE_URL, else DATABASE_URL."""
        return self.LOOKUPD_DATABASE_URL or self.DATABASE_URL

    @property
    def lookupd_snapshot_path(self) -> Path | None:
        """Where lookupd keeps its last loaded data on disk; None when that is turned off."""
        if not self.LOOKUPD_SNAPSHOT_FILE:
            return None
        return Path(self.STATE_DIR).resolve() / self.LOOKUPD_SNAPSHOT_FILE

    @property
    def api_page_limit(self) -> int:
        """The original's `0` means "no limit", which tastypie capped at 1000; so do we."""
        return self.API_LIMIT_PER_PAGE or MAX_PAGE_LIMIT


MAX_PAGE_LIMIT = 1000
SETTING_NAMES = tuple(f.name for f in fields(Settings))


# --- value parsing -------------------------------------------------------------------------------


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
    raise ValueError("must be true or false")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError("must be an integer")


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError("must be a number")


def _parse_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("must be a string")


def _parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
    else:
        raise ValueError("must be a list of strings (comma-separated in the environment)")
    return tuple(item for item in items if item)


_PARSERS: dict[type | str, Callable[[Any], Any]] = {
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "str": _parse_str,
    "tuple[str, ...]": _parse_list,
}


# --- validation of parsed values -----------------------------------------------------------------


def _check_listen(value: str) -> None:
    from dinomail.listen import parse_listen

    address = parse_listen(value)
    if not address.is_unix and address.port == 0:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")


def _check_database_url(value: str) -> None:
    # Imported here: the database module pulls in SQLAlchemy, which the CLI's `pw` need not load.
    from dinomail.database import DatabaseURLError, async_url

    try:
        async_url(value)
    except DatabaseURLError as error:
        raise ValueError(str(error)) from None


def _check_positive(value: float) -> None:
    if value <= 0:
        raise ValueError("must be greater than zero")


def _check_non_negative(value: int) -> None:
    if value < 0:
        raise ValueError("must be zero or more")


def _check_password_min_length(value: int) -> None:
    # Below 8, NIST SP 800-63B's floor, a password falls to guessing over the network.
    if not 8 <= value <= 128:
        raise ValueError("must be between 8 and 128")


def _check_language(value: str) -> None:
    if value not in LANGUAGES:
        raise ValueError(f"must be one of {', '.join(LANGUAGES)}")


def _check_time_zone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None


def _check_delimiter(value: str) -> None:
    if "@" in value or any(char.isspace() for char in value):
        raise ValueError("must be characters other than @ and spaces (or empty for none)")


def _check_mail_home(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path template, as in /var/vmail/%d/%n")


def _check_two_factor_required(value: str) -> None:
    from dinomail.store.twofactor import REQUIRED_CHOICES

    if value not in REQUIRED_CHOICES:
        raise ValueError("must be one of " + ", ".join(REQUIRED_CHOICES))


def _check_rp_id(value: str) -> None:
    if not value:
        return
    from dinomail.validation import ValidationError, normalize_hostname

    try:
        normalize_hostname(value, "WEBAUTHN_RP_ID")
    except ValidationError as error:
        raise ValueError(error.message) from None


def _check_http_secret(value: str) -> None:
    # Sent in an HTTP header by Dovecot's Lua script: printable ASCII, and too long to guess.
    if value and (len(value) < 16 or not value.isascii() or not value.isprintable()
                  or " " in value):
        raise ValueError("must be empty, or at least 16 printable ASCII characters without spaces")


def _check_allowed_hosts(value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("must name at least one host, or * for any")


def _check_policy_reply(value: str) -> None:
    # The store validates a domain's own reply with the same rules.
    from dinomail.store.policy import normalize_policy_reply
    from dinomail.validation import ValidationError

    try:
        normalized = normalize_policy_reply(value, "reply")
    except ValidationError as error:
        raise ValueError(error.message) from None
    if not normalized:
        raise ValueError("must be a Postfix action, as in `552 5.2.2 Mailbox full`")


def _check_networks(value: tuple[str, ...]) -> None:
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not a network, as in 192.0.2.0/24 or ::1") from None


_CHECKS: dict[str, Callable[[Any], None]] = {
    "DATABASE_URL": _check_database_url,
    "LOOKUPD_DATABASE_URL": lambda value: _check_database_url(value) if value else None,
    "LANGUAGE_CODE": _check_language,
    "TIME_ZONE": _check_time_zone,
    "API_LIMIT_PER_PAGE": _check_non_negative,
    "MAILBOX_PASSWORD_MIN_LENGTH": _check_password_min_length,
    "TWO_FACTOR_REQUIRED": _check_two_factor_required,
    "WEBAUTHN_RP_ID": _check_rp_id,
    "FORWARDING_MAX_DESTINATIONS": lambda value: _check_at_least_one(value),
    "ALLOWED_HOSTS": _check_allowed_hosts,
    "HTTP_LISTEN": _check_listen,
    "SOCKETMAP_LISTEN": _check_listen,
    "POLICY_LISTEN": _check_listen,
    "POLICY_QUOTA_REPLY": _check_policy_reply,
    "POLICY_RATE_LIMIT_REPLY": _check_policy_reply,
    "POLICY_REFRESH_INTERVAL": _check_positive,
    "POLICY_FLUSH_INTERVAL": _check_positive,
    "POLICY_SYNC_INTERVAL": _check_positive,
    "APP_PASSWORD_FLUSH_INTERVAL": _check_positive,
    "AUTH_POLICY_API_KEY": _check_http_secret,
    "AUTH_POLICY_WINDOW": _check_positive,
    "AUTH_POLICY_IP_TARPIT_AFTER": _check_non_negative,
    "AUTH_POLICY_IP_BLOCK_AFTER": _check_non_negative,
    "AUTH_POLICY_LOGIN_TARPIT_AFTER": _check_non_negative,
    "AUTH_POLICY_LOGIN_BLOCK_AFTER": _check_non_negative,
    "AUTH_POLICY_TARPIT_SECONDS": _check_non_negative,
    "AUTH_POLICY_MAX_TARPIT": _check_non_negative,
    "AUTH_POLICY_ALLOW_NETWORKS": _check_networks,
    "AUTH_POLICY_SYNC_INTERVAL": _check_positive,
    "LOOKUPD_HTTP_LISTEN": _check_listen,
    "DICT_LISTEN": lambda value: _check_listen(value) if value else None,
    "RECIPIENT_DELIMITER": _check_delimiter,
    "MAIL_HOME": _check_mail_home,
    "MAIL_UID": _check_non_negative,
    "MAIL_GID": _check_non_negative,
    "SQLITE_POLL_INTERVAL": _check_positive,
    "LOOKUPD_POLL_INTERVAL": _check_positive,
    "FULL_RESYNC_INTERVAL": _check_positive,
    "QUOTA_FLUSH_INTERVAL": _check_positive,
    "LOOKUPD_SNAPSHOT_INTERVAL": _check_positive,
    "SOCKETMAP_MAX_CONNECTIONS": lambda value: _check_at_least_one(value),
    "POLICY_MAX_CONNECTIONS": lambda value: _check_at_least_one(value),
    "DICT_MAX_CONNECTIONS": lambda value: _check_at_least_one(value),
    "LOOKUPD_RESERVED_FILES": _check_non_negative,
    "LOOKUPD_REQUEST_TIMEOUT": _check_positive,
    "LOOKUPD_WORKERS": lambda value: _check_workers(value),
    "DOVECOT_HTTP_SECRET": _check_http_secret,
}


def _check_resolvers(value: tuple[str, ...]) -> None:
    from dinomail.dnscheck.resolver import parse_nameserver

    for item in value:
        parse_nameserver(item)


def _check_mx_host(value: str) -> None:
    from dinomail.validation import ValidationError, normalize_hostname

    try:
        normalize_hostname(value, "MX_HOST")
    except ValidationError as error:
        raise ValueError(error.message) from None


def _check_email(value: str) -> None:
    from dinomail.validation import ValidationError, normalize_email

    try:
        normalize_email(value, "REPORTS_ADDRESS")
    except ValidationError as error:
        raise ValueError(error.message) from None


def _check_at_least_one(value: int) -> None:
    if value < 1:
        raise ValueError("must be 1 or more")


# More workers than this is a typo, not a machine: each holds its own copy of the data.
MAX_LOOKUPD_WORKERS = 64


def _check_workers(value: int) -> None:
    if not 1 <= value <= MAX_LOOKUPD_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_LOOKUPD_WORKERS}")


def _check_absolute_path(value: str) -> None:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")


def _check_socket_mode(value: str) -> None:
    try:
        mode = int(value, 8)
    except ValueError:
        raise ValueError("must be an octal file mode, as in 0660") from None
    if not 0 <= mode <= 0o777:
        raise ValueError("must be an octal file mode from 0000 to 0777, as in 0660")
    if not mode & 0o600 == 0o600:
        raise ValueError("must let the owner read and write (0600 at least), as in 0660")


def _check_account_name(value: str) -> None:
    if value and (not value.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        raise ValueError("must be a user or group name (or number), as in dinomail")


def _check_optional_path(value: str) -> None:
    if value:
        _check_absolute_path(value)


_CHECKS.update({
    "UNIX_SOCKET_OWNER": _check_account_name,
    "UNIX_SOCKET_GROUP": _check_account_name,
    "UNIX_SOCKET_MODE": _check_socket_mode,
    "TLS_CERT_FILE": _check_optional_path,
    "TLS_KEY_FILE": _check_optional_path,
    "DNS_RESOLVERS": _check_resolvers,
    "DNS_TIMEOUT": _check_positive,
    "DNS_CHECK_INTERVAL": _check_non_negative,
    "DNS_CHECK_CONCURRENCY": _check_at_least_one,
    "MX_HOST": _check_mx_host,
    "DKIM_KEY_DIR": _check_absolute_path,
    "REPORTS_LMTP_LISTEN": lambda value: _check_listen(value) if value else None,
    "REPORTS_ADDRESS": lambda value: _check_email(value) if value else None,
    "REPORTS_RETENTION_DAYS": _check_non_negative,
})


def _check_password_scheme(values: dict[str, Any]) -> None:
    """Resolve the scheme setting (original dotted names included) and refuse weak ones."""
    from dinomail.passwords import PasswordSchemeError, scheme_from_setting

    key = "DINOMAIL_PASSWORD_SCHEME"
    try:
        values[key] = scheme_from_setting(
            values[key], allow_weak=values["ALLOW_WEAK_PASSWORD_SCHEMES"]
        )
    except PasswordSchemeError as error:
        raise SettingsError(key, str(error)) from None


# --- loading -------------------------------------------------------------------------------------


# Settings an older configuration may still hold, which nothing reads any more: accepted with a
# warning, so that a configuration carried over from an earlier release keeps starting.
RETIRED_SETTINGS: Mapping[str, str] = {
    "STATIC_ROOT": "the pages serve their static files themselves",
    "VACATION_REFRESH_INTERVAL": "vacation changes reach the lookup daemon through the change log",
}

log = logging.getLogger("dinomail.settings")


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise SettingsError("config", f"{path}: no such file") from None
    except OSError as error:
        raise SettingsError("config", f"{path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError("config", f"{path}: not valid TOML ({error})") from None
    for name in sorted(set(data) & set(RETIRED_SETTINGS)):
        log.warning("%s in %s is no longer used (%s): it can be removed",
                    name, path, RETIRED_SETTINGS[name])
        del data[name]
    unknown = sorted(set(data) - set(SETTING_NAMES))
    if unknown:
        raise SettingsError(unknown[0], f"unknown setting in {path}")
    return data


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(
    config_path: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, parse and validate every setting; raise `SettingsError` on the first bad one."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config_path, environ)
    raw: dict[str, Any] = read_config_file(path) if path else {}
    for name in SETTING_NAMES:
        if env_name(name) in environ:
            raw[name] = environ[env_name(name)]

    values: dict[str, Any] = {}
    for spec in fields(Settings):
        if spec.name not in raw:
            continue
        parse = _PARSERS[str(spec.type)]
        try:
            value = parse(raw[spec.name])
            check = _CHECKS.get(spec.name)
            if check:
                check(value)
        except ValueError as error:
            raise SettingsError(spec.name, str(error)) from None
        values[spec.name] = value

    values.setdefault("DINOMAIL_PASSWORD_SCHEME", Settings.DINOMAIL_PASSWORD_SCHEME)
    values.setdefault("ALLOW_WEAK_PASSWORD_SCHEMES", Settings.ALLOW_WEAK_PASSWORD_SCHEMES)
    _check_password_scheme(values)
    return Settings(**values)
