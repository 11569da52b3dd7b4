"""`dinomail migrate` adopts a database made by the original DinoMail (Django), on PostgreSQL and
SQLite, from the real dumps in tests/fixtures/original-db/: `--plan` changes nothing, adoption
keeps every row and id and leaves Django's tables byte for byte, the result matches
`dinomail.schema`, a second migrate does nothing, `check` tells an original database apart and
lists the mailboxes that cannot log in, and a row DinoMail cannot accept stops everything."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dinomail import adoption, migrate
from dinomail.adoption import apply
from dinomail.database import create_engine
from dinomail.schema import metadata
from dinomail.store import Store
from tests.support.cli import dinomail
from tests.support.original_db import (
    ALIASES,
    API_KEYS,
    MAILBOXES,
    UNVERIFIABLE,
    Original,
    _names,
    dump_sqlite,
    new_original,
)
from tests.support.original_queries import POSTFIX_QUERIES, _pgsql_map
from tests.support.postfix import have_postmap, postmap_config, postmap_query
from tests.support.schema_compare import _declared_for


@dataclass
class Adopted:
    original: Original
    before: str  # full dump before anything ran
    django_before: str
    plan_output: str
    after_plan: str
    migrate_output: str
    check_before: tuple[int, str]
    queries_before: dict[tuple[str, str], set]


def run_postfix_queries(url: str) -> dict[tuple[str, str], set]:
    """The original documentation's Postfix queries, for every key of the fixture README."""
    import asyncio

    keys = {
        "virtual-mailbox-domains": ["legacy.example", "second.example", "other.example"],
        "virtual-mailbox-maps": [*MAILBOXES, "nobody@legacy.example"],
        "virtual-alias-maps": [*ALIASES, "nobody@legacy.example"],
        "email2email": [*MAILBOXES, "nobody@legacy.example"],
    }

    async def run() -> dict[tuple[str, str], set]:
        engine = create_engine(url)
        found: dict[tuple[str, str], set] = {}
        try:
            async with engine.connect() as conn:
                for name, values in keys.items():
                    sql = POSTFIX_QUERIES[name].replace("'%s'", ":key")
                    for key in values:
                        rows = await conn.execute(sa.text(sql), {"key": key})
                        found[(name, key)] = {row[0] for row in rows}
        finally:
            await engine.dispose()
        return found

    return asyncio.run(run())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def adopted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Adopted]:
    original = new_original(request.param, request, tmp_path_factory.mktemp("adopt"))
    before = original.dump()
    django_before = original.dump(only_django=True)
    checked = original.run("check")
    queries = run_postfix_queries(original.url)
    planned = original.run("migrate", "--plan")
    assert planned.returncode == 0, planned.stderr
    after_plan = original.dump()
    migrated = original.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    yield Adopted(original, before, django_before, planned.stdout, after_plan, migrated.stdout,
                  (checked.returncode, checked.stderr), queries)


# --- the plan ------------------------------------------------------------------------------------


def test_plan_changes_nothing(adopted: Adopted) -> None:
    assert adopted.after_plan == adopted.before


def test_plan_says_what_adoption_does(adopted: Adopted) -> None:
    text = adopted.plan_output
    assert "This is a database of the original DinoMail (Django)" in text
    assert ("rows kept with their ids: core_virtualdomain 2, core_virtualuser 8, "
            "core_virtualalias 6 (1 duplicate alias rows collapsed)") in text
    assert ("collapse: core_virtualalias id 6 into id 5 "
            "(dup@second.example -> bob@second.example)") in text
    assert "core_virtualuser id 8 (bob@second.example) has a NULL quota" in text
    assert f"core_virtualuser id 7 ({UNVERIFIABLE}) has an {{SSHA}} hash without its salt" in text
    assert "admin: oldadmin (auth_user id 1): superadmin" in text
    assert ("admin: helper (auth_user id 2): admin of every domain at adoption "
            "(legacy.example, second.example), active") in text
    assert "API key: oldadmin" in text and "API key: helper" in text
    assert "Problems: none." in text
    # A key is never printed whole.
    for key in API_KEYS[adopted.original.kind].values():
        assert key[:8] in text and key not in text
    assert adopted.migrate_output.endswith(
        f"Database adopted and migrated to revision {migrate.head_revision()}.\n")


