"""Admin sessions that end server-side, and the catch-all sender rule made a domain's choice.

`dinomail_admin.session_generation`: every login session of the pages carries the generation it
was opened in; logging out, a new password, deactivation or a superadmin's "end sessions" add
one, which ends every session opened before, whatever cookie a browser (or a thief) still holds.

`core_virtualdomain.catchall_senders`: whether the destinations of a domain's catch-all may send
as any address of the domain that is neither a mailbox nor an alias. Off by default, also for
existing domains: before, this was always on, and it let one catch-all owner send as
`ceo@domain`.

Revision ID: 0007_hardening
Revises: 0006_apikey_generation
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_hardening"
down_revision: str | None = "0006_apikey_generation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dinomail_admin",
        sa.Column("session_generation", sa.Integer, nullable=False, server_default="0"),
    )
    op.add_column(
        "core_virtualdomain",
        sa.Column("catchall_senders", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("core_virtualdomain") as batch:
        batch.drop_column("catchall_senders")
    with op.batch_alter_table("dinomail_admin") as batch:
        batch.drop_column("session_generation")
