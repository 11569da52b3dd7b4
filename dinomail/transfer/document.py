"""The export document: its format name, version and the fields of each kind of object.

The exporter writes these fields and the importer reads them, from one list, so the two cannot
drift apart; the JSON Schema (`export-schema.json`) says the same for other programs, and a test
checks exports against it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

FORMAT = "dinomail-export"
# Version 2 added the fields marked "version 2" below, version 3 those marked "version 3"; an
# earlier document (without them) still imports, as if each were absent. Each new version is
# needed because an earlier DinoMail refuses a field it does not know.
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
SCHEMA_FILE = "export-schema.json"

# The order of the top-level lists: each refers only to objects of the lists before it.
SECTIONS = ("domains", "alias_domains", "mailboxes", "aliases", "admins")

# core_virtualdomain columns carried as they are (the DNS check results are not: the checker
# finds them again).
DOMAIN_FIELDS = (
    "name", "active", "display_name", "short_display_name", "imap_address", "pop_address",
    "smtp_address", "dkim_key_name", "dkim_key", "max_mailboxes", "max_aliases",
    "max_quota_per_mailbox", "total_quota", "default_quota", "catchall_senders",
)
# dinomail_dkimkey, as `dkim` of a domain; the private key moves with its domain.
DKIM_FIELDS = ("selector", "algorithm", "key_bits", "private_key", "public_key")
# dinomail_clientconfig, as `client_config` of a domain.
CLIENT_CONFIG_FIELDS = (
    "imap_ssl_port", "imap_starttls_port", "pop3_ssl_port", "pop3_starttls_port",
    "smtp_ssl_port", "smtp_starttls_port", "mx_host",
)
# dinomail_domainsendlimit, as `send_limits` of a domain.
DOMAIN_SEND_LIMIT_FIELDS = (
    "mailbox_messages_per_hour", "mailbox_messages_per_day", "mailbox_recipients_per_hour",
    "mailbox_recipients_per_day", "domain_messages_per_hour", "domain_messages_per_day",
    "domain_recipients_per_hour", "domain_recipients_per_day", "reply",
)
ALIAS_DOMAIN_FIELDS = ("name", "target", "active")
MAILBOX_FIELDS = ("email", "password", "quota", "active")
# dinomail_mailboxsendlimit, as `send_limits` of a mailbox; null: the domain's default.
MAILBOX_SEND_LIMIT_FIELDS = (
    "messages_per_hour", "messages_per_day", "recipients_per_hour", "recipients_per_day",
)
ALIAS_FIELDS = ("source", "destination")
ADMIN_FIELDS = ("username", "email", "password", "is_superadmin", "is_active")
# Written only when true, so that documents of admins without it stay as they were; absent
# means false.
ADMIN_READ_ONLY = "read_only"
API_KEY_FIELDS = ("name", "prefix", "key_hash", "read_only")

# Version 2. Each is written only when it holds something (a true flag, a row, a non-empty
# list), so a document of an installation that uses none of them stays as it was; absent means
# false, none or empty. Secrets are written as the database holds them: app passwords and
# recovery codes as hashes, the TOTP secret as it is (the pages need it to check codes).
DOMAIN_REQUIRE_APP_PASSWORDS = "require_app_passwords"
# dinomail_domainselfservice, as `self_service` of a domain; absent: no row (the defaults).
DOMAIN_SELF_SERVICE = "self_service"
SELF_SERVICE_FIELDS = ("self_service", "external_forwarding")
# dinomail_dkimretiring, as `dkim_retiring` of a domain: the selectors a rotation replaced, still
# published until an admin retires them (public records only; replaced_at UTC, ISO 8601).
DOMAIN_DKIM_RETIRING = "dkim_retiring"
DKIM_RETIRING_FIELDS = ("selector", "algorithm", "public_key", "replaced_at")
# dinomail_mtastspolicy, as `mta_sts` of a domain: the MTA-STS policy an admin set (`mx` a list
# of patterns, empty: the domain's MX host); absent: the domain publishes none. The TLS and
# DMARC reports received are not carried.
DOMAIN_MTA_STS = "mta_sts"
MTA_STS_FIELDS = ("mode", "mx", "max_age")
# dinomail_vacation, as `vacation` of a mailbox; days as YYYY-MM-DD.
MAILBOX_VACATION = "vacation"
VACATION_FIELDS = ("enabled", "subject", "body", "starts", "ends", "interval_days")
# dinomail_apppassword, as `app_passwords` of a mailbox: `password` is the {SCHEME} hash and
# `protocols` a list; times are UTC, ISO 8601.
MAILBOX_APP_PASSWORDS = "app_passwords"
APP_PASSWORD_FIELDS = ("name", "protocols", "password", "created", "last_used")
# dinomail_admin.language; absent: the browser's.
ADMIN_LANGUAGE = "language"
# dinomail_admintotp, as `totp` of an admin.
ADMIN_TOTP = "totp"
TOTP_FIELDS = ("secret", "created_at", "confirmed_at", "last_step")
# dinomail_adminpasskey, as `passkeys` of an admin (WebAuthn challenges last minutes: not
# carried).
ADMIN_PASSKEYS = "passkeys"
PASSKEY_FIELDS = ("name", "credential_id", "public_key", "sign_count", "created_at",
                  "last_used_at")
# dinomail_adminrecoverycode, as `recovery_codes` of an admin.
ADMIN_RECOVERY_CODES = "recovery_codes"
RECOVERY_CODE_FIELDS = ("code_hash", "used_at")
# The fields above, by section: a version 1 document cannot have them.
VERSION_2_FIELDS: dict[str, tuple[str, ...]] = {
    "domains": (DOMAIN_REQUIRE_APP_PASSWORDS, DOMAIN_SELF_SERVICE, DOMAIN_DKIM_RETIRING),
    "mailboxes": (MAILBOX_VACATION, MAILBOX_APP_PASSWORDS),
    "admins": (ADMIN_LANGUAGE, ADMIN_TOTP, ADMIN_PASSKEYS, ADMIN_RECOVERY_CODES),
}

# Version 3, written and read as the version 2 fields are: `mta_sts` of a domain (above), and
# dinomail_mailboxtotp, as `totp` of a mailbox: the owner's authenticator app for the
# self-service pages, with the same fields as an admin's (the secret as it is, and the last
# step accepted, so that a code used before the export is not accepted after the import).
MAILBOX_TOTP = "totp"
# dinomail_mailboxrecoverycode, as `recovery_codes` of a mailbox: the recovery codes of the
# owner's app, as hashes, with the same fields as an admin's (RECOVERY_CODE_FIELDS).
MAILBOX_RECOVERY_CODES = "recovery_codes"
VERSION_3_FIELDS: dict[str, tuple[str, ...]] = {
    "domains": (DOMAIN_MTA_STS,),
    "mailboxes": (MAILBOX_TOTP, MAILBOX_RECOVERY_CODES),
}
# The fields each version added: a document of an earlier version cannot have them.
FIELDS_SINCE: dict[int, dict[str, tuple[str, ...]]] = {2: VERSION_2_FIELDS, 3: VERSION_3_FIELDS}


@cache
def schema_text() -> str:
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    return json.loads(schema_text())
