"""The blocks of the Dovecot auth policy, shared through the database so that admins can list
them and unblock a client or a login.

Not a mail table: no change-log trigger. The lookup daemons write their current blocks every
few seconds; those writes must not wake the refresher.

Revision ID: 0005_authblocks
Revises: 0004_policy
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_authblocks"
down_revision: str | None = "0004_policy"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "dinomail_authblock",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False, server_default=""),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("writer", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_authblock"),
        sa.UniqueConstraint("kind", "key", "writer", name="uq_dinomail_authblock_kind_key_writer"),
    )
    op.create_index(
        "ix_dinomail_authblock_blocked_until", "dinomail_authblock", ["blocked_until"]
    )


def downgrade() -> None:
    op.drop_index("ix_dinomail_authblock_blocked_until", table_name="dinomail_authblock")
    op.drop_table("dinomail_authblock")
