"""Mailbox owners' own login to `/me/`: an optional authenticator app, and sessions ended
server-side.

`dinomail_mailboxtotp`: one authenticator app per mailbox (as `dinomail_admintotp` for admins),
with the last time step accepted (a code is never accepted twice). It guards the self-service
pages only; mail clients use the mailbox's password or its app passwords.
`dinomail_mailboxsession`: the generation an owner's session must carry, increased by logging
out and by a new password. Not mail tables: no change-log trigger.

Revision ID: 0017_owner_extras
Revises: 0016_dkim_rotation
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_owner_extras"
down_revision: str | None = "0016_dkim_rotation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def _mailbox_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["core_virtualuser.id"], ondelete="CASCADE",
        name=f"fk_{table}_user_id_core_virtualuser",
    )


def upgrade() -> None:
    op.create_table(
        "dinomail_mailboxtotp",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_dinomail_mailboxtotp"),
        _mailbox_fk("dinomail_mailboxtotp"),
    )
    op.create_table(
        "dinomail_mailboxsession",
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("user_id", name="pk_dinomail_mailboxsession"),
        _mailbox_fk("dinomail_mailboxsession"),
    )


def downgrade() -> None:
    op.drop_table("dinomail_mailboxsession")
    op.drop_table("dinomail_mailboxtotp")
