"""Self-service for mailbox owners: each domain's switches (self-service, external forwarding).

Not a mail table: no change-log trigger (forwarding is stored as alias rows, which have one).

Revision ID: 0014_selfservice
Revises: 0013_admin_pages
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_selfservice"
down_revision: str | None = "0013_admin_pages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dinomail_domainselfservice"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("self_service", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("external_forwarding", sa.Boolean, nullable=False,
                  server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.PrimaryKeyConstraint("domain_id", name=f"pk_{TABLE}"),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["core_virtualdomain.id"], ondelete="CASCADE",
            name=f"fk_{TABLE}_domain_id_core_virtualdomain",
        ),
    )


def downgrade() -> None:
    op.drop_table(TABLE)
