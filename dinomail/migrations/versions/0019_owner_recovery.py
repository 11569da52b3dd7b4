"""Recovery codes of mailbox owners' authenticator apps (the self-service login, `/me/`).

`dinomail_mailboxrecoverycode`: single-use codes, hashed, as `dinomail_adminrecoverycode` for
admins; made when the owner's app is confirmed, removed with it. Not a mail table: no
change-log trigger.

Revision ID: 0019_owner_recovery
Revises: 0018_apppassword_changelog
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_owner_recovery"
down_revision: str | None = "0018_apppassword_changelog"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dinomail_mailboxrecoverycode"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{TABLE}"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["core_virtualuser.id"], ondelete="CASCADE",
            name=f"fk_{TABLE}_user_id_core_virtualuser",
        ),
    )
    op.create_index(f"ix_{TABLE}_user_id", TABLE, ["user_id"])


def downgrade() -> None:
    op.drop_table(TABLE)
