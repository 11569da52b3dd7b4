"""Database URLs naming several PostgreSQL servers, libpq style, and the settings around them:
parsed without losing a host or an option, refused in one line when wrong, and a real
connection skipping a server that does not answer."""

from __future__ import annotations

import pytest

from dinomail.database import async_url, asyncpg_connect_args, describe
from dinomail.settings import SettingsError, env_name, load_settings
from dinomail.store import Store
from tests.support.cli import dinomail
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer

MULTI = (
    "postgresql://dinomail:s3cret@db1.example:5433,db2.example/dinomail"
    "?target_session_attrs=read-write"
)


def test_several_servers_keep_every_host_port_and_option() -> None:
    url = async_url(MULTI)
    assert url.drivername == "postgresql+asyncpg"
    assert url.database == "dinomail" and url.username == "dinomail"
    assert url.query["host"] == ("db1.example:5433", "db2.example:5432")  # libpq's default port
    assert url.query["target_session_attrs"] == "read-write"
    options = asyncpg_connect_args(MULTI, target_session_attrs="primary")
    assert options["host"] == ["db1.example", "db2.example"]
    assert options["port"] == [5433, 5432]
    assert options["password"] == "s3cret"
    assert options["target_session_attrs"] == "primary"
    # What logs and messages show: the servers, never the password.
    assert describe(MULTI) == "postgresql://db1.example:5433,db2.example:5432/dinomail"
    assert describe("postgresql://u:pw@[::1]:5432,127.0.0.1/db") == (
        "postgresql://[::1]:5432,127.0.0.1:5432/db"
    )
    # One server: as before.
    assert async_url("postgresql://u@db.example:6000/mail").port == 6000


def test_lookupd_database_url_defaults_to_database_url() -> None:
    settings = load_settings(environ={"DINOMAIL_DATABASE_URL": MULTI})
    assert settings.lookupd_database_url == MULTI
    assert settings.LOOKUPD_POLL_INTERVAL == 0.25
    standby = "postgresql://dinomail@standby.example/dinomail"
    settings = load_settings(environ={
        "DINOMAIL_DATABASE_URL": MULTI, "DINOMAIL_LOOKUPD_DATABASE_URL": standby,
        "DINOMAIL_LOOKUPD_POLL_INTERVAL": "0.1",
    })
    assert settings.lookupd_database_url == standby
    assert settings.LOOKUPD_POLL_INTERVAL == 0.1


@pytest.mark.parametrize(("key", "value"), [
    ("DATABASE_URL", "postgresql://h1,h2/db?target_session_attrs=sometimes"),
    ("DATABASE_URL", "postgresql://h1,:5432/db"),
    ("DATABASE_URL", "postgresql://h1,h2:port/db"),
    ("DATABASE_URL", "postgresql://h1,h2"),
    ("LOOKUPD_DATABASE_URL", "mysql://x/y"),
    ("LOOKUPD_DATABASE_URL", "postgresql://h1,h2/db?target_session_attrs=primary-ish"),
    ("LOOKUPD_POLL_INTERVAL", "0"),
])
def test_bad_values_name_the_setting(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={env_name(key): value})
    assert caught.value.key == key


def test_bad_url_is_one_line_and_exit_2() -> None:
    result = dinomail("check", env={
        "DINOMAIL_LOOKUPD_DATABASE_URL": "postgresql://h1,h2/db?target_session_attrs=sometimes",
    })
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "LOOKUPD_DATABASE_URL" in result.stderr and "prefer-standby" in result.stderr


async def test_a_server_that_does_not_answer_is_skipped(postgres: PostgresServer) -> None:
    dead = free_port()
    store = Store(f"postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{postgres.port}/postgres"
                  "?target_session_attrs=read-write")
    try:
        await store.ping()
    finally:
        await store.close()


def test_check_names_an_unreachable_lookups_database(postgres: PostgresServer) -> None:
    result = dinomail("check", env={
        "DINOMAIL_DATABASE_URL": postgres.url("dinomail_migrated"),
        "DINOMAIL_LOOKUPD_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/x",
    })
    assert result.returncode == 1, result
    assert result.stderr.startswith("dinomail: error: LOOKUPD_DATABASE_URL: cannot reach")
    assert result.stderr.count("\n") == 1
