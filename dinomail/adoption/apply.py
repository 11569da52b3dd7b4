"""Carry out an adoption plan in the caller's transaction.

The mail tables are rebuilt, not altered: the original's tables are set aside, DinoMail's
revision 0001 creates its schema exactly as on a new installation (the mail tables with their
constraints, indexes and change-log triggers, and DinoMail's own tables), the rows are copied
in with their ids, and the set-aside tables are dropped. SQLite cannot add most constraints to
an existing table, and rebuilding on both databases gives one path and one result, checked
against `dinomail.schema` by the tests. On PostgreSQL the tables keep their owner and the grants
other roles had (a read-only role of Postfix's `pgsql:` maps keeps reading them), and id
sequences continue where they were.

Django's tables (auth_*, django_*, tastypie_*) are only read.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from dinomail.adoption.detect import CORE_TABLES
from dinomail.adoption.plan import KEY_NAME, ORIGINAL_COLUMNS, AdoptionPlan
from dinomail.store.apikeys import PREFIX_LENGTH, hash_key

# The revision whose mail tables the original's rows are copied into; what follows it runs as
# on any DinoMail database.
ADOPTED_REVISION = "0001"
ACTOR = "dinomail migrate"

# DinoMail's tables as revision 0001 created them (later revisions may add columns: these
# statements name only what 0001 had).
_admin = sa.table(
    "dinomail_admin",
    sa.column("id", sa.Integer), sa.column("username", sa.String),
    sa.column("email", sa.String), sa.column("password", sa.String),
    sa.column("is_superadmin", sa.Boolean), sa.column("is_active", sa.Boolean),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("last_login", sa.DateTime(timezone=True)),
)
_admin_domain = sa.table(
    "dinomail_admin_domain", sa.column("admin_id", sa.Integer), sa.column("domain_id", sa.Integer)
)
_apikey = sa.table(
    "dinomail_apikey",
    sa.column("admin_id", sa.Integer), sa.column("name", sa.String),
    sa.column("prefix", sa.String), sa.column("key_hash", sa.String),
    sa.column("read_only", sa.Boolean), sa.column("created_at", sa.DateTime(timezone=True)),
)
_auditlog = sa.table(
    "dinomail_auditlog",
    sa.column("actor", sa.String), sa.column("action", sa.String),
    sa.column("object_type", sa.String), sa.column("object_id", sa.String),
    sa.column("object_repr", sa.String), sa.column("new_values", sa.Text),
)


def set_aside_name(table: str) -> str:
    return f"dinomail_adopt_old_{table.removeprefix('core_')}"


# --- the plan's changes to the rows --------------------------------------------------------------


def _change_rows(conn: Connection, plan: AdoptionPlan) -> None:
    removed = plan.removed_alias_ids
    if removed:
        conn.execute(
            sa.text("DELETE FROM core_virtualalias WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)),
            {"ids": removed},
        )
    for change in plan.normalisations:
        # Names come from the plan's fixed lists of tables and columns, never from data.
        conn.execute(
            sa.text(f"UPDATE {change.table} SET {change.column} = :new WHERE id = :id"),
            {"new": change.new, "id": change.row_id},
        )


# --- PostgreSQL: what a rebuilt table must keep ------------------------------------------------


def _sequence_of(conn: Connection, table: str) -> str | None:
    return conn.scalar(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table})


def _grants(conn: Connection, relation: str) -> list[tuple[str, str, bool]]:
    """(grantee, privilege, grantable) of every role but the owner ("PUBLIC" for all)."""
    rows = conn.execute(
        sa.text(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
            "ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type, a.is_grantable "
            "FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.oid = to_regclass(:relation) AND a.grantee <> c.relowner"
        ),
        {"relation": relation},
    )
    return [(row[0], row[1], bool(row[2])) for row in rows]


class _KeptAccess:
    """Owner, grants and sequence position of one original table, restored on its rebuild."""

    def __init__(self, conn: Connection, table: str) -> None:
        self.table = table
        self.owner = conn.scalar(
            sa.text("SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class "
                    "WHERE oid = to_regclass(:table)"), {"table": table})
        self.grants = _grants(conn, table)
        self.sequence = _sequence_of(conn, table)
        self.sequence_grants = _grants(conn, self.sequence) if self.sequence else []
        self.last_value = 0
        if self.sequence:
            row = conn.execute(
                sa.text(f"SELECT last_value, is_called FROM {self.sequence}")).one()
            self.last_value = int(row.last_value) if row.is_called else 0

    def set_aside(self, conn: Connection) -> None:
        if self.sequence:
            # Else the rebuilt table's own sequence could not take the usual name.
            conn.execute(sa.text(
                f"ALTER SEQUENCE {self.sequence} RENAME TO {set_aside_name(self.table)}_id_seq"))

    def restore(self, conn: Connection) -> None:
        table = self.table
        sequence = _sequence_of(conn, table)
        highest = conn.scalar(sa.text(f"SELECT max(id) FROM {table}")) or 0
        position = max(self.last_value, highest)
        if sequence and position:
            conn.execute(sa.text("SELECT setval(:sequence, :position, true)"),
                         {"sequence": sequence, "position": position})
        current = conn.scalar(sa.text("SELECT quote_ident(current_user)"))
        if self.owner and self.owner != current:
            conn.execute(sa.text(f"ALTER TABLE {table} OWNER TO {self.owner}"))
        for target, grants in ((f"TABLE {table}", self.grants),
                               (f"SEQUENCE {sequence}", self.sequence_grants)):
            for grantee, privilege, grantable in grants:
                option = " WITH GRANT OPTION" if grantable else ""
                conn.execute(sa.text(f"GRANT {privilege} ON {target} TO {grantee}{option}"))


# --- the rebuild ---------------------------------------------------------------------------------


def _rebuild_mail_tables(conn: Connection, upgrade: Config) -> None:
    postgresql = conn.dialect.name == "postgresql"
    kept = [_KeptAccess(conn, table) for table in CORE_TABLES] if postgresql else []
    for access in kept:
        access.set_aside(conn)
    for table in CORE_TABLES:
        conn.execute(sa.text(f"ALTER TABLE {table} RENAME TO {set_aside_name(table)}"))
    command.upgrade(upgrade, ADOPTED_REVISION)
    for table in CORE_TABLES:  # domains first: the others refer to them
        columns = ", ".join(ORIGINAL_COLUMNS[table])
        conn.execute(sa.text(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {set_aside_name(table)}"))
    for access in kept:
        access.restore(conn)
    for table in reversed(CORE_TABLES):
        conn.execute(sa.text(f"DROP TABLE {set_aside_name(table)}"))
    # The copies were logged by the triggers; a lookup daemon loads everything at its start.
    conn.execute(sa.text("DELETE FROM dinomail_changelog"))


def _add_admins(conn: Connection, plan: AdoptionPlan) -> None:
    for account in plan.admins:
        conn.execute(_admin.insert().values(
            id=account.id, username=account.username, email=account.email,
            password=account.password, is_superadmin=account.is_superadmin,
            is_active=account.is_active, last_login=account.last_login,
            **({"created_at": account.created_at} if account.created_at else {}),
        ))
        if account.domain_ids:
            conn.execute(_admin_domain.insert(), [
                {"admin_id": account.id, "domain_id": domain_id}
                for domain_id in account.domain_ids
            ])
    if conn.dialect.name == "postgresql" and plan.admins:
        # Ids were given: the sequence continues after them.
        conn.execute(sa.text(
            "SELECT setval(pg_get_serial_sequence('dinomail_admin', 'id'), "
            "(SELECT max(id) FROM dinomail_admin))"))
    for key in plan.keys:
        conn.execute(_apikey.insert().values(
            admin_id=key.admin_id, name=KEY_NAME, prefix=key.secret[:PREFIX_LENGTH],
            key_hash=hash_key(key.secret), read_only=False,
            **({"created_at": key.created_at} if key.created_at else {}),
        ))


def _record(conn: Connection, plan: AdoptionPlan) -> None:
    summary = {
        "rows": plan.row_counts,
        "collapsed_alias_ids": plan.removed_alias_ids,
        "normalised": len(plan.normalisations),
        "admins": [account.username for account in plan.admins],
        "api_keys": len(plan.keys),
    }
    conn.execute(_auditlog.insert().values(
        actor=ACTOR, action="adopt", object_type="database", object_id=None,
        object_repr="database of the original DinoMail",
        new_values=json.dumps(summary, sort_keys=True),
    ))


def apply_plan(conn: Connection, plan: AdoptionPlan, upgrade: Config) -> None:
    """Adopt: the plan must have no problems. Runs in the caller's transaction and leaves the
    database at revision 0001 (the caller upgrades it further)."""
    if plan.problems:
        raise ValueError("a plan with problems cannot be carried out")
    if conn.dialect.name == "postgresql":
        # The original's foreign keys are deferred; a pending check would stop the DROP TABLE.
        conn.execute(sa.text("SET CONSTRAINTS ALL IMMEDIATE"))
    _change_rows(conn, plan)
    _rebuild_mail_tables(conn, upgrade)
    _add_admins(conn, plan)
    _record(conn, plan)
