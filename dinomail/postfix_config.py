"""What Postfix needs to ask DinoMail, computed from DinoMail's own settings.

`dinomail postfix-config` prints it as `postconf` commands (or runs them with `--apply`);
`dinomail doctor` compares a running Postfix with it. conf/postfix/ is the same thing written
out for DinoMail's default settings, with the reasons; a test keeps the two equal.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from dinomail.listen import ListenAddress, parse_listen
from dinomail.settings import Settings

POSTCONF = "postconf"
# Dovecot's sockets in Postfix's queue directory (dovecot-config puts them there).
LMTP_TRANSPORT = "lmtp:unix:private/dovecot-lmtp"
SASL_PATH = "private/auth"
SUBMISSION = "submission/inet"
SUBMISSION_ENTRY = "submission inet n - y - - smtpd"


def client_endpoint(value: str) -> str:
    """A listen setting as Postfix names it as a client: `inet:HOST:PORT` or `unix:/path`.

    A daemon listening on every address is reached on the loopback one.
    """
    address: ListenAddress = parse_listen(value)
    if address.path is not None:
        return f"unix:{address.path}"
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host or "",
                                                                     address.host or "")
    return f"inet:{ListenAddress(host=host, port=address.port)}"


def socketmap(settings: Settings, name: str) -> str:
    return f"socketmap:{client_endpoint(settings.SOCKETMAP_LISTEN)}:{name}"


def policy_service(settings: Settings) -> str:
    return f"check_policy_service {client_endpoint(settings.POLICY_LISTEN)}"


def recipient_restrictions(settings: Settings) -> str:
    """Port 25's: a full mailbox refused through the recipient_access map (one lookup a
    recipient); sending limits are the submission service's policy checks."""
    access = f"check_recipient_access {socketmap(settings, 'recipient_access')}"
    return f"{access}, permit_sasl_authenticated, reject_unauth_destination"


def earlier_recipient_restrictions(settings: Settings) -> dict[str, str]:
    """What DinoMail shipped before the recipient_access map: the policy service asked for
    every recipient and at every end of data. It still works (the same quota check, and
    inbound mail is never limited), at a policy request's cost for every inbound recipient."""
    policy = policy_service(settings)
    return {
        "smtpd_recipient_restrictions":
            f"{policy}, permit_sasl_authenticated, reject_unauth_destination",
        "smtpd_end_of_data_restrictions": policy,
    }


def main_cf(settings: Settings) -> dict[str, str]:
    """The main.cf parameters, in the order conf/postfix/main.cf explains them."""
    params = {
        "virtual_mailbox_domains": socketmap(settings, "domains"),
        "virtual_mailbox_maps": socketmap(settings, "mailboxes"),
        "virtual_alias_maps": socketmap(settings, "aliases"),
        # Empty on purpose: its default would send bare domains to the aliases map.
        "virtual_alias_domains": "",
        "virtual_transport": LMTP_TRANSPORT,
        "smtpd_sender_login_maps": socketmap(settings, "senders"),
        "recipient_delimiter": settings.RECIPIENT_DELIMITER,
        "smtpd_reject_unlisted_recipient": "yes",
        "smtpd_recipient_restrictions": recipient_restrictions(settings),
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": SASL_PATH,
    }
    if settings.TLS_CERT_FILE and settings.TLS_KEY_FILE:
        params["smtpd_tls_chain_files"] = f"{settings.TLS_KEY_FILE}, {settings.TLS_CERT_FILE}"
        params["smtpd_tls_security_level"] = "may"
    return params


def submission_options(settings: Settings) -> list[tuple[str, str]]:
    """The `-o` options of the submission service (port 587), as conf/postfix/master.cf."""
    return [
        ("syslog_name", "postfix/submission"),
        ("smtpd_tls_security_level", "encrypt"),
        ("smtpd_tls_auth_only", "yes"),
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_client_restrictions", "permit_sasl_authenticated,reject"),
        ("smtpd_sender_restrictions", "reject_sender_login_mismatch"),
        ("smtpd_relay_restrictions", "permit_sasl_authenticated,reject"),
        ("smtpd_recipient_restrictions",
         f"{policy_service(settings)}, permit_sasl_authenticated, reject"),
        ("smtpd_end_of_data_restrictions", policy_service(settings)),
        ("milter_macro_daemon_name", "ORIGINATING"),
    ]


def submission_entry(settings: Settings) -> str:
    options = []
    for name, value in submission_options(settings):
        options.append(f"-o {{ {name} = {value} }}" if " " in value else f"-o {name}={value}")
    return " ".join([SUBMISSION_ENTRY, *options])


@dataclass(frozen=True)
class PostconfCommand:
    args: tuple[str, ...]

    def line(self) -> str:
        return shlex.join([POSTCONF, *self.args])


def postconf_commands(settings: Settings) -> list[PostconfCommand]:
    commands = [PostconfCommand(("-e", f"{name} = {value}".rstrip()))
                for name, value in main_cf(settings).items()]
    commands.append(PostconfCommand(("-M", f"{SUBMISSION}={submission_entry(settings)}")))
    return commands


# The main.cf parameter an earlier DinoMail set to the policy check (port 25 included).
EARLIER_END_OF_DATA = "smtpd_end_of_data_restrictions"


def earlier_lines_note(settings: Settings) -> str:
    return (f"# A main.cf set up by an earlier DinoMail also has `{EARLIER_END_OF_DATA} = "
            f"{policy_service(settings)}` (the submission service asks it now): remove it with "
            f"`postconf -X {EARLIER_END_OF_DATA}` (--apply does).")


def apply(settings: Settings, config_dir: str) -> list[str]:
    """Run the postconf commands on `config_dir`; return the error lines (empty: all done).

    main.cf's end-of-data check that an earlier DinoMail set (the policy service for every
    message, port 25's too) is removed; any other value there is the admin's and stays."""
    errors = []
    earlier = earlier_recipient_restrictions(settings)[EARLIER_END_OF_DATA]
    try:
        current = subprocess.run(
            [POSTCONF, "-c", config_dir, "-n", "-h", EARLIER_END_OF_DATA],
            capture_output=True, text=True, timeout=30,
        )
    except FileNotFoundError:
        return ["postconf is not installed: apt install postfix"]
    commands = postconf_commands(settings)
    if current.returncode == 0 and " ".join(current.stdout.split()) == earlier:
        commands.append(PostconfCommand(("-X", EARLIER_END_OF_DATA)))
    for command in commands:
        result = subprocess.run(
            [POSTCONF, "-c", config_dir, *command.args],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["failed"])[-1]
            errors.append(f"{command.line()}: {detail}")
    return errors
