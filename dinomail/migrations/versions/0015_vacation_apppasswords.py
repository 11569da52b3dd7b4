"""Vacation replies and app passwords of mailboxes, and the domain rule that requires the latter.

`dinomail_vacation`: one row per mailbox with a vacation reply (subject, text, optional first
and last day, days between two replies to one sender); Dovecot's Sieve reads the script DinoMail
makes of it through the lookup daemon.

`dinomail_apppassword`: named passwords of a mailbox, each limited to some protocols (imap,
pop3, smtp, sieve, comma-separated), stored hashed, with their last use.

`core_virtualdomain.require_app_passwords`: the mailboxes of the domain log in to IMAP, POP3,
SMTP and ManageSieve with app passwords only. Off by default, also for existing domains.

Not mail tables: no change-log trigger (the lookup daemon reads them when Dovecot asks).

Revision ID: 0015_vacation_apppasswords
Revises: 0014_selfservice
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_vacation_apppasswords"
down_revision: str | None = "0014_selfservice"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def _mailbox_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["core_virtualuser.id"], ondelete="CASCADE",
        name=f"fk_{table}_user_id_core_virtualuser",
    )


def upgrade() -> None:
    op.add_column(
        "core_virtualdomain",
        sa.Column("require_app_passwords", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "dinomail_vacation",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("subject", sa.String(255), nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False, server_default=""),
        sa.Column("starts", sa.Date, nullable=True),
        sa.Column("ends", sa.Date, nullable=True),
        sa.Column("interval_days", sa.Integer, nullable=False, server_default="7"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("user_id", name="pk_dinomail_vacation"),
        _mailbox_fk("dinomail_vacation"),
    )
    op.create_table(
        "dinomail_apppassword",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("protocols", sa.String(64), nullable=False),
        sa.Column("password", sa.String(300), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_apppassword"),
        _mailbox_fk("dinomail_apppassword"),
        sa.UniqueConstraint("user_id", "name", name="uq_dinomail_apppassword_user_id_name"),
    )


def downgrade() -> None:
    op.drop_table("dinomail_apppassword")
    op.drop_table("dinomail_vacation")
    with op.batch_alter_table("core_virtualdomain") as batch:
        batch.drop_column("require_app_passwords")
