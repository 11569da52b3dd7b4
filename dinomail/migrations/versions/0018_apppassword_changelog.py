"""The app passwords are followed through the change log: the lookup daemon checks logins
against its snapshot, which now holds their hashes, and no longer reads them at each login.

The triggers are those of the mail tables (migration 0001), on `dinomail_apppassword`, but an
update is logged only when it changes what a login reads (id, mailbox, protocols, hash): the
lookup daemon writes the last use of app passwords in batches, and each batch would otherwise
add change-log entries, and refreshes, for nothing. `core_virtualdomain.require_app_passwords`
needs nothing new: its table is followed already.

Revision ID: 0018_apppassword_changelog
Revises: 0017_owner_extras
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_apppassword_changelog"
down_revision: str | None = "0017_owner_extras"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "dinomail_apppassword"
# The columns a login reads: an update of any other (`last_used`, `name`) is not logged.
FOLLOWED_COLUMNS = "id, user_id, protocols, password"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # `dinomail_log_change()` is the function of migration 0001 (search_path fixed by 0008).
        op.execute(
            f"CREATE TRIGGER dinomail_changelog AFTER INSERT OR UPDATE OF {FOLLOWED_COLUMNS} "
            f"OR DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION dinomail_log_change()"
        )
        op.execute(
            f"CREATE TRIGGER dinomail_changelog_truncate AFTER TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dinomail_log_change()"
        )
        return
    # SQLite has one writer at a time, so the AUTOINCREMENT order is already commit order.
    for event, op_code, ref in (("INSERT", "I", "NEW"), ("UPDATE", "U", "NEW"),
                                ("DELETE", "D", "OLD")):
        extra = ""
        when = event
        if event == "UPDATE":
            when = f"UPDATE OF {FOLLOWED_COLUMNS}"
            # A changed id is the old row gone and a new one present.
            extra = (
                "INSERT INTO dinomail_changelog (table_name, row_id, op) "
                f"SELECT '{TABLE}', OLD.id, 'D' WHERE OLD.id <> NEW.id; "
            )
        op.execute(
            f"CREATE TRIGGER dinomail_changelog_{TABLE}_{event.lower()} "
            f"AFTER {when} ON {TABLE} FOR EACH ROW BEGIN {extra}"
            "INSERT INTO dinomail_changelog (table_name, row_id, op) "
            f"VALUES ('{TABLE}', {ref}.id, '{op_code}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_truncate ON {TABLE}")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_{TABLE}_{event}")
