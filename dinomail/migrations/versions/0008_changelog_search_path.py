"""The change-log trigger function finds its table whatever the caller's search_path.

pg_dump and pg_restore run with an empty search_path, so a data-only restore into a migrated
database fired the trigger and failed on `relation "dinomail_changelog" does not exist`. The
function now carries the schema it was created in; pg_catalog stays first, as PostgreSQL
recommends for functions with a fixed search_path.

Revision ID: 0008_changelog_search_path
Revises: 0007_hardening
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_changelog_search_path"
down_revision: str | None = "0007_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    schema = op.get_bind().scalar(sa.text("SELECT current_schema()"))
    quoted = op.get_bind().scalar(sa.text("SELECT quote_ident(:name)"), {"name": schema})
    op.execute(f"ALTER FUNCTION dinomail_log_change() SET search_path = pg_catalog, {quoted}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION dinomail_log_change() RESET search_path")
