"""The tables, as SQLAlchemy Core metadata: what the store queries and the migrations create.

The original product's tables (`core_*`) keep their names and columns, so the SQL queries of the
original documentation keep working for admins who point Postfix's own `pgsql:` maps at them.
New tables are prefixed `dinomail_`. Migrations (`dinomail/migrations/`) are written by hand
from this file; a test checks that the migrated database matches it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for long logs.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _now() -> sa.sql.elements.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else _now(),
    )


# --- the original tables -------------------------------------------------------------------------

virtualdomain = sa.Table(
    "core_virtualdomain",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # 253 is the longest domain name in IDNA form (the original allowed only 50).
    sa.Column("name", sa.String(253), nullable=False, unique=True),
    sa.Column("dkim_key_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("dkim_key", sa.Text, nullable=False, server_default=""),
    sa.Column("dkim_status", sa.Integer, nullable=False, server_default="0"),
    _timestamp("dkim_last_update"),
    sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("short_display_name", sa.String(50), nullable=False, server_default=""),
    sa.Column("imap_address", sa.String(255), nullable=False, server_default=""),
    sa.Column("pop_address", sa.String(255), nullable=False, server_default=""),
    sa.Column("smtp_address", sa.String(255), nullable=False, server_default=""),
    sa.Column("dmarc_status", sa.Integer, nullable=False, server_default="0"),
    _timestamp("dmarc_last_update"),
    sa.Column("spf_status", sa.Integer, nullable=False, server_default="0"),
    _timestamp("spf_last_update"),
    # New: an inactive domain receives and sends nothing, but keeps its data.
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    # New: limits; 0 means unlimited, as Dovecot reads a quota of 0.
    sa.Column("max_mailboxes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_aliases", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_quota_per_mailbox", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total_quota", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("default_quota", sa.BigInteger, nullable=False, server_default="0"),
    _timestamp("created_at"),
    # New (0007): the catch-all's destinations may send as the domain's unused addresses.
    sa.Column("catchall_senders", sa.Boolean, nullable=False, server_default=sa.false()),
    # New (0015): the domain's mailboxes log in to IMAP, POP3, SMTP and ManageSieve with app
    # passwords only; the main password still opens the self-service pages.
    sa.Column("require_app_passwords", sa.Boolean, nullable=False, server_default=sa.false()),
)

virtualuser = sa.Table(
    "core_virtualuser",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password", sa.String(300), nullable=False),
    # Bytes; NULL and 0 both mean unlimited (the original allowed NULL).
    sa.Column("quota", sa.BigInteger, nullable=True, server_default="0"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _timestamp("created_at"),
)

virtualalias = sa.Table(
    "core_virtualalias",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("source", sa.String(254), nullable=False),
    sa.Column("destination", sa.String(254), nullable=False),
    _timestamp("created_at"),
    # Several rows per source are several destinations; the same pair twice means nothing more.
    # The index also serves Postfix's `WHERE source='%s'`.
    sa.UniqueConstraint("source", "destination"),
    sa.Index(None, "destination"),
)

# --- what DinoMail adds --------------------------------------------------------------------------

aliasdomain = sa.Table(
    "dinomail_aliasdomain",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(253), nullable=False, unique=True),
    sa.Column(
        "target_domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _timestamp("created_at"),
)

quotausage = sa.Table(
    "dinomail_quotausage",
    metadata,
    # Kept apart from core_virtualuser: Dovecot updates it at every delivery, and those writes
    # must not wake the lookup daemons that follow the mail tables.
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("messages", sa.BigInteger, nullable=False, server_default="0"),
    _timestamp("updated_at"),
)

admin = sa.Table(
    "dinomail_admin",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(150), nullable=False, unique=True),
    sa.Column("email", sa.String(254), nullable=False, server_default=""),
    sa.Column("password", sa.String(300), nullable=False),  # Argon2id
    sa.Column("is_superadmin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    _timestamp("created_at"),
    _timestamp("last_login", nullable=True),
    # New (0007): sessions opened in an older generation are over (logout, new password, ...).
    sa.Column("session_generation", sa.Integer, nullable=False, server_default="0"),
    # New (0012): the language the admin chose on their account page; null: the browser's.
    sa.Column("language", sa.String(8), nullable=True),
    # New (0013): reads everything in the admin's scope, changes nothing.
    sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
)

admin_domain = sa.Table(
    "dinomail_admin_domain",
    metadata,
    sa.Column(
        "admin_id",
        sa.Integer,
        sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)

apikey = sa.Table(
    "dinomail_apikey",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "admin_id",
        sa.Integer,
        sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(100), nullable=False, server_default=""),
    # The first characters of the key, shown in lists so an admin can tell keys apart.
    sa.Column("prefix", sa.String(16), nullable=False),
    # SHA-256 of the whole key: keys are long random strings, so a fast hash is enough and
    # lets every API request be checked without an Argon2 cost.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
    _timestamp("created_at"),
    _timestamp("last_used_at", nullable=True),
    _timestamp("revoked_at", nullable=True),
    # The admin's login key (the one `GET /api/apikey/` with Basic credentials returns) is
    # derived from SECRET_KEY and this number, so it can be shown again without being stored;
    # the next generation replaces it. Null for keys made otherwise.
    sa.Column("generation", sa.Integer, nullable=True),
    sa.Index(None, "admin_id", "generation", unique=True),
)

# --- second factors of admins (0012) -------------------------------------------------------------

admintotp = sa.Table(
    "dinomail_admintotp",
    metadata,
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Base32, as authenticator apps take it. The pages need it in clear to check codes.
    sa.Column("secret", sa.String(64), nullable=False),
    _timestamp("created_at"),
    # Null while enrolment waits for the first code.
    _timestamp("confirmed_at", nullable=True),
    # The last time step a code was accepted for: a code is never accepted twice.
    sa.Column("last_step", sa.BigInteger, nullable=True),
)

adminpasskey = sa.Table(
    "dinomail_adminpasskey",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(100), nullable=False),
    # base64url of the credential id (at most 1023 bytes) and of the COSE public key.
    sa.Column("credential_id", sa.String(1400), nullable=False, unique=True),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
    _timestamp("created_at"),
    _timestamp("last_used_at", nullable=True),
    sa.Index(None, "admin_id", "name", unique=True),
)

adminrecoverycode = sa.Table(
    "dinomail_adminrecoverycode",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    # SHA-256 of the code: codes are long random strings, shown once.
    sa.Column("code_hash", sa.String(64), nullable=False),
    _timestamp("used_at", nullable=True),
)

webauthnchallenge = sa.Table(
    "dinomail_webauthnchallenge",
    metadata,
    # A challenge given to a browser for one registration or login, taken (deleted) when it
    # is answered, so it serves once.
    sa.Column("challenge", sa.String(128), primary_key=True),
    sa.Column(
        "admin_id", sa.Integer, sa.ForeignKey("dinomail_admin.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    sa.Column("purpose", sa.String(16), nullable=False),
    _timestamp("created_at"),
)

auditlog = sa.Table(
    "dinomail_auditlog",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _timestamp("at"),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("object_type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(64), nullable=True),
    sa.Column("object_repr", sa.String(300), nullable=False, server_default=""),
    sa.Column("old_values", sa.Text, nullable=True),  # JSON, secrets removed
    sa.Column("new_values", sa.Text, nullable=True),
    # New (0013): the domain the entry is about (no foreign key: entries outlive their domain),
    # and the client address of the request that made the change.
    sa.Column("domain_id", sa.Integer, nullable=True),
    sa.Column("address", sa.String(64), nullable=True),
    sa.Index(None, "at"),
    sa.Index("ix_dinomail_auditlog_domain_id", "domain_id", "id"),
)

changelog = sa.Table(
    "dinomail_changelog",
    metadata,
    # Appended by database triggers on the mail tables (see the migrations), never by code.
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("op", sa.String(1), nullable=False),  # I, U, D; T = table truncated
    _timestamp("changed_at"),
    # AUTOINCREMENT on SQLite: a sequence number is never reused after a prune.
    sqlite_autoincrement=True,
)

state = sa.Table(
    "dinomail_state",
    metadata,
    # Small named values the daemons share through the database (e.g. the change log horizon).
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# --- outbound sending limits (Postfix policy service; migration 0004_policy) ---------------------
# Not mail tables: no change-log trigger. The lookup daemons reload the limits every few seconds
# (POLICY_REFRESH_INTERVAL); a counter write must not wake them.

domainsendlimit = sa.Table(
    "dinomail_domainsendlimit",
    metadata,
    # A domain without a row sends without limits. 0 means unlimited, as everywhere.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # What each mailbox of the domain may send, unless it has its own row below.
    sa.Column("mailbox_messages_per_hour", sa.Integer, nullable=False, server_default="0"),
    sa.Column("mailbox_messages_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("mailbox_recipients_per_hour", sa.Integer, nullable=False, server_default="0"),
    sa.Column("mailbox_recipients_per_day", sa.Integer, nullable=False, server_default="0"),
    # What all mailboxes of the domain may send together.
    sa.Column("domain_messages_per_hour", sa.Integer, nullable=False, server_default="0"),
    sa.Column("domain_messages_per_day", sa.Integer, nullable=False, server_default="0"),
    sa.Column("domain_recipients_per_hour", sa.Integer, nullable=False, server_default="0"),
    sa.Column("domain_recipients_per_day", sa.Integer, nullable=False, server_default="0"),
    # The Postfix action over a limit, as `DEFER_IF_PERMIT 4.7.1 text`; empty: the
    # POLICY_RATE_LIMIT_REPLY setting.
    sa.Column("reply", sa.String(200), nullable=False, server_default=""),
    _timestamp("updated_at"),
)

mailboxsendlimit = sa.Table(
    "dinomail_mailboxsendlimit",
    metadata,
    # One mailbox's own limits; NULL takes its domain's mailbox default, 0 means unlimited.
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("messages_per_hour", sa.Integer, nullable=True),
    sa.Column("messages_per_day", sa.Integer, nullable=True),
    sa.Column("recipients_per_hour", sa.Integer, nullable=True),
    sa.Column("recipients_per_day", sa.Integer, nullable=True),
    _timestamp("updated_at"),
)

sendcount = sa.Table(
    "dinomail_sendcount",
    metadata,
    # Messages and recipients sent by a mailbox (`kind` mailbox, `name` its address) or a whole
    # domain (`kind` domain, `name` the domain) in one time bucket: [bucket_start, bucket_start +
    # bucket_seconds), Unix time. Every lookup daemon adds to the same rows (INSERT ... ON
    # CONFLICT DO UPDATE SET messages = messages + ...), so their counts add up.
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("name", sa.String(254), primary_key=True),
    sa.Column("bucket_seconds", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket_start", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("messages", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("recipients", sa.BigInteger, nullable=False, server_default="0"),
    # Who wrote the row last (a lookup daemon's random id) and when, by the database's clock:
    # each daemon reads the rows other daemons changed since its last read.
    sa.Column("writer", sa.String(32), nullable=False, server_default=""),
    _timestamp("updated_at"),
    sa.Index(None, "updated_at"),
)

# The tables whose every row change the lookup daemon must see.
MAIL_TABLES = (
    virtualdomain.name,
    virtualuser.name,
    virtualalias.name,
    aliasdomain.name,
)


# The admin API's substring search (`?q=`): GIN trigram indexes answer `LIKE '%text%'`, which a
# B-tree cannot. PostgreSQL only (pg_trgm; migration 0002_api_indexes); SQLite scans.
def _trigram_index(table: sa.Table, column: str) -> sa.Index:
    return sa.Index(
        f"ix_{table.name}_{column}_trgm",
        table.c[column],
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
    ).ddl_if(dialect="postgresql")


for _table, _column in (
    (virtualdomain, "name"),
    (virtualuser, "email"),
    (virtualalias, "source"),
    (virtualalias, "destination"),
    (aliasdomain, "name"),
):
    _trigram_index(_table, _column)


# --- mail client settings, DKIM keys and DNS checks (migration 0003_dns_autoconfig) ---------------

clientconfig = sa.Table(
    "dinomail_clientconfig",
    metadata,
    # What autoconfig, Autodiscover and .mobileconfig offer a domain's mail clients, and the host
    # its MX should name. A domain without a row gets the column defaults. A port of 0 means
    # the mode is not offered; implicit TLS is offered first, STARTTLS as the alternative.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("imap_ssl_port", sa.Integer, nullable=False, server_default="993"),
    sa.Column("imap_starttls_port", sa.Integer, nullable=False, server_default="143"),
    sa.Column("pop3_ssl_port", sa.Integer, nullable=False, server_default="995"),
    sa.Column("pop3_starttls_port", sa.Integer, nullable=False, server_default="110"),
    sa.Column("smtp_ssl_port", sa.Integer, nullable=False, server_default="465"),
    sa.Column("smtp_starttls_port", sa.Integer, nullable=False, server_default="587"),
    sa.Column("mx_host", sa.String(253), nullable=False, server_default=""),
    _timestamp("updated_at"),
)

dkimkey = sa.Table(
    "dinomail_dkimkey",
    metadata,
    # The key pair DinoMail generated for a domain. The public half is also the domain's
    # `dkim_key` (with `dkim_key_name` = selector), as in the original; the private half lives
    # only here, is never listed by the API and never written to the audit log.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("selector", sa.String(63), nullable=False),
    sa.Column("algorithm", sa.String(16), nullable=False),
    sa.Column("key_bits", sa.Integer, nullable=False),
    sa.Column("dkim_private_key", sa.Text, nullable=False),  # PKCS#8 PEM
    sa.Column("public_key", sa.Text, nullable=False),  # the p= value
    _timestamp("created_at"),
)

dkimretiring = sa.Table(
    "dinomail_dkimretiring",
    metadata,
    # The selectors a rotation replaced, still to be published until an admin retires them, so
    # that mail signed with the old key verifies while it is on its way. Only the public record:
    # the signer signs with the current key (`dkimkey`) alone, so an old private key has no use.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("selector", sa.String(63), primary_key=True),
    sa.Column("algorithm", sa.String(16), nullable=False),  # rsa, ed25519
    sa.Column("public_key", sa.Text, nullable=False),  # the p= value
    _timestamp("replaced_at"),
)

dnscheck = sa.Table(
    "dinomail_dnscheck",
    metadata,
    # The last result of each DNS check of each domain. Kept apart from core_virtualdomain,
    # whose change-log triggers would wake every lookup daemon at each background check.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("name", sa.String(32), primary_key=True),  # dkim, spf, dmarc, mx, ...
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON: queries, records, expected, problems
    _timestamp("checked_at"),
)

dnscheckrun = sa.Table(
    "dinomail_dnscheckrun",
    metadata,
    # When a domain was last checked and with which inputs, so the background checker knows
    # what is due: never checked, asked for, inputs changed, or older than the interval.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("inputs", sa.String(64), nullable=False, server_default=""),
    _timestamp("checked_at", nullable=True),
    # Some check could not be made (DNS timeout): retried sooner than the interval.
    sa.Column("incomplete", sa.Boolean, nullable=False, server_default=sa.false()),
    _timestamp("requested_at", nullable=True),
)


# --- failed-login blocks of the Dovecot auth policy (migration 0005_authblocks) -------------------

authblock = sa.Table(
    "dinomail_authblock",
    metadata,
    # A client address (`kind` client, `key` its IPv4 address or IPv6 /64) or a login (`kind`
    # login) that a lookup daemon refuses now for too many failed logins. The failures are
    # counted in each daemon's memory; each writes its current blocks here every
    # AUTH_POLICY_SYNC_INTERVAL, so admins can see them. An admin's unblock sets `released_at`;
    # the daemons read it, forget that key's failures and delete their row. No change-log
    # trigger: not a mail table.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("key", sa.String(320), nullable=False),
    # A login's domain (the part after @), for domain admins' scope; empty for clients.
    sa.Column("domain", sa.String(253), nullable=False, server_default=""),
    sa.Column("failures", sa.Integer, nullable=False),
    _timestamp("blocked_at"),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("writer", sa.String(32), nullable=False),
    _timestamp("updated_at"),
    _timestamp("released_at", nullable=True),
    sa.Column("released_by", sa.String(200), nullable=True),
    sa.UniqueConstraint("kind", "key", "writer"),
    sa.Index(None, "blocked_until"),
)


# --- MTA-STS policies, DMARC and TLS-RPT reports (migration 0011_reports) -------------------------

mtastspolicy = sa.Table(
    "dinomail_mtastspolicy",
    metadata,
    # The MTA-STS policy (RFC 8461) DinoMail serves at https://mta-sts.<domain>/.well-known/
    # mta-sts.txt. A domain without a row serves nothing. `mx` holds one pattern a line; empty:
    # the domain's MX host. The policy id for the `_mta-sts` TXT record is a digest of the
    # served text (see `dinomail.mtasts`), so it changes whenever the text does.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("mode", sa.String(8), nullable=False, server_default="testing"),
    sa.Column("mx", sa.Text, nullable=False, server_default=""),
    sa.Column("max_age", sa.Integer, nullable=False, server_default="604800"),
    _timestamp("updated_at"),
)

dmarcreport = sa.Table(
    "dinomail_dmarcreport",
    metadata,
    # One DMARC aggregate report (RFC 7489 appendix C) about a domain of this installation.
    # Receivers send the same report again at times: (org_name, report_id) is unique.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The domain the report is about: the domain itself, or one of its alias domains.
    sa.Column("report_domain", sa.String(253), nullable=False, server_default=""),
    sa.Column("org_name", sa.String(255), nullable=False),
    sa.Column("report_id", sa.String(255), nullable=False),
    sa.Column("email", sa.String(320), nullable=False, server_default=""),
    sa.Column("date_begin", sa.DateTime(timezone=True), nullable=False),
    sa.Column("date_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("policy", sa.String(16), nullable=False, server_default=""),  # p= published
    _timestamp("received_at"),
    sa.UniqueConstraint("org_name", "report_id"),
    sa.Index(None, "domain_id", "date_begin"),
    sa.Index(None, "received_at"),
)

dmarcrecord = sa.Table(
    "dinomail_dmarcrecord",
    metadata,
    # One <record> of a DMARC report: `count` messages from `source_ip` with these results.
    # `dkim` and `spf` are the DMARC-aligned results (policy_evaluated); the raw
    # authentication results are kept as JSON.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "report_id",
        sa.Integer,
        sa.ForeignKey("dinomail_dmarcreport.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("source_ip", sa.String(45), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("disposition", sa.String(16), nullable=False, server_default="none"),
    sa.Column("dkim", sa.String(8), nullable=False, server_default="fail"),
    sa.Column("spf", sa.String(8), nullable=False, server_default="fail"),
    sa.Column("header_from", sa.String(253), nullable=False, server_default=""),
    sa.Column("auth_results", sa.Text, nullable=False, server_default="{}"),
    sa.Index(None, "report_id"),
)

tlsreport = sa.Table(
    "dinomail_tlsreport",
    metadata,
    # One SMTP TLS report (RFC 8460) about a domain of this installation.
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The domain the report is about: the domain itself, or one of its alias domains.
    sa.Column("report_domain", sa.String(253), nullable=False, server_default=""),
    sa.Column("org_name", sa.String(255), nullable=False),
    sa.Column("report_id", sa.String(255), nullable=False),
    sa.Column("contact", sa.String(320), nullable=False, server_default=""),
    sa.Column("date_begin", sa.DateTime(timezone=True), nullable=False),
    sa.Column("date_end", sa.DateTime(timezone=True), nullable=False),
    _timestamp("received_at"),
    sa.UniqueConstraint("org_name", "report_id"),
    sa.Index(None, "domain_id", "date_begin"),
    sa.Index(None, "received_at"),
)

tlspolicy = sa.Table(
    "dinomail_tlspolicy",
    metadata,
    # One `policies` entry of a TLS report: the sessions the sender made under one policy
    # (sts, tlsa, no-policy-found), and the failures it saw, as JSON (failure-details).
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "report_id",
        sa.Integer,
        sa.ForeignKey("dinomail_tlsreport.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("policy_type", sa.String(32), nullable=False),
    sa.Column("policy_domain", sa.String(253), nullable=False, server_default=""),
    sa.Column("success_count", sa.Integer, nullable=False),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("failures", sa.Text, nullable=False, server_default="[]"),
    sa.Index(None, "report_id"),
)

reportreject = sa.Table(
    "dinomail_reportreject",
    metadata,
    # A message sent to the report address that was not stored as a report (malformed, a
    # decompression bomb, a foreign domain, ...): why, and the raw message up to a cap.
    sa.Column("id", sa.Integer, primary_key=True),
    _timestamp("received_at"),
    sa.Column("sender", sa.String(320), nullable=False, server_default=""),
    sa.Column("recipient", sa.String(320), nullable=False, server_default=""),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Index(None, "received_at"),
)


# --- self-service for mailbox owners (migration 0014_selfservice) --------------------------------
# Not a mail table: no change-log trigger (the lookup daemons never read it; forwarding is
# stored as alias rows, which they do read).

domainselfservice = sa.Table(
    "dinomail_domainselfservice",
    metadata,
    # A domain without a row has the defaults: self-service on, external forwarding allowed.
    sa.Column(
        "domain_id",
        sa.Integer,
        sa.ForeignKey("core_virtualdomain.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Whether the domain's mailbox owners may log in to `/me/` (SELF_SERVICE turns it off
    # everywhere).
    sa.Column("self_service", sa.Boolean, nullable=False, server_default=sa.true()),
    # Whether forwarding may send the domain's mail to addresses outside the hosted domains.
    sa.Column("external_forwarding", sa.Boolean, nullable=False, server_default=sa.true()),
    _timestamp("updated_at"),
)


# --- vacation replies and app passwords (migration 0015_vacation_apppasswords) -------------------
# Both are followed through the change log (migration 0018_apppassword_changelog) into the
# lookup daemon's snapshot, which logins are checked against and Sieve scripts made from.

vacation = sa.Table(
    "dinomail_vacation",
    metadata,
    # A mailbox's vacation reply; no row: none. The Sieve script is made from it at delivery.
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("subject", sa.String(255), nullable=False, server_default=""),
    sa.Column("body", sa.Text, nullable=False, server_default=""),
    # The first and last day of the absence (the server's time zone), both included; NULL: open.
    sa.Column("starts", sa.Date, nullable=True),
    sa.Column("ends", sa.Date, nullable=True),
    # At most one reply per sender in this many days (Sieve vacation's :days).
    sa.Column("interval_days", sa.Integer, nullable=False, server_default="7"),
    _timestamp("updated_at"),
)

apppassword = sa.Table(
    "dinomail_apppassword",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(100), nullable=False),
    # The protocols it opens, comma-separated, sorted: imap, pop3, sieve, smtp.
    sa.Column("protocols", sa.String(64), nullable=False),
    sa.Column("password", sa.String(300), nullable=False),  # {SCHEME}hash, as Dovecot reads
    _timestamp("created"),
    _timestamp("last_used", nullable=True),
    # Also the index of a mailbox's app passwords (its first column).
    sa.UniqueConstraint("user_id", "name"),
)

# --- mailbox owners' own login (0017) -------------------------------------------------------------

mailboxtotp = sa.Table(
    "dinomail_mailboxtotp",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # As `admintotp`: the same columns, so `dinomail.store.totpsecrets` serves both.
    sa.Column("secret", sa.String(64), nullable=False),
    _timestamp("created_at"),
    _timestamp("confirmed_at", nullable=True),
    sa.Column("last_step", sa.BigInteger, nullable=True),
)

mailboxrecoverycode = sa.Table(
    "dinomail_mailboxrecoverycode",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        nullable=False, index=True,
    ),
    # As `adminrecoverycode` (0019): the same columns, so `dinomail.store.recoverycodes` serves
    # both. SHA-256 of the code, shown once; used_at set when it opened a login.
    sa.Column("code_hash", sa.String(64), nullable=False),
    _timestamp("used_at", nullable=True),
)

mailboxsession = sa.Table(
    "dinomail_mailboxsession",
    metadata,
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("core_virtualuser.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The generation an owner's `/me/` session must carry; logging out and a new password
    # increase it. No row: generation 0.
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
)
