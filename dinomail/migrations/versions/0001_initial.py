"""The original tables, what DinoMail adds beside them, and the change log triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAIL_TABLES = (
    "core_virtualdomain", "core_virtualuser", "core_virtualalias", "dinomail_aliasdomain",
)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOW = sa.text("CURRENT_TIMESTAMP")

# Any constant works; it names the lock that orders writers of the change log (see below).
CHANGELOG_LOCK = 7_171_001


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    default = None if nullable else NOW
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)



def upgrade() -> None:
    op.create_table(
        "core_virtualdomain",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(253), nullable=False),
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
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("max_mailboxes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_aliases", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_quota_per_mailbox", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total_quota", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("default_quota", sa.BigInteger, nullable=False, server_default="0"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_core_virtualdomain"),
        sa.UniqueConstraint("name", name="uq_core_virtualdomain_name"),
    )
    op.create_table(
        "core_virtualuser",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password", sa.String(300), nullable=False),
        sa.Column("quota", sa.BigInteger, nullable=True, server_default="0"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_core_virtualuser"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_core_virtualuser_domain_id_core_virtualdomain",
        ),
        sa.UniqueConstraint("email", name="uq_core_virtualuser_email"),
    )
    op.create_index("ix_core_virtualuser_domain_id", "core_virtualuser", ["domain_id"])
    op.create_table(
        "core_virtualalias",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("source", sa.String(254), nullable=False),
        sa.Column("destination", sa.String(254), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_core_virtualalias"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_core_virtualalias_domain_id_core_virtualdomain",
        ),
        sa.UniqueConstraint(
            "source", "destination", name="uq_core_virtualalias_source_destination"
        ),
    )
    op.create_index("ix_core_virtualalias_domain_id", "core_virtualalias", ["domain_id"])
    op.create_index("ix_core_virtualalias_destination", "core_virtualalias", ["destination"])

    op.create_table(
        "dinomail_aliasdomain",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("target_domain_id", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_aliasdomain"),
        sa.ForeignKeyConstraint(
            ["target_domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_dinomail_aliasdomain_target_domain_id_core_virtualdomain",
        ),
        sa.UniqueConstraint("name", name="uq_dinomail_aliasdomain_name"),
    )
    op.create_index(
        "ix_dinomail_aliasdomain_target_domain_id", "dinomail_aliasdomain", ["target_domain_id"]
    )
    op.create_table(
        "dinomail_quotausage",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("messages", sa.BigInteger, nullable=False, server_default="0"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name="pk_dinomail_quotausage"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["core_virtualuser.id"], ondelete="CASCADE",
            name="fk_dinomail_quotausage_user_id_core_virtualuser",
        ),
    )
    op.create_table(
        "dinomail_admin",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("email", sa.String(254), nullable=False, server_default=""),
        sa.Column("password", sa.String(300), nullable=False),
        sa.Column("is_superadmin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        _timestamp("created_at"),
        _timestamp("last_login", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_admin"),
        sa.UniqueConstraint("username", name="uq_dinomail_admin_username"),
    )
    op.create_table(
        "dinomail_admin_domain",
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("admin_id", "domain_id", name="pk_dinomail_admin_domain"),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["dinomail_admin.id"], ondelete="CASCADE",
            name="fk_dinomail_admin_domain_admin_id_dinomail_admin",
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_dinomail_admin_domain_domain_id_core_virtualdomain",
        ),
    )
    op.create_index(
        "ix_dinomail_admin_domain_domain_id", "dinomail_admin_domain", ["domain_id"]
    )
    op.create_table(
        "dinomail_apikey",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False, server_default=""),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
        _timestamp("created_at"),
        _timestamp("last_used_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_apikey"),
        sa.ForeignKeyConstraint(
            ["admin_id"], ["dinomail_admin.id"], ondelete="CASCADE",
            name="fk_dinomail_apikey_admin_id_dinomail_admin",
        ),
        sa.UniqueConstraint("key_hash", name="uq_dinomail_apikey_key_hash"),
    )
    op.create_index("ix_dinomail_apikey_admin_id", "dinomail_apikey", ["admin_id"])
    op.create_table(
        "dinomail_auditlog",
        sa.Column("id", BigId, primary_key=True),
        _timestamp("at"),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("object_repr", sa.String(300), nullable=False, server_default=""),
        sa.Column("old_values", sa.Text, nullable=True),
        sa.Column("new_values", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_auditlog"),
    )
    op.create_index("ix_dinomail_auditlog_at", "dinomail_auditlog", ["at"])
    op.create_table(
        "dinomail_changelog",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("row_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(1), nullable=False),
        _timestamp("changed_at"),
        sa.PrimaryKeyConstraint("seq", name="pk_dinomail_changelog"),
        # AUTOINCREMENT on SQLite: a sequence number is never reused after a prune.
        sqlite_autoincrement=True,
    )
    op.create_table(
        "dinomail_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_dinomail_state"),
    )

    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_triggers()
    else:
        _create_sqlite_triggers()


def _create_postgresql_triggers() -> None:
    # Writers of the change log take one transaction-scoped lock first, so sequence numbers are
    # handed out in commit order: a reader that has seen seq N has seen every change below N,
    # and the refresher can follow the log with a plain `seq > last` without missing a
    # transaction that committed late. Admin writes are rare; serialising them costs nothing.
    op.execute(
        f"""
        CREATE FUNCTION dinomail_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({CHANGELOG_LOCK});
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, 0, 'T');
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, OLD.id, 'D');
            ELSE
                IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
                    INSERT INTO dinomail_changelog (table_name, row_id, op)
                    VALUES (TG_TABLE_NAME, OLD.id, 'D');
                END IF;
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, NEW.id, left(TG_OP, 1));
            END IF;
            -- Delivered at commit; identical notifications of one transaction fold into one.
            PERFORM pg_notify('dinomail_changelog', '');
            RETURN NULL;
        END
        $$
        """
    )
    for table in MAIL_TABLES:
        op.execute(
            f"CREATE TRIGGER dinomail_changelog AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION dinomail_log_change()"
        )
        op.execute(
            f"CREATE TRIGGER dinomail_changelog_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dinomail_log_change()"
        )


def _create_sqlite_triggers() -> None:
    # SQLite has one writer at a time, so the AUTOINCREMENT order is already commit order.
    for table in MAIL_TABLES:
        for event, op_code, ref in (("INSERT", "I", "NEW"), ("UPDATE", "U", "NEW"),
                                    ("DELETE", "D", "OLD")):
            extra = ""
            if event == "UPDATE":
                # A changed id is the old row gone and a new one present.
                extra = (
                    "INSERT INTO dinomail_changelog (table_name, row_id, op) "
                    f"SELECT '{table}', OLD.id, 'D' WHERE OLD.id <> NEW.id; "
                )
            op.execute(
                f"CREATE TRIGGER dinomail_changelog_{table}_{event.lower()} "
                f"AFTER {event} ON {table} FOR EACH ROW BEGIN {extra}"
                "INSERT INTO dinomail_changelog (table_name, row_id, op) "
                f"VALUES ('{table}', {ref}.id, '{op_code}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in MAIL_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS dinomail_log_change()")
    else:
        for table in MAIL_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_{table}_{event}")
    for table in (
        "dinomail_state", "dinomail_changelog", "dinomail_auditlog", "dinomail_apikey",
        "dinomail_admin_domain", "dinomail_admin", "dinomail_quotausage",
        "dinomail_aliasdomain", "core_virtualalias", "core_virtualuser", "core_virtualdomain",
    ):
        op.drop_table(table)
