"""Outbound sending limits per domain and per mailbox, and the counters the Postfix policy
service keeps of what each sent.

None of these tables is a mail table: no change-log trigger. The lookup daemons reload the
limits every few seconds and write the counters every second; neither may wake the refresher.

Revision ID: 0004_policy
Revises: 0003_dns_autoconfig
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_policy"
down_revision: str | None = "0003_dns_autoconfig"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")
LIMITS = ("messages_per_hour", "messages_per_day", "recipients_per_hour", "recipients_per_day")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=NOW)


def upgrade() -> None:
    op.create_table(
        "dinomail_domainsendlimit",
        sa.Column("domain_id", sa.Integer, nullable=False),
        *(
            sa.Column(f"{who}_{limit}", sa.Integer, nullable=False, server_default="0")
            for who in ("mailbox", "domain")
            for limit in LIMITS
        ),
        sa.Column("reply", sa.String(200), nullable=False, server_default=""),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("domain_id", name="pk_dinomail_domainsendlimit"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_dinomail_domainsendlimit_domain_id_core_virtualdomain",
        ),
    )
    op.create_table(
        "dinomail_mailboxsendlimit",
        sa.Column("user_id", sa.Integer, nullable=False),
        *(sa.Column(limit, sa.Integer, nullable=True) for limit in LIMITS),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name="pk_dinomail_mailboxsendlimit"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["core_virtualuser.id"], ondelete="CASCADE",
            name="fk_dinomail_mailboxsendlimit_user_id_core_virtualuser",
        ),
    )
    op.create_table(
        "dinomail_sendcount",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(254), nullable=False),
        sa.Column("bucket_seconds", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("bucket_start", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("messages", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("recipients", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("writer", sa.String(32), nullable=False, server_default=""),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint(
            "kind", "name", "bucket_seconds", "bucket_start", name="pk_dinomail_sendcount"
        ),
    )
    op.create_index("ix_dinomail_sendcount_updated_at", "dinomail_sendcount", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_dinomail_sendcount_updated_at", table_name="dinomail_sendcount")
    for table in ("dinomail_sendcount", "dinomail_mailboxsendlimit", "dinomail_domainsendlimit"):
        op.drop_table(table)
