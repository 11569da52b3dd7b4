"""What Dovecot 2.3 (Debian 12) needs to ask DinoMail, computed from DinoMail's own settings.

`dinomail dovecot-config` writes it as a conf.d file next to Debian's own, plus the dict
settings file its passdb and userdb read; `dinomail doctor` compares a running Dovecot with it.
conf/dovecot/2.3/ is the same thing as a complete configuration for the default settings, with
the reasons; a test keeps the two equal.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dinomail.listen import parse_listen
from dinomail.settings import DEFAULT_UNIX_SOCKET_GROUP, Settings

DEFAULT_OUTPUT_DIR = "/etc/dovecot/conf.d"
DICT_FILE_NAME = "dinomail-dict-auth.conf.ext"
DEFAULT_POSTFIX_QUEUE = "/var/spool/postfix"
# Below 30 s on purpose: Dovecot 2.3's dict client asserts (and its auth worker panics) when an
# idle connection reaches its own 30 s input timeout.
DICT_IDLE_MSECS = 10000


def dict_socket(settings: Settings) -> str:
    address = parse_listen(settings.dict_listen)
    if address.path is None:
        raise ValueError(f"DICT_LISTEN = {settings.dict_listen}: Dovecot's dict client needs a "
                         "unix socket (unix:/path)")
    return address.path


def socket_group(settings: Settings) -> str:
    return settings.UNIX_SOCKET_GROUP or DEFAULT_UNIX_SOCKET_GROUP


def postfix_queue(postfix_config_dir: str | None) -> str:
    """Postfix's queue directory, where Dovecot puts the LMTP and SASL sockets Postfix uses."""
    command = ["postconf", "-h", "queue_directory"]
    if postfix_config_dir:
        command[1:1] = ["-c", postfix_config_dir]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return DEFAULT_POSTFIX_QUEUE
    value = result.stdout.strip()
    return value if result.returncode == 0 and value.startswith("/") else DEFAULT_POSTFIX_QUEUE


def dict_auth_file(settings: Settings) -> str:
    """The settings file of the dict passdb and userdb (conf/dovecot/2.3/dinomail-dict-auth...)."""
    return f"""# DinoMail: where Dovecot's dict passdb and userdb ask. Written by
# `dinomail dovecot-config` from DinoMail's settings (DICT_LISTEN); see conf/dovecot/2.3/.
uri = proxy:idle_msecs={DICT_IDLE_MSECS}:{dict_socket(settings)}:auth
default_pass_scheme = SHA512-CRYPT
iterate_prefix = userdb/
key passdb {{
  key = passdb/%u
  format = json
}}
key userdb {{
  key = userdb/%u
  format = json
}}
passdb_objects = passdb
userdb_objects = userdb
"""


def conf_d_file(settings: Settings, *, dict_file: str, queue_directory: str) -> str:
    """The conf.d file: DinoMail's part of the configuration, on top of Debian's."""
    private = f"{queue_directory.rstrip('/')}/private"
    socket = dict_socket(settings)
    tls = ""
    if settings.TLS_CERT_FILE and settings.TLS_KEY_FILE:
        tls = f"""
# TLS (DinoMail's TLS_CERT_FILE, TLS_KEY_FILE): passwords cross the network only inside it.
ssl = required
ssl_cert = <{settings.TLS_CERT_FILE}
ssl_key = <{settings.TLS_KEY_FILE}
ssl_min_protocol = TLSv1.2
"""
    return f"""# DinoMail: Dovecot asks DinoMail's lookup daemon who may log in and where each
# mailbox lives, and reports each mailbox's usage back. Written by `dinomail dovecot-config` from
# DinoMail's settings: run it again after changing them. Reasons: conf/dovecot/2.3/dovecot.conf.
{tls}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_username_format = %Lu

# passdb and userdb over the dict socket (DICT_LISTEN). The userdb gives each mailbox its uid,
# gid and home: MAIL_UID = {settings.MAIL_UID}, MAIL_GID = {settings.MAIL_GID},
# MAIL_HOME = {settings.MAIL_HOME}.
passdb {{
  driver = dict
  args = {dict_file}
}}
userdb {{
  driver = dict
  args = {dict_file}
}}

first_valid_uid = {settings.MAIL_UID}
last_valid_uid = {settings.MAIL_UID}
first_valid_gid = {settings.MAIL_GID}
last_valid_gid = {settings.MAIL_GID}
mail_location = maildir:~/Maildir
# quota_clone runs in the mail processes and writes to the dict socket through its group
# (UNIX_SOCKET_GROUP).
mail_access_groups = {socket_group(settings)}
recipient_delimiter = {settings.RECIPIENT_DELIMITER}

mail_plugins = $mail_plugins quota quota_clone
plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_clone_dict = proxy:{socket}:quota
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}

# Postfix delivers here (virtual_transport = {'lmtp:unix:private/dovecot-lmtp'}) and
# authenticates submission here (smtpd_sasl_path = private/auth).
service lmtp {{
  unix_listener {private}/dovecot-lmtp {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
service auth {{
  unix_listener {private}/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
service auth-worker {{
  user = root
}}

# Vacation replies and the users' own Sieve filters (Debian's dovecot-sieve and
# dovecot-managesieved): the vacation script DinoMail makes comes from the dict socket, before
# the user's active ManageSieve script.
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_before = dict:proxy:{socket}:sieve;name=vacation
}}
"""


def default_dict_file(output: str | None) -> str:
    folder = Path(output).parent if output else Path(DEFAULT_OUTPUT_DIR)
    return str(folder / DICT_FILE_NAME)
