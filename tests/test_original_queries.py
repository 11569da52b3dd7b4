"""The SQL queries of the original documentation ("Linking DinoMail to postfix and dovecot")
keep returning the right rows, on a PostgreSQL database filled through the store; the Postfix
ones are run by the real `postmap` with Postfix's own pgsql client when it is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from dinomail.store import EVERYTHING, Store, aliases, domains, mailboxes
from tests.conftest import new_postgres_database
from tests.support.original_queries import POSTFIX_QUERIES, _pgsql_map
from tests.support.postfix import have_postmap, postmap_config, postmap_query
from tests.support.postgres import PostgresServer

USER_QUERY = """SELECT email as user,
    concat('*:bytes=', quota) AS quota_rule,
    '/var/vmail/%d/%n' AS home,
    5000 AS uid, 5000 AS gid
    FROM core_virtualuser WHERE email='%u'"""
PASSWORD_QUERY = "SELECT password FROM core_virtualuser WHERE email='%u'"
ITERATE_QUERY = "SELECT email AS user FROM core_virtualuser"


@pytest.fixture
async def filled(postgres: PostgresServer) -> tuple[str, Store]:
    url = new_postgres_database(postgres)
    store = Store(url)
    async with store.write() as conn:
        await domains.create(conn, "t", EVERYTHING, {"name": "example.org"})
        await mailboxes.create(
            conn, "t", EVERYTHING, {"email": "test@example.org", "quota": 20_000_000_000},
            password_hash="{SSHA512}stored-hash",
        )
        await aliases.create(
            conn, "t", EVERYTHING,
            {"source": "postmaster@example.org", "destination": "test@example.org"},
        )
    yield url, store
    await store.close()


@pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")
async def test_postfix_queries_through_postmap(
    filled: tuple[str, Store], postgres: PostgresServer, tmp_path: Path
) -> None:
    url, _ = filled
    config = postmap_config(tmp_path / "postfix")
    expected = {
        ("virtual-mailbox-domains", "example.org"): "1",
        ("virtual-mailbox-maps", "test@example.org"): "1",
        ("virtual-alias-maps", "postmaster@example.org"): "test@example.org",
        ("email2email", "test@example.org"): "test@example.org",
    }
    for (name, key), value in expected.items():
        result = postmap_query(config, key, _pgsql_map(tmp_path, postgres, url, name))
        assert (result.returncode, result.stdout.strip()) == (0, value), result.stderr
    missing = postmap_query(
        config, "nobody@example.org", _pgsql_map(tmp_path, postgres, url, "virtual-mailbox-maps")
    )
    assert missing.returncode == 1 and missing.stdout == ""


async def test_postfix_queries_in_sql(filled: tuple[str, Store]) -> None:
    _, store = filled
    async with store.read() as conn:
        async def one(name: str, key: str) -> list:
            sql = POSTFIX_QUERIES[name].replace("'%s'", ":key")
            return [row[0] for row in await conn.execute(sa.text(sql), {"key": key})]

        assert await one("virtual-mailbox-domains", "example.org") == [1]
        assert await one("virtual-mailbox-maps", "test@example.org") == [1]
        assert await one("virtual-alias-maps", "postmaster@example.org") == ["test@example.org"]
        assert await one("email2email", "test@example.org") == ["test@example.org"]
        assert await one("virtual-mailbox-maps", "nobody@example.org") == []


async def test_dovecot_queries_in_sql(filled: tuple[str, Store]) -> None:
    _, store = filled
    user = "test@example.org"
    local, domain = user.split("@")
    # As Dovecot does: the variables are substituted into the text of the query.
    def expand(query: str) -> str:
        return query.replace("%u", user).replace("%d", domain).replace("%n", local)

    async with store.read() as conn:
        row = (await conn.exec_driver_sql(expand(USER_QUERY))).mappings().one()
        password = (await conn.exec_driver_sql(expand(PASSWORD_QUERY))).scalar()
        users = [r[0] for r in await conn.exec_driver_sql(ITERATE_QUERY)]
    assert dict(row) == {
        "user": user,
        "quota_rule": "*:bytes=20000000000",
        "home": "/var/vmail/example.org/test",
        "uid": 5000,
        "gid": 5000,
    }
    assert password == "{SSHA512}stored-hash"
    assert users == [user]
