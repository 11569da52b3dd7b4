"""Mail client settings per domain, generated DKIM keys, and DNS check results.

None of these tables is a mail table: no change-log trigger, so a background DNS check does not
wake the lookup daemons. The original status columns of core_virtualdomain keep their meaning
and are written only when a status changes.

Revision ID: 0003_dns_autoconfig
Revises: 0002_api_indexes
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_dns_autoconfig"
down_revision: str | None = "0002_api_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    default = None if nullable else NOW
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _domain_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
        name=f"fk_{table}_domain_id_core_virtualdomain",
    )


def upgrade() -> None:
    op.create_table(
        "dinomail_clientconfig",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("imap_ssl_port", sa.Integer, nullable=False, server_default="993"),
        sa.Column("imap_starttls_port", sa.Integer, nullable=False, server_default="143"),
        sa.Column("pop3_ssl_port", sa.Integer, nullable=False, server_default="995"),
        sa.Column("pop3_starttls_port", sa.Integer, nullable=False, server_default="110"),
        sa.Column("smtp_ssl_port", sa.Integer, nullable=False, server_default="465"),
        sa.Column("smtp_starttls_port", sa.Integer, nullable=False, server_default="587"),
        sa.Column("mx_host", sa.String(253), nullable=False, server_default=""),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("domain_id", name="pk_dinomail_clientconfig"),
        _domain_key("dinomail_clientconfig"),
    )
    op.create_table(
        "dinomail_dkimkey",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("selector", sa.String(63), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("key_bits", sa.Integer, nullable=False),
        sa.Column("dkim_private_key", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("domain_id", name="pk_dinomail_dkimkey"),
        _domain_key("dinomail_dkimkey"),
    )
    op.create_table(
        "dinomail_dnscheck",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        _timestamp("checked_at"),
        sa.PrimaryKeyConstraint("domain_id", "name", name="pk_dinomail_dnscheck"),
        _domain_key("dinomail_dnscheck"),
    )
    op.create_table(
        "dinomail_dnscheckrun",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("inputs", sa.String(64), nullable=False, server_default=""),
        _timestamp("checked_at", nullable=True),
        sa.Column("incomplete", sa.Boolean, nullable=False, server_default=sa.false()),
        _timestamp("requested_at", nullable=True),
        sa.PrimaryKeyConstraint("domain_id", name="pk_dinomail_dnscheckrun"),
        _domain_key("dinomail_dnscheckrun"),
    )


def downgrade() -> None:
    for table in (
        "dinomail_dnscheckrun", "dinomail_dnscheck", "dinomail_dkimkey", "dinomail_clientconfig",
    ):
        op.drop_table(table)
