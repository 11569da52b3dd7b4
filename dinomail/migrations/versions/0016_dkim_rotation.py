"""The previous DKIM selectors of a domain, kept published after a rotation until retired.

`dinomail_dkimretiring`: one row per selector a rotation replaced, with its public record (the
key's algorithm and p= value) and when it was replaced. The record stays in the domain's list
of records to publish, and in its DNS check, until an admin retires the selector.

No private key is kept here: the signer signs with the domain's current key only, so a
replaced key's private half signs nothing more; its record only has to stay published so that
mail already signed with it still verifies while it is on its way.

Not a mail table: no change-log trigger.

Revision ID: 0016_dkim_rotation
Revises: 0015_vacation_apppasswords
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_dkim_rotation"
down_revision: str | None = "0015_vacation_apppasswords"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "dinomail_dkimretiring",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("selector", sa.String(63), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("domain_id", "selector", name="pk_dinomail_dkimretiring"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name="fk_dinomail_dkimretiring_domain_id_core_virtualdomain",
        ),
    )


def downgrade() -> None:
    op.drop_table("dinomail_dkimretiring")
