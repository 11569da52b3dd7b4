"""Two-factor login of admins: TOTP, passkeys (WebAuthn), recovery codes; the admin's language.

`dinomail_admintotp`: one authenticator app per admin, with the last time step accepted (a code
is never accepted twice). `dinomail_adminpasskey`: an admin's named passkeys and security keys.
`dinomail_adminrecoverycode`: single-use codes, hashed. `dinomail_webauthnchallenge`: challenges
waiting for the browser's answer, deleted when answered. `dinomail_admin.language`: the
language chosen on the account page. Not mail tables: no change-log trigger.

Revision ID: 0012_twofactor
Revises: 0011_reports
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_twofactor"
down_revision: str | None = "0011_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def _admin_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["admin_id"], ["dinomail_admin.id"], ondelete="CASCADE",
        name=f"fk_{table}_admin_id_dinomail_admin",
    )


def _time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=None if nullable else NOW)


def upgrade() -> None:
    op.add_column("dinomail_admin", sa.Column("language", sa.String(8), nullable=True))
    op.create_table(
        "dinomail_admintotp",
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        _time("created_at"),
        _time("confirmed_at", nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("admin_id", name="pk_dinomail_admintotp"),
        _admin_fk("dinomail_admintotp"),
    )
    op.create_table(
        "dinomail_adminpasskey",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("credential_id", sa.String(1400), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
        _time("created_at"),
        _time("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_adminpasskey"),
        _admin_fk("dinomail_adminpasskey"),
        sa.UniqueConstraint("credential_id", name="uq_dinomail_adminpasskey_credential_id"),
    )
    op.create_index("ix_dinomail_adminpasskey_admin_id_name", "dinomail_adminpasskey",
                    ["admin_id", "name"], unique=True)
    op.create_table(
        "dinomail_adminrecoverycode",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        _time("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_adminrecoverycode"),
        _admin_fk("dinomail_adminrecoverycode"),
    )
    op.create_index("ix_dinomail_adminrecoverycode_admin_id", "dinomail_adminrecoverycode",
                    ["admin_id"])
    op.create_table(
        "dinomail_webauthnchallenge",
        sa.Column("challenge", sa.String(128), nullable=False),
        sa.Column("admin_id", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("challenge", name="pk_dinomail_webauthnchallenge"),
        _admin_fk("dinomail_webauthnchallenge"),
    )
    op.create_index("ix_dinomail_webauthnchallenge_admin_id", "dinomail_webauthnchallenge",
                    ["admin_id"])


def downgrade() -> None:
    for table in ("dinomail_webauthnchallenge", "dinomail_adminrecoverycode",
                  "dinomail_adminpasskey", "dinomail_admintotp"):
        op.drop_table(table)
    with op.batch_alter_table("dinomail_admin") as batch:
        batch.drop_column("language")
