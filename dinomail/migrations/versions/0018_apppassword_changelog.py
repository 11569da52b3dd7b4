"""App passwords and vacation replies are followed through the change log: the lookup daemon
checks logins and serves the vacation Sieve scripts from its snapshot, which now holds the app
passwords' hashes and the vacation settings, and no longer reads them at each login or on a
timer.

The triggers are those of the mail tables (migration 0001):

- on `dinomail_apppassword`, but an update is logged only when it changes what a login reads
  (id, mailbox, protocols, hash): the lookup daemon writes the last use of app passwords in
  batches, and each batch would otherwise add change-log entries, and refreshes, for nothing;
- on `dinomail_vacation`, whose key is the mailbox's id (`user_id`, logged as the row id): on
  PostgreSQL a twin of `dinomail_log_change()` that reads that column, as the function cannot
  name a column only some of its tables have.

`core_virtualdomain.require_app_passwords` needs nothing new: its table is followed already.

Revision ID: 0018_apppassword_changelog
Revises: 0017_owner_extras
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_apppassword_changelog"
down_revision: str | None = "0017_owner_extras"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The lock of migration 0001's trigger function: every writer of the log takes the same one.
CHANGELOG_LOCK = 7_171_001
APP_PASSWORDS = "dinomail_apppassword"
VACATIONS = "dinomail_vacation"
# The columns a login reads: an update of any other (`last_used`, `name`) is not logged.
APP_PASSWORD_COLUMNS = "id, user_id, protocols, password"
# table → (its key column, the columns whose update is logged: None for all).
FOLLOWED = {
    APP_PASSWORDS: ("id", APP_PASSWORD_COLUMNS),
    VACATIONS: ("user_id", None),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_triggers()
    else:
        _create_sqlite_triggers()


def _create_postgresql_triggers() -> None:
    # The same body as dinomail_log_change() (0001), with user_id for id; the same
    # search_path as 0008 gave that one.
    op.execute(
        f"""
        CREATE FUNCTION dinomail_log_change_by_user() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({CHANGELOG_LOCK});
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, 0, 'T');
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, OLD.user_id, 'D');
            ELSE
                IF TG_OP = 'UPDATE' AND OLD.user_id <> NEW.user_id THEN
                    INSERT INTO dinomail_changelog (table_name, row_id, op)
                    VALUES (TG_TABLE_NAME, OLD.user_id, 'D');
                END IF;
                INSERT INTO dinomail_changelog (table_name, row_id, op)
                VALUES (TG_TABLE_NAME, NEW.user_id, left(TG_OP, 1));
            END IF;
            -- Delivered at commit; identical notifications of one transaction fold into one.
            PERFORM pg_notify('dinomail_changelog', '');
            RETURN NULL;
        END
        $$
        """
    )
    schema = op.get_bind().scalar(sa.text("SELECT current_schema()"))
    quoted = op.get_bind().scalar(sa.text("SELECT quote_ident(:name)"), {"name": schema})
    op.execute(
        f"ALTER FUNCTION dinomail_log_change_by_user() SET search_path = pg_catalog, {quoted}"
    )
    for table, (key, columns) in FOLLOWED.items():
        function = "dinomail_log_change" if key == "id" else "dinomail_log_change_by_user"
        update = f"UPDATE OF {columns}" if columns else "UPDATE"
        op.execute(
            f"CREATE TRIGGER dinomail_changelog AFTER INSERT OR {update} OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER dinomail_changelog_truncate AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )


def _create_sqlite_triggers() -> None:
    # SQLite has one writer at a time, so the AUTOINCREMENT order is already commit order.
    for table, (key, columns) in FOLLOWED.items():
        for event, op_code, ref in (("INSERT", "I", "NEW"), ("UPDATE", "U", "NEW"),
                                    ("DELETE", "D", "OLD")):
            extra = ""
            when = event
            if event == "UPDATE":
                when = f"UPDATE OF {columns}" if columns else event
                # A changed key is the old row gone and a new one present.
                extra = (
                    "INSERT INTO dinomail_changelog (table_name, row_id, op) "
                    f"SELECT '{table}', OLD.{key}, 'D' WHERE OLD.{key} <> NEW.{key}; "
                )
            op.execute(
                f"CREATE TRIGGER dinomail_changelog_{table}_{event.lower()} "
                f"AFTER {when} ON {table} FOR EACH ROW BEGIN {extra}"
                "INSERT INTO dinomail_changelog (table_name, row_id, op) "
                f"VALUES ('{table}', {ref}.{key}, '{op_code}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FOLLOWED:
            op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS dinomail_log_change_by_user()")
    else:
        for table in FOLLOWED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS dinomail_changelog_{table}_{event}")
