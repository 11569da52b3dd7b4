"""`dinomail import-postfixadmin` from PostgreSQL and MariaDB databases with PostfixAdmin's own
schema (tests/fixtures/postfixadmin/, derived from its upgrade.php) and data written as PostfixAdmin
writes it: every mailbox keeps its password, aliases and alias domains resolve through the real
`postmap`, admins log in with their PostfixAdmin passwords; what DinoMail cannot take is refused
by name, and then nothing is written."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from dinomail.passwords import verify_password
from dinomail.schema import admin, virtualdomain, virtualuser
from dinomail.store import Store, admins
from dinomail.transfer.postfixadmin import dovecot_hash
from tests.conftest import new_postgres_database
from tests.support.adminapi import fast_admin_hashing
from tests.support.cli import dinomail
from tests.support.dovecot import (
    DovecotInstance,
    LookupdThread,
    have_dovecot,
    lookupd_settings_for_dovecot,
    make_root,
)
from tests.support.lookupd import running_lookupd
from tests.support.mariadb import MariaDBServer, have_mariadb
from tests.support.pages import log_in, pages_client
from tests.support.ports import free_port
from tests.support.postfix import have_postmap, postmap_config, postmap_query_async
from tests.support.postgres import PostgresServer
from tests.support.readme import run_block, shell_blocks

pytestmark = pytest.mark.skipif(not have_postmap(), reason="postfix is not installed")

FIXTURES = Path(__file__).parent / "fixtures" / "postfixadmin"
PASSWORDS = {
    "alice@example.com": "alice-secret-1",  # $6$ (php_crypt, SHA512)
    "bob@example.com": "bob md5 crypt",  # $1$ (md5crypt)
    "carol@example.com": "carol-dovecot",  # {SHA512-CRYPT} (dovecot:SHA512-CRYPT)
    "dave@example.com": "dave blowfish",  # $2y$ (php_crypt, BLOWFISH)
    "erin@example.net": "erin sha256",  # $5$ (php_crypt, SHA256)
    "frank@example.net": "frank b64",  # {SHA512-CRYPT.B64} (sha512.b64)
    "gina@example.net": "gina bcrypt 2a",  # $2a$ (older bcrypt)
    "henry@example.com": "henry inactive",
}
ADMIN_PASSWORDS = {"admin@example.com": "superadmin pass", "manager@example.com": "manager pass"}
NOT_FOUND = None
POSTMAP = {
    "domains": {"example.com": "example.com", "example.net": "example.net",
                "alias.example": "alias.example", "backup.example": NOT_FOUND,
                "all": NOT_FOUND},
    "mailboxes": {"alice@example.com": "example.com/alice/",
                  "frank@example.net": "example.net/frank/",
                  "henry@example.com": NOT_FOUND},
    "aliases": {
        "info@example.com": "alice@example.com,bob@example.com",
        "sales@example.com": "carol@example.com,partner@elsewhere.org",
        # Forwarded with a copy kept (set by the test): delivered to both.
        "alice@example.com": "alice@example.com,boss@elsewhere.org",
        "bob@example.com": "bob@example.com",  # its vacation auto-reply left out
        "dave@example.com": "dave.ext@elsewhere.org",  # forwarded, no copy kept
        "nobody@example.net": "erin@example.net",  # the catch-all
        "alice@alias.example": "alice@example.com",  # the alias domain
        "old@example.com": NOT_FOUND,  # inactive in PostfixAdmin
    },
}
# PostfixAdmin's "forward and keep a copy": the mailbox's own address among the destinations.
FORWARD_WITH_COPY = ("UPDATE alias SET goto = 'alice@example.com,boss@elsewhere.org' "
                     "WHERE address = 'alice@example.com'")
_numbers = itertools.count(1)


def postfixadmin_database(server: PostgresServer, *extra_sql: str) -> str:
    name = f"postfixadmin_{next(_numbers)}"
    url = server.create_database(name)
    for sql in ((FIXTURES / "postgresql.sql").read_text(),
                (FIXTURES / "data.sql").read_text(), *extra_sql):
        server.psql(sql, name)
    return url


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    if not have_mariadb():
        pytest.skip("MariaDB is not installed (scripts/install-system-deps.sh)")
    server = MariaDBServer()
    server.start()
    yield server
    server.destroy()


SourceFactory = Callable[..., str]


@pytest.fixture(params=["postgresql", "mariadb"])
def postfixadmin_source(request: pytest.FixtureRequest, postgres: PostgresServer
                        ) -> SourceFactory:
    """Makes a PostfixAdmin database of each kind, with the fixture data and `extra_sql`."""
    if request.param == "postgresql":
        return lambda *extra_sql: postfixadmin_database(postgres, *extra_sql)
    server: MariaDBServer = request.getfixturevalue("mariadb")

    def make(*extra_sql: str) -> str:
        name = f"postfixadmin_{next(_numbers)}"
        url = server.create_database(name)
        for sql in ((FIXTURES / "mariadb.sql").read_text(),
                    (FIXTURES / "data.sql").read_text(), *extra_sql):
            server.sql(sql + ";", name)
        return url

    return make


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def test_import(
    postfixadmin_source: SourceFactory, postgres: PostgresServer, tmp_path: Path
) -> None:
    source = postfixadmin_source(FORWARD_WITH_COPY)
    target = new_postgres_database(postgres)
    env = {"DINOMAIL_DATABASE_URL": target}
    options = ("--vacation-domain", "autoreply.example.com")

    dry = dinomail("import-postfixadmin", "--dry-run", source, *options, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run: nothing was changed." in dry.stdout
    assert "domains                2         0         0         0" in dry.stdout
    assert "alias domains          1         0         0         0" in dry.stdout
    assert "mailboxes              8         0         0         0" in dry.stdout
    assert "aliases                8         0         0         0" in dry.stdout
    assert "admins                 3         0         0         0" in dry.stdout
    for note in ("domain backup.example: a backup MX domain",
                 "alias bob@example.com: the vacation auto-reply",
                 "alias old@example.com: inactive in PostfixAdmin, left out",
                 "admin legacy@example.net: the password hash is not recognised"):
        assert f"note: {note}" in dry.stderr
    store = Store(target)
    try:
        async with store.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(virtualuser)) == 0

        done = dinomail("import-postfixadmin", source, *options, env=env)
        assert done.returncode == 0, done.stderr
        assert "mailboxes              8         0         0         0" in done.stdout

        async with store.write() as conn:
            hashes = dict((await conn.execute(
                sa.select(virtualuser.c.email, virtualuser.c.password))).all())
            assert set(hashes) == set(PASSWORDS)
            for email, password in PASSWORDS.items():
                assert verify_password(password, hashes[email], user=email), email
                assert not verify_password(password + "x", hashes[email], user=email)
            example = (await conn.execute(sa.select(virtualdomain).where(
                virtualdomain.c.name == "example.com"))).mappings().one()
            assert (example["display_name"], example["max_mailboxes"], example["max_aliases"],
                    example["max_quota_per_mailbox"], example["total_quota"]) == (
                "Example Company", 20, 10, 100 * 1024000, 1000 * 1024000)
            quotas = dict((await conn.execute(
                sa.select(virtualuser.c.email, virtualuser.c.quota))).all())
            assert quotas["alice@example.com"] == 51200000

            for username, password in ADMIN_PASSWORDS.items():
                account = await admins.authenticate(conn, username, password)
                assert account is not None, username
                assert await admins.authenticate(conn, username, password + "x") is None
            root = await conn.scalar(sa.select(admin.c.is_superadmin).where(
                admin.c.username == "admin@example.com"))
            assert root is True
            manager = await admins.authenticate(conn, "manager@example.com", "manager pass")
            assert manager is not None and not manager["is_superadmin"]
            names = set((await conn.execute(sa.select(virtualdomain.c.name).where(
                virtualdomain.c.id.in_(manager["domain_ids"])))).scalars())
            assert names == {"example.com", "example.net"}
            assert await admins.authenticate(conn, "legacy@example.net",
                                             "cleartext-password") is None
        # The domain admin logs in to the pages with the PostfixAdmin password, and sees
        # the domains PostfixAdmin gave them.
        async with pages_client(store) as client:
            browser = await log_in(client, "manager@example.com", "manager pass")
            listed = await browser.get("/virtual-domains/")
            assert "example.com" in listed.text and "example.net" in listed.text

        config = postmap_config(tmp_path / "postfix")
        (tmp_path / "lookupd").mkdir()
        async with running_lookupd(store, tmp_path / "lookupd") as (_, settings):
            for name, answers in POSTMAP.items():
                table = f"socketmap:inet:{settings.SOCKETMAP_LISTEN}:{name}"
                for key, value in answers.items():
                    status, stdout, stderr = await postmap_query_async(config, key, table)
                    if value is NOT_FOUND:
                        assert (status, stdout) == (1, ""), (name, key)
                    else:
                        assert (status, stdout.strip()) == (0, value), (name, key, stderr)
            # Dovecot's passdb, over the daemon's HTTP: the hash it hands Dovecot verifies.
            base = f"http://{settings.LOOKUPD_HTTP_LISTEN}"
            async with httpx.AsyncClient(base_url=base) as http:
                for email, password in PASSWORDS.items():
                    response = await http.get(f"/dovecot/passdb/{email}")
                    assert response.status_code == 200, email
                    fields = response.json()
                    assert verify_password(password, fields["password"], user=email)
                    # The inactive mailbox is refused by the passdb, as in PostfixAdmin.
                    assert ("nologin" in fields) == (email == "henry@example.com")

        again = dinomail("import-postfixadmin", source, *options, env=env)
        assert again.returncode == 2
        assert "refused: domain example.com: the domain example.com exists already" \
            in again.stderr
        skip = dinomail("import-postfixadmin", "--on-conflict", "skip", source, *options,
                        env=env)
        assert skip.returncode == 0, skip.stderr
        assert "mailboxes              0         0         8         0" in skip.stdout
    finally:
        await store.close()


async def test_what_cannot_be_taken_is_refused_by_name(
    postfixadmin_source: SourceFactory, postgres: PostgresServer
) -> None:
    source = postfixadmin_source(
        "INSERT INTO mailbox (username, password, name, maildir, local_part, domain) VALUES "
        "('ivan@example.com', 'plain text', '', 'example.com/ivan/', 'ivan', 'example.com')",
        "INSERT INTO mailbox (username, password, name, maildir, local_part, domain) VALUES "
        "('bad address@example.com', '{PLAIN}x', '', 'example.com/bad/', 'bad address', "
        "'example.com')",
    )
    target = new_postgres_database(postgres)
    result = dinomail("import-postfixadmin", source, "--vacation-domain",
                      "autoreply.example.com", env={"DINOMAIL_DATABASE_URL": target})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert ("refused: mailbox ivan@example.com: the password hash is not one DinoMail "
            "recognises (a {SCHEME} hash or a $1$, $5$, $6$, $2y$ crypt string)") in lines
    assert any(line.startswith("refused: mailbox bad address@example.com (email): ")
               for line in lines)
    assert lines[-1] == "dinomail: error: 2 refusals; nothing was imported"
    store = Store(target)
    try:
        async with store.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(virtualdomain)) == 0
    finally:
        await store.close()


def test_hash_forms() -> None:
    assert dovecot_hash("$6$salt$hash") == "{SHA512-CRYPT}$6$salt$hash"
    assert dovecot_hash("$2a$10$abc") == "{BLF-CRYPT}$2y$10$abc"
    assert dovecot_hash("{SSHA512}abc") == "{SSHA512}abc"
    assert dovecot_hash("{NOSUCH}abc") is None
    assert dovecot_hash("cleartext") is None


def test_bad_urls(tmp_path: Path) -> None:
    env = {"DINOMAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    result = dinomail("import-postfixadmin", "oracle://x/y", env=env)
    assert (result.returncode, result.stderr) == (
        2, "dinomail: error: unsupported database 'oracle' (use postgresql:// or mysql://)\n")


async def test_the_readme_commands(postgres: PostgresServer, tmp_path: Path) -> None:
    (block,) = shell_blocks("Moving from PostfixAdmin")
    source = postfixadmin_database(postgres)
    target = new_postgres_database(postgres)
    # The README's URL names an example server; the test's PostfixAdmin database stands in.
    result = run_block(block.replace("postgresql://postfixadmin@db.example.com/postfix", source),
                       tmp_path, DINOMAIL_DATABASE_URL=target)
    assert result.stdout.count("mailboxes              8         0         0         0") == 2
    store = Store(target)
    try:
        async with store.read() as conn:
            assert await conn.scalar(sa.select(sa.func.count()).select_from(virtualuser)) == 8
    finally:
        await store.close()


@pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed")
def test_mailboxes_log_in_over_dovecot(postgres: PostgresServer) -> None:
    """A real Dovecot, configured from conf/dovecot/, asks the lookup daemon: every imported
    mailbox logs in with its PostfixAdmin password; the inactive one does not."""
    source = postfixadmin_database(postgres)
    target = new_postgres_database(postgres)
    done = dinomail("import-postfixadmin", source, "--vacation-domain", "autoreply.example.com",
                    env={"DINOMAIL_DATABASE_URL": target})
    assert done.returncode == 0, done.stderr
    root = make_root()
    lookupd = LookupdThread(lookupd_settings_for_dovecot(root, target))
    dovecot: DovecotInstance | None = None
    try:
        lookupd.start()
        settings = lookupd.settings
        dovecot = DovecotInstance(
            root, dict_socket=settings.dict_listen.removeprefix("unix:"),
            imap_port=free_port(), lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}",
        )
        dovecot.start()
        for email, password in PASSWORDS.items():
            result = dovecot.auth_test(email, password)
            output = result.stdout + result.stderr
            if email == "henry@example.com":
                assert result.returncode != 0, output
            else:
                assert result.returncode == 0 and "auth succeeded" in output, (email, output)
            wrong = dovecot.auth_test(email, password + "!")
            assert wrong.returncode != 0
    finally:
        if dovecot is not None:
            dovecot.stop()
        lookupd.stop()
        shutil.rmtree(root, ignore_errors=True)
