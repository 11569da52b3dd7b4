"""API keys: the generation of an admin's login key.

The original returned the same key on every `GET /api/apikey/` with Basic credentials. DinoMail
derives that key from SECRET_KEY, the admin and a generation number, stores only its hash, and
moves to the next generation when the key is revoked; this column holds the number.

Revision ID: 0006_apikey_generation
Revises: 0005_authblocks
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_apikey_generation"
down_revision: str | None = "0005_authblocks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_dinomail_apikey_admin_id_generation"


def upgrade() -> None:
    op.add_column("dinomail_apikey", sa.Column("generation", sa.Integer, nullable=True))
    op.create_index(INDEX, "dinomail_apikey", ["admin_id", "generation"], unique=True)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="dinomail_apikey")
    with op.batch_alter_table("dinomail_apikey") as batch:
        batch.drop_column("generation")