async def test_plan_on_a_dinomail_database_lists_pending_revisions(tmp_path: Path) -> None:
    path = tmp_path / "dinomail.sqlite3"
    url = f"sqlite:///{path}"
    env = {"DINOMAIL_DATABASE_URL": url}
    empty = dinomail("migrate", "--plan", env=env)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("Database empty; `dinomail migrate` would apply:\n  0001: ")
    assert not path.exists() or "core_virtualdomain" not in dump_sqlite(path)
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine, "0003_dns_autoconfig")
    finally:
        await engine.dispose()
    before = dump_sqlite(path)
    planned = dinomail("migrate", "--plan", env=env)
    pending = [revision for revision, _ in migrate.pending_revisions("0003_dns_autoconfig")]
    assert pending[0] == "0004_policy" and pending[-1] == migrate.head_revision()
    assert planned.stdout.splitlines()[0] == (
        "Database at revision 0003_dns_autoconfig; `dinomail migrate` would apply:")
    assert [line.split(":")[0].strip() for line in planned.stdout.splitlines()[1:-1]] == pending
    assert dump_sqlite(path) == before


# --- check ---------------------------------------------------------------------------------------


def test_check_on_the_original_says_to_migrate(adopted: Adopted) -> None:
    status, stderr = adopted.check_before
    assert status == 1
    assert "database of the original DinoMail (Django)" in stderr
    assert "dinomail migrate --plan" in stderr and "`dinomail migrate`" in stderr
    assert "no DinoMail tables" not in stderr


def test_check_after_adoption_lists_the_mailbox_that_cannot_log_in(adopted: Adopted) -> None:
    result = adopted.original.run("check")
    assert result.returncode == 0, result.stderr
    assert f"at revision {migrate.head_revision()}" in result.stdout
    assert "1 mailbox(es) cannot log in until their password is reset" in result.stdout
    assert f"  {UNVERIFIABLE} (id 7)" in result.stdout


# --- the adopted database ------------------------------------------------------------------------


async def _rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(sa.text(sql))]
    finally:
        await engine.dispose()


async def test_rows_keep_their_ids_and_values(adopted: Adopted) -> None:
    url = adopted.original.url
    assert await _rows(url, "SELECT id, name, display_name, short_display_name, dkim_key_name, "
                            "dkim_status, dmarc_status, spf_status, active "
                            "FROM core_virtualdomain ORDER BY id") == [
        (1, "legacy.example", "Legacy", "Leg", "mail", 4, 2, 1, True),
        (2, "second.example", "", "", "", 0, 0, 0, True),
    ]
    mailboxes = await _rows(url, "SELECT id, email, quota, domain_id, active "
                                 "FROM core_virtualuser ORDER BY id")
    assert [row[1] for row in mailboxes] == list(MAILBOXES)
    assert [row[0] for row in mailboxes] == list(range(1, 9))
    assert mailboxes[0][2] == 1_000_000_000 and mailboxes[7][2] is None
    aliases = await _rows(url, "SELECT id, source, destination, domain_id "
                               "FROM core_virtualalias ORDER BY id")
    assert aliases == [
        (1, "info@legacy.example", "ssha512@legacy.example", 1),
        (2, "info@legacy.example", "bob@second.example", 1),
        (3, "ext@legacy.example", "someone@gmail.com", 1),
        (4, "postmaster@second.example", "bob@second.example", 2),
        (5, "dup@second.example", "bob@second.example", 2),
    ]
    # Hashes are kept as they were.
    stored = dict(await _rows(url, "SELECT email, password FROM core_virtualuser"))
    for email, password in stored.items():
        assert password in adopted.before, email


async def test_new_rows_get_new_ids(adopted: Adopted) -> None:
    store = Store(adopted.original.url)
    try:
        from dinomail.store import EVERYTHING, aliases

        async with store.write() as conn:
            row = await aliases.create(conn, "test", EVERYTHING, {
                "source": "new@second.example", "destination": "bob@second.example"})
            # PostgreSQL's sequence continues after the original's 6; SQLite takes the
            # highest id + 1, as on any DinoMail database.
            assert row["id"] == (7 if adopted.original.kind == "postgresql" else 6)
            await aliases.delete(conn, "test", EVERYTHING, row["id"])
    finally:
        await store.close()


async def test_adopted_database_matches_the_schema_module(adopted: Adopted) -> None:
    engine = create_engine(adopted.original.url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={
                        "compare_type": True,
                        "include_object": _django_left_out(_declared_for(sync.dialect.name)),
                    }),
                    metadata,
                )
            )
    finally:
        await engine.dispose()
    assert differences == []


