"""Adoption of a database of the original DinoMail (0.2 / 1.x, Django) by `dinomail migrate`.

`detect` tells what a database holds, `plan` reads an original database and decides everything
adoption does (and what stops it), `apply` carries a plan out. `dinomail migrate --plan`
prints `read_plan`; `dinomail migrate` runs `adopt`, which builds the same plan inside its
one transaction, carries it out, and upgrades the result to DinoMail's latest revision.
"""

from __future__ import annotations

from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from dinomail import migrate
from dinomail.adoption.apply import apply_plan
from dinomail.adoption.detect import CORE_TABLES, DatabaseState, inspect_database
from dinomail.adoption.plan import AdoptionPlan, Problem, build_plan

# The Django tables the plan reads to decide admins and keys.
ACCOUNT_TABLES = (
    "auth_user", "auth_user_user_permissions", "auth_user_groups", "auth_group_permissions",
    "auth_permission", "django_content_type", "tastypie_apikey",
)

__all__ = [
    "AdoptionPlan",
    "AdoptionRefused",
    "DatabaseState",
    "Problem",
    "adopt",
    "database_state",
    "read_plan",
]


class AdoptionRefused(Exception):
    """The database cannot be adopted as it is; nothing was changed."""

    def __init__(self, message: str, plan: AdoptionPlan | None = None) -> None:
        super().__init__(message)
        self.plan = plan


async def database_state(engine: AsyncEngine) -> DatabaseState:
    async with engine.connect() as conn:
        return await conn.run_sync(inspect_database)


async def read_plan(engine: AsyncEngine) -> AdoptionPlan:
    """The plan for an original database, reading only (the transaction is rolled back)."""
    async with engine.connect() as conn:
        return await conn.run_sync(build_plan)


def _adopt(conn: Connection) -> AdoptionPlan:
    if conn.dialect.name == "sqlite":
        # Python's sqlite3 would run the DDL outside any transaction: one explicit transaction,
        # taken for writing from the start, makes the whole adoption one commit.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    state = inspect_database(conn)
    if state.kind != "original":
        raise AdoptionRefused(state.reason or "this is not a database of the original DinoMail")
    if conn.dialect.name == "postgresql":
        # What the plan reads must stay what it read until the commit: the mail tables are
        # rebuilt, and the accounts and keys only read (the original may still answer logins).
        conn.exec_driver_sql(f"LOCK TABLE {', '.join(CORE_TABLES)} IN EXCLUSIVE MODE")
        accounts = [name for name in ACCOUNT_TABLES if name in state.tables]
        if accounts:
            conn.exec_driver_sql(f"LOCK TABLE {', '.join(accounts)} IN SHARE MODE")
    plan = build_plan(conn)
    if plan.problems:
        raise AdoptionRefused(
            f"the database cannot be adopted: {len(plan.problems)} row(s) DinoMail cannot "
            f"accept, first {plan.problems[0]}; nothing was changed", plan)
    apply_plan(conn, plan, migrate.config(conn))
    command.upgrade(migrate.config(conn), "head")
    return plan


async def adopt(engine: AsyncEngine) -> AdoptionPlan:
    """Adopt the original database behind `engine` and upgrade it to DinoMail's latest
    revision, in one transaction; raises `AdoptionRefused` (database unchanged) on a problem."""
    async with engine.begin() as conn:
        return await conn.run_sync(_adopt)
