"""The audit log says which domain an entry is about and where the change came from; admins
may be read-only.

`domain_id` lets a domain admin read the entries about their own domains (and nobody else's);
it is a plain column, not a foreign key, because the entries about a domain outlive it.
`address` is the client address of the request that made the change. `read_only` makes an
admin who can read everything in their scope and change nothing.

Revision ID: 0013_admin_pages
Revises: 0012_twofactor
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_admin_pages"
down_revision: str | None = "0012_twofactor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_dinomail_auditlog_domain_id"


def upgrade() -> None:
    op.add_column("dinomail_auditlog", sa.Column("domain_id", sa.Integer, nullable=True))
    op.add_column("dinomail_auditlog", sa.Column("address", sa.String(64), nullable=True))
    op.create_index(INDEX, "dinomail_auditlog", ["domain_id", "id"])
    op.add_column("dinomail_admin", sa.Column("read_only", sa.Boolean, nullable=False,
                                              server_default=sa.false()))


def downgrade() -> None:
    op.drop_index(INDEX, table_name="dinomail_auditlog")
    with op.batch_alter_table("dinomail_auditlog") as batch:
        batch.drop_column("address")
        batch.drop_column("domain_id")
    with op.batch_alter_table("dinomail_admin") as batch:
        batch.drop_column("read_only")