def _django_left_out(include):  # type: ignore[no-untyped-def]
    def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        table = obj if type_ == "table" else getattr(obj, "table", None)
        if table is not None and table.name.startswith(("auth_", "django_", "tastypie_")):
            return False
        return include(obj, name, type_, reflected, compare_to)

    return include_object


def test_django_tables_are_byte_identical(adopted: Adopted) -> None:
    after = adopted.original.dump(only_django=True)
    assert "auth_user" in after and "tastypie_apikey" in after
    assert after == adopted.django_before


def test_the_original_documented_queries_return_the_same_rows(adopted: Adopted) -> None:
    after = run_postfix_queries(adopted.original.url)
    assert after == adopted.queries_before
    assert after[("virtual-alias-maps", "info@legacy.example")] == ALIASES["info@legacy.example"]
    assert after[("virtual-mailbox-maps", "bob@second.example")] == {1}


@pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")
def test_postfix_pgsql_maps_answer_the_same_through_postmap(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Postfix's own pgsql client, with the original documentation's queries."""
    original = new_original("postgresql", request, tmp_path)
    server = original.server
    assert server is not None
    config = postmap_config(tmp_path / "postfix")
    keys = {
        "virtual-mailbox-domains": ["legacy.example", "second.example", "other.example"],
        "virtual-mailbox-maps": ["bob@second.example", UNVERIFIABLE, "info@legacy.example"],
        "virtual-alias-maps": [*ALIASES, "bob@second.example"],
        "email2email": ["bob@second.example", "info@legacy.example"],
    }

    def answers() -> dict[tuple[str, str], tuple[int, set[str]]]:
        found = {}
        for name, values in keys.items():
            table = _pgsql_map(tmp_path, server, original.url, name)
            for key in values:
                result = postmap_query(config, key, table)
                found[(name, key)] = (result.returncode, set(filter(None, result.stdout.strip(
                    ).split(","))))
        return found

    before = answers()
    assert original.run("migrate").returncode == 0
    after = answers()
    assert after == before
    assert after[("virtual-alias-maps", "info@legacy.example")] == (
        0, ALIASES["info@legacy.example"])
    assert after[("virtual-mailbox-maps", "info@legacy.example")] == (1, set())


def test_a_second_migrate_is_a_no_op(adopted: Adopted) -> None:
    before = adopted.original.dump()
    planned = adopted.original.run("migrate", "--plan")
    again = adopted.original.run("migrate")
    assert planned.returncode == 0 and "has nothing to do" in planned.stdout
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        f"Database already at revision {migrate.head_revision()}; nothing to do.\n")
    assert adopted.original.dump() == before


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_inactive_users_stay_inactive_and_users_without_rights_are_not_admins(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    original = new_original(kind, request, tmp_path, extra_sql=(
        "UPDATE auth_user SET is_active = false WHERE username = 'helper';"
        "INSERT INTO auth_user (id, password, last_login, is_superuser, username, first_name, "
        "last_name, email, is_staff, is_active, date_joined) VALUES (3, '!unusable', NULL, "
        "false, 'reader', '', '', '', false, true, '2026-12-05 23:37:05');"
        "INSERT INTO tastypie_apikey (id, key, created, user_id) "
        "VALUES (3, 'feedfacefeedfacefeedfacefeedfacefeedface', '2026-12-05 23:37:05', 3);"))
    planned = original.run("migrate", "--plan")
    assert planned.returncode == 0, planned.stderr
    assert ("admin: helper (auth_user id 2): admin of every domain at adoption "
            "(legacy.example, second.example), inactive (stays inactive)") in planned.stdout
    assert "not an admin: reader (auth_user id 3): not staff" in planned.stdout
    assert ("API key not kept: tastypie_apikey id 3: its user does not become an admin"
            in planned.stdout)
    assert original.run("migrate").returncode == 0
    import asyncio

    rows = asyncio.run(_rows(original.url, "SELECT username, is_active, is_superadmin "
                                           "FROM dinomail_admin ORDER BY id"))
    assert [(name, bool(active), bool(superadmin)) for name, active, superadmin in rows] == [
        ("oldadmin", True, True), ("helper", False, False)]
    keys = asyncio.run(_rows(original.url, "SELECT prefix FROM dinomail_apikey ORDER BY id"))
    assert [prefix for (prefix,) in keys] == [
        key[:8] for key in API_KEYS[kind].values()]


def test_postgresql_tables_keep_their_owner_and_grants(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A role of Postfix's `pgsql:` maps that may read the mail tables still may."""
    number = next(_names)
    reader, owner = f"mapreader_{number}", f"mailowner_{number}"
    tables = "core_virtualdomain, core_virtualuser, core_virtualalias"
    original = new_original("postgresql", request, tmp_path, extra_sql=(
        f"CREATE ROLE {reader} LOGIN; CREATE ROLE {owner};"
        f"GRANT SELECT ON {tables} TO {reader};"
        + "".join(f"ALTER TABLE {table} OWNER TO {owner};" for table in tables.split(", "))))
    assert original.run("migrate").returncode == 0
    server, database = original.server, original.database
    assert server is not None
    for table in tables.split(", "):
        assert server.psql(
            f"SELECT has_table_privilege('{reader}', '{table}', 'SELECT'), "
            f"has_table_privilege('{reader}', '{table}', 'INSERT'), "
            f"pg_get_userbyid(relowner) FROM pg_class WHERE relname = '{table}'", database
        ).strip() == f"t|f|{owner}"
    rows = server.psql(
        "SELECT destination FROM core_virtualalias WHERE source = 'info@legacy.example' "
        f"ORDER BY 1; SET ROLE {reader}; SELECT count(*) FROM core_virtualuser", database)
    assert rows.split() == ["bob@second.example", "ssha512@legacy.example", "SET", "8"]


async def test_the_original_app_can_still_write_the_adopted_tables(adopted: Adopted) -> None:
    """A rollback runs the original on the adopted database: its INSERTs name only its own
    columns (as Django writes them), and DinoMail's columns take their defaults."""
    engine = create_engine(adopted.original.url)
    try:
        async with engine.begin() as conn:
            domain_id = (await conn.execute(sa.text(
                "INSERT INTO core_virtualdomain (name, dkim_key_name, dkim_key, dkim_status, "
                "dkim_last_update, display_name, short_display_name, imap_address, "
                "pop_address, smtp_address, dmarc_last_update, dmarc_status, "
                "spf_last_update, spf_status) VALUES ('third.example', '', '', 0, "
                "CURRENT_TIMESTAMP, '', '', '', '', '', CURRENT_TIMESTAMP, 0, "
                "CURRENT_TIMESTAMP, 0) RETURNING id"))).scalar_one()
            await conn.execute(sa.text(
                "INSERT INTO core_virtualuser (email, password, quota, domain_id) "
                "VALUES ('new@third.example', '{PLAIN}x', 0, :domain)"), {"domain": domain_id})
            row = (await conn.execute(sa.text(
                "SELECT u.active, u.created_at, d.active, d.max_mailboxes "
                "FROM core_virtualuser u JOIN core_virtualdomain d ON d.id = u.domain_id "
                "WHERE u.email = 'new@third.example'"))).one()
            assert bool(row[0]) and row[1] is not None and bool(row[2]) and row[3] == 0
            await conn.rollback()
    finally:
        await engine.dispose()


def _readme_commands() -> list[str]:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("## Coming from DinoMail 0.2 / 1.x", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```sh")[1:]]
    return [line.strip().split("#")[0].strip() for block in blocks
            for line in block.splitlines() if line.strip().startswith("dinomail ")]


def test_the_readme_steps_adopt_a_database(tmp_path: Path, request: pytest.FixtureRequest
                                           ) -> None:
    commands = _readme_commands()
    assert commands == ["dinomail migrate --plan", "dinomail migrate", "dinomail check"]
    original = new_original("sqlite", request, tmp_path)
    for command in commands:
        result = original.run(*command.split()[1:])
        assert result.returncode == 0, (command, result.stderr)
    assert f"{UNVERIFIABLE} (id 7)" in result.stdout


# --- refusals ------------------------------------------------------------------------------------


REFUSED_ROWS = {
    # The original checked this only in its forms: a mailbox outside its domain.
    "outside its domain": (
        "INSERT INTO core_virtualuser (id, email, password, quota, domain_id) "
        "VALUES (9, 'alien@elsewhere.example', '{PLAIN}x', 0, 1);",
        "core_virtualuser id 9: email 'alien@elsewhere.example' does not belong to its "
        "domain legacy.example (domain 1)"),
    # Unique as exact strings in the original; one address for DinoMail.
    "same address in capitals": (
        "INSERT INTO core_virtualuser (id, email, password, quota, domain_id) "
        "VALUES (9, 'BOB@second.example', '{PLAIN}x', 0, 2);",
        "core_virtualuser id 9: email 'BOB@second.example' is the address of mailbox 8 once "
        "written in lowercase"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_ROWS))
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_row_dinomail_cannot_accept_stops_adoption_and_changes_nothing(
    kind: str, case: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    extra_sql, reason = REFUSED_ROWS[case]
    original = new_original(kind, request, tmp_path, extra_sql=extra_sql)
    before = original.dump()
    planned = original.run("migrate", "--plan")
    migrated = original.run("migrate")
    assert planned.returncode == 2
    assert f"  {reason}" in planned.stdout
    assert migrated.returncode == 2
    assert f"dinomail: {reason}" in migrated.stderr
    assert migrated.stderr.splitlines()[-1].startswith(
        "dinomail: error: the database cannot be adopted: 1 row(s)")
    assert "nothing was changed" in migrated.stderr and "Traceback" not in migrated.stderr
    assert original.dump() == before


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_addresses_in_capitals_are_normalised_and_their_duplicates_collapse(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    original = new_original(kind, request, tmp_path, extra_sql=(
        "UPDATE core_virtualdomain SET name = 'Second.Example' WHERE id = 2;"
        "UPDATE core_virtualuser SET email = 'Bob@Second.Example' WHERE id = 8;"
        "UPDATE core_virtualalias SET source = 'Dup@Second.Example' WHERE id = 6;"
        "UPDATE core_virtualalias SET destination = 'SomeOne@GMail.com' WHERE id = 3;"))
    planned = original.run("migrate", "--plan")
    assert planned.returncode == 0, planned.stderr
    for line in (
        "normalise: core_virtualdomain id 2 name 'Second.Example' -> 'second.example'",
        "normalise: core_virtualuser id 8 email 'Bob@Second.Example' -> 'bob@second.example'",
        "normalise: core_virtualalias id 3 destination 'SomeOne@GMail.com' -> "
        "'someone@gmail.com'",
        "collapse: core_virtualalias id 6 into id 5 (dup@second.example -> bob@second.example)",
    ):
        assert f"  {line}\n" in planned.stdout
    assert original.run("migrate").returncode == 0
    import asyncio

    assert asyncio.run(_rows(original.url, "SELECT name FROM core_virtualdomain ORDER BY id")
                       ) == [("legacy.example",), ("second.example",)]
    assert asyncio.run(_rows(original.url, "SELECT email FROM core_virtualuser WHERE id = 8")
                       ) == [("bob@second.example",)]
    assert asyncio.run(_rows(original.url, "SELECT id, source, destination FROM "
                                           "core_virtualalias WHERE id IN (3, 5, 6) ORDER BY id")
                       ) == [(3, "ext@legacy.example", "someone@gmail.com"),
                             (5, "dup@second.example", "bob@second.example")]


@pytest.mark.parametrize(("change", "message"), [
    ("DELETE FROM django_migrations WHERE app = 'core' AND name LIKE '0004%';",
     "lacks its core migration 0004_auto_20200616_1218: upgrade it to DinoMail 1.1 first"),
    ("DROP TABLE django_migrations;",
     "made neither by DinoMail nor by the original DinoMail"),
])
def test_databases_neither_original_nor_dinomail_are_left_alone(
    change: str, message: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    original = new_original("sqlite", request, tmp_path, extra_sql=change)
    before = original.dump()
    for args, status in ((("migrate",), 2), (("check",), 1)):
        result = original.run(*args)
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert original.dump() == before


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_failure_half_way_leaves_the_database_as_it_was(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = new_original(kind, request, tmp_path)
    before = original.dump()

    def broken(conn, plan) -> None:  # type: ignore[no-untyped-def]
        # After the mail tables were rebuilt and before the admins are added.
        assert sa.inspect(conn).has_table("dinomail_admin")
        raise RuntimeError("disk full")

    monkeypatch.setattr(apply, "_add_admins", broken)
    engine = create_engine(original.url)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            await adoption.adopt(engine)
    finally:
        await engine.dispose()
    assert original.dump() == before
