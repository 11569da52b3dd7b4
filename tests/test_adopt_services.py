"""After `dinomail migrate` adopted the original's database (PostgreSQL and SQLite): every
mailbox of the fixture logs in through a real Dovecot asking the lookup daemon, every alias
resolves through the real `postmap`, the original admins log in with their Django passwords
(store, pages, `/api/apikey/`) and are re-hashed, and their original API keys keep working."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from dinomail.schema import admin
from dinomail.store import Store, admins
from tests.support.adminapi import api_client, basic_header, key_header
from tests.support.dovecot import (
    DovecotInstance,
    LookupdThread,
    have_dovecot,
    lookupd_settings_for_dovecot,
    make_root,
)
from tests.support.original_db import (
    ADMINS,
    ALIASES,
    API_KEYS,
    MAILBOXES,
    UNVERIFIABLE,
    Original,
    new_original,
)
from tests.support.pages import log_in, pages_client
from tests.support.ports import free_port
from tests.support.postfix import have_postmap, postmap_config, postmap_query

pytestmark = [
    pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed"),
    pytest.mark.skipif(not have_postmap(), reason="postfix is not installed"),
]


@dataclass
class Running:
    original: Original
    lookupd: LookupdThread
    dovecot: DovecotInstance
    socketmap: str

    @property
    def keys(self) -> dict[str, str]:
        return API_KEYS[self.original.kind]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Running]:
    original = new_original(request.param, request, tmp_path_factory.mktemp("adopted"))
    migrated = original.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    root = make_root()
    lookupd = LookupdThread(lookupd_settings_for_dovecot(root, original.url))
    dovecot = None
    try:
        lookupd.start()
        settings = lookupd.settings
        dovecot = DovecotInstance(
            root, dict_socket=settings.dict_listen.removeprefix("unix:"),
            imap_port=free_port(), lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}",
        )
        dovecot.start()
        yield Running(original, lookupd, dovecot, f"inet:{settings.SOCKETMAP_LISTEN}")
    finally:
        if dovecot is not None:
            dovecot.stop()
        lookupd.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def store(running: Running) -> Iterator[Store]:
    """A store on the adopted database, with the admins' Django hashes as adoption left them
    (each login test re-hashes one)."""
    store = Store(running.original.url)
    async with store.write() as conn:
        await conn.execute(sa.text(
            "UPDATE dinomail_admin SET password = "
            "(SELECT password FROM auth_user WHERE auth_user.id = dinomail_admin.id)"))
    yield store
    await store.close()


async def _stored_hash(store: Store, username: str) -> str:
    async with store.read() as conn:
        return str(await conn.scalar(sa.select(admin.c.password).where(
            admin.c.username == username)))


# --- mail ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", sorted(MAILBOXES))
def test_every_mailbox_logs_in_through_dovecot(running: Running, email: str) -> None:
    result = running.dovecot.auth_test(email, MAILBOXES[email])
    output = result.stdout + result.stderr
    if email == UNVERIFIABLE:
        # The original never stored this hash's salt: no password matches until a reset.
        assert result.returncode == 77 and "auth failed" in output, output
        assert "temp_fail" not in output
    else:
        assert result.returncode == 0 and "auth succeeded" in output, output
        wrong = running.dovecot.auth_test(email, MAILBOXES[email] + "x")
        assert wrong.returncode == 77, wrong.stdout


def test_every_alias_and_mailbox_resolves_through_postmap(
    running: Running, tmp_path: Path
) -> None:
    config = postmap_config(tmp_path / "postfix")

    def query(table: str, key: str) -> tuple[int, str]:
        result = postmap_query(config, key, f"socketmap:{running.socketmap}:{table}")
        return result.returncode, result.stdout.strip()

    for source, destinations in ALIASES.items():
        status, value = query("aliases", source)
        assert status == 0, (source, value)
        assert sorted(value.split(",")) == sorted(destinations), source
    for email in MAILBOXES:
        local, domain = email.split("@")
        assert query("mailboxes", email) == (0, f"{domain}/{local}/")
    for domain in ("legacy.example", "second.example"):
        assert query("domains", domain) == (0, domain)
    assert query("aliases", "nobody@legacy.example")[0] == 1
    assert query("mailboxes", "info@legacy.example")[0] == 1
    assert query("domains", "other.example")[0] == 1


# --- admins --------------------------------------------------------------------------------------


async def test_django_passwords_log_in_and_are_rehashed(store: Store) -> None:
    for username, password in ADMINS.items():
        assert (await _stored_hash(store, username)).startswith("pbkdf2_sha256$260000$")
        async with store.read() as conn:
            assert await admins.authenticate(conn, username, password + "x") is None
            account = await admins.authenticate(conn, username, password)
            await conn.commit()
        assert account is not None and account["username"] == username
        assert (await _stored_hash(store, username)).startswith("$argon2id$")
        async with store.read() as conn:  # the new hash takes the same password
            assert await admins.authenticate(conn, username, password) is not None
    async with store.read() as conn:
        oldadmin = (await conn.execute(sa.select(admin.c.is_superadmin, admin.c.is_active).where(
            admin.c.username == "oldadmin"))).one()
        helper = await admins.get(conn, 2)
    assert oldadmin.is_superadmin and oldadmin.is_active
    assert not helper["is_superadmin"] and helper["domain_ids"] == [1, 2]


async def test_pages_login_with_a_django_password_keeps_its_session(store: Store) -> None:
    async with pages_client(store) as client:
        browser = await log_in(client, "oldadmin", ADMINS["oldadmin"])
        # The hash changed at this login; the session opened with it stays valid.
        assert (await _stored_hash(store, "oldadmin")).startswith("$argon2id$")
        page = await browser.get("/")
        assert page.status_code == 200 and "/login" not in str(page.url)
        mailboxes = await browser.get("/virtual-users/", domain="second.example")
        assert mailboxes.status_code == 200 and "bob@second.example" in mailboxes.text


async def test_api_basic_credentials_with_a_django_password(store: Store) -> None:
    async with api_client(store) as client:
        wrong = await client.get("/api/apikey/", headers=basic_header("helper", "nope"))
        answer = await client.get("/api/apikey/",
                                  headers=basic_header("helper", ADMINS["helper"]))
    assert wrong.status_code == 401
    assert answer.status_code == 200, answer.text
    assert (await _stored_hash(store, "helper")).startswith("$argon2id$")


async def test_original_api_keys_keep_working(running: Running, store: Store) -> None:
    async with api_client(store) as client:
        found = {}
        for username, key in running.keys.items():
            answer = await client.get("/api/virtualuser/", headers=key_header(username, key))
            assert answer.status_code == 200, answer.text
            found[username] = {row["email"] for row in answer.json()["objects"]}
        helper = key_header("helper", running.keys["helper"])
        helper_aliases = (await client.get("/api/virtualalias/", headers=helper)).json()
        helper_domains = (await client.get("/api/virtualdomain/", headers=helper)).json()
        # A key names its owner: another admin's name with it is refused.
        crossed = await client.get(
            "/api/virtualuser/", headers=key_header("helper", running.keys["oldadmin"]))
        wrong = await client.get(
            "/api/virtualuser/", headers=key_header("oldadmin", "0" * 40))
    assert found["oldadmin"] == set(MAILBOXES)
    # The helper changed mailboxes in the original; it manages every domain here.
    assert found["helper"] == set(MAILBOXES)
    assert crossed.status_code == 401 and wrong.status_code == 401
    # Unlike the original's per-model permissions (an empty list), as the README says.
    assert helper_aliases["meta"]["total_count"] == 5
    assert {row["name"] for row in helper_domains["objects"]} == {
        "legacy.example", "second.example"}


async def test_keys_are_stored_hashed(running: Running, store: Store) -> None:
    async with store.read() as conn:
        stored = " ".join(str(value) for row in await conn.execute(
            sa.text("SELECT * FROM dinomail_apikey")) for value in row)
    for key in running.keys.values():
        assert key[:8] in stored and key not in stored
