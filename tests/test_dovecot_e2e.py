"""A real Dovecot 2.3, configured from conf/dovecot/, authenticating against the real lookup
daemon (on PostgreSQL): doveadm, IMAP logins, LMTP delivery and quota_clone, the Lua + HTTP
path, and temporary failures when the daemon cannot answer."""

from __future__ import annotations

import imaplib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dinomail.passwords import hash_password
from dinomail.store import EVERYTHING, Store, aliasdomains, domains, mailboxes
from lookupd.dovecot.dict import DictServer, start_dict_server
from lookupd.resolve import find_login
from tests.conftest import new_postgres_database
from tests.support.daemon_logs import crash_lines
from tests.support.dovecot import (
    DovecotInstance,
    LookupdThread,
    have_dovecot,
    have_dovecot_lua,
    lookupd_settings_for_dovecot,
    make_root,
)
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.skipif(not have_dovecot(), reason="Dovecot is not installed")

PASSWORD = "Secret-123"
# One mailbox per scheme: Dovecot verifies each hash DinoMail made.
SCHEMES = {
    "sha512": "SHA512-CRYPT",
    "sha256": "SHA256-CRYPT",
    "blf": "BLF-CRYPT",
    "ssha512": "SSHA512",
    "argon": "ARGON2ID",
    "pbkdf2": "PBKDF2",
}
QUOTA = 10_000_000


@dataclass
class Stack:
    root: Path
    lookupd: LookupdThread
    dovecot: DovecotInstance
    mailbox_ids: dict[str, int]

    def doveadm(self, *args: str) -> tuple[int, str]:
        result = self.dovecot.doveadm(*args)
        return result.returncode, result.stdout + result.stderr

    def auth_test(self, login: str, password: str) -> tuple[int, str]:
        result = self.dovecot.auth_test(login, password)
        return result.returncode, result.stdout + result.stderr


async def fill(store: Store) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with store.write() as conn:
        example = await domains.create(conn, "test", EVERYTHING, {"name": "example.test"})
        off = await domains.create(conn, "test", EVERYTHING, {"name": "off.test"})
        await domains.update(conn, "test", EVERYTHING, off["id"], {"active": False})
        await aliasdomains.create(
            conn, "test", EVERYTHING, {"name": "alias.test", "target_domain_id": example["id"]}
        )
        for local, scheme in SCHEMES.items():
            email = f"{local}@example.test"
            row = await mailboxes.create(
                conn, "test", EVERYTHING,
                {"email": email, "quota": QUOTA if local == "sha512" else None},
                password_hash=hash_password(PASSWORD, scheme, user=email),
            )
            ids[email] = row["id"]
        for email, active in (("disabled@example.test", False), ("user@off.test", True)):
            row = await mailboxes.create(
                conn, "test", EVERYTHING, {"email": email, "active": active},
                password_hash=hash_password(PASSWORD, "SHA512-CRYPT"),
            )
            ids[email] = row["id"]
    return ids


def start_stack(root: Path, database_url: str) -> Stack:
    settings = lookupd_settings_for_dovecot(root, database_url)
    lookupd = LookupdThread(settings)
    dovecot: DovecotInstance | None = None
    try:
        lookupd.start()
        ids = lookupd.call(fill)
        daemon = lookupd.daemon
        assert daemon is not None
        lookupd.wait_until(
            lambda: daemon.holder.current is not None  # type: ignore[union-attr]
            and daemon.holder.current.row_counts()["mailboxes"] == len(ids),
            "the mailboxes in the snapshot",
        )
        dovecot = DovecotInstance(
            root, dict_socket=settings.dict_listen.removeprefix("unix:"),
            imap_port=free_port(), lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}",
        )
        dovecot.start()
    except BaseException:
        if dovecot is not None:
            dovecot.stop()
        lookupd.stop()
        raise
    return Stack(root, lookupd, dovecot, ids)


@pytest.fixture(scope="module")
def stack(postgres: PostgresServer) -> Iterator[Stack]:
    root = make_root()
    try:
        started = start_stack(root, new_postgres_database(postgres))
        try:
            yield started
        finally:
            started.dovecot.stop()
            started.lookupd.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- doveadm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("local", sorted(SCHEMES))
def test_auth_test_succeeds_for_every_scheme(stack: Stack, local: str) -> None:
    status, output = stack.auth_test(f"{local}@example.test", PASSWORD)
    assert status == 0, output
    assert "auth succeeded" in output


def test_wrong_password_unknown_user_and_disabled_mailboxes_fail(stack: Stack) -> None:
    for login, password in (
        ("sha512@example.test", "wrong"),
        ("nobody@example.test", PASSWORD),
        ("disabled@example.test", PASSWORD),  # inactive mailbox
        ("user@off.test", PASSWORD),  # inactive domain
    ):
        status, output = stack.auth_test(login, password)
        assert status == 77, (login, output)
        assert "auth failed" in output
        assert "temp_fail" not in output


def test_login_is_case_insensitive_and_alias_domains_log_in_as_the_target(stack: Stack) -> None:
    status, output = stack.auth_test("SHA512@Example.TEST", PASSWORD)
    assert status == 0, output
    status, output = stack.auth_test("ssha512@alias.test", PASSWORD)
    assert status == 0, output
    assert "user=ssha512@example.test" in output


def test_auth_lookup_and_user_print_the_fields(stack: Stack) -> None:
    status, output = stack.doveadm("auth", "lookup", "sha512@example.test")
    assert status == 0, output
    assert "passdb: sha512@example.test" in output
    status, output = stack.doveadm("auth", "lookup", "disabled@example.test")
    assert status != 0, output  # the passdb answer carries `fail`

    status, output = stack.doveadm("user", "sha512@example.test")
    assert status == 0, output
    fields = dict(line.split("\t", 1) for line in output.splitlines()[1:] if "\t" in line)
    assert fields["uid"] == str(stack.dovecot.mail_uid)
    assert fields["gid"] == str(stack.dovecot.mail_gid)
    assert fields["home"] == f"{stack.root}/vmail/example.test/sha512"
    assert fields["quota_rule"] == f"*:bytes={QUOTA}"
    status, output = stack.doveadm("user", "blf@example.test")
    assert "quota_rule" not in output  # unlimited: no rule

    status, output = stack.doveadm("user", "nobody@example.test")
    assert status == 67, output
    assert "doesn't exist" in output


def test_user_star_lists_every_mailbox(stack: Stack) -> None:
    status, output = stack.doveadm("user", "*")
    assert status == 0, output
    assert sorted(output.split()) == sorted(stack.mailbox_ids)


# --- IMAP and LMTP -------------------------------------------------------------------------------


def imap_login(stack: Stack, login: str, password: str) -> None:
    with imaplib.IMAP4("127.0.0.1", stack.dovecot.imap_port, timeout=10) as imap:
        imap.login(login, password)
        imap.select("INBOX")
        imap.logout()


def test_imap_login_and_a_wrong_password(stack: Stack) -> None:
    imap_login(stack, "argon@example.test", PASSWORD)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(stack, "argon@example.test", "not-the-password")


def test_a_password_changed_through_the_store_works_at_the_next_login(stack: Stack) -> None:
    email = "pbkdf2@example.test"
    new_hash = hash_password("Changed-456", "SHA512-CRYPT")

    async def change(store: Store) -> None:
        async with store.write() as conn:
            await mailboxes.set_password(conn, "test", EVERYTHING, stack.mailbox_ids[email],
                                         new_hash)

    imap_login(stack, email, PASSWORD)
    stack.lookupd.call(change)
    daemon = stack.lookupd.daemon
    assert daemon is not None
    stack.lookupd.wait_until(
        lambda: (record := find_login(daemon.holder.current, email)) is not None  # type: ignore[arg-type]
        and record.password == new_hash,
        "the new password in the snapshot",
    )
    imap_login(stack, email, "Changed-456")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(stack, email, PASSWORD)


def test_lmtp_delivery_updates_the_stored_quota_usage(stack: Stack) -> None:
    email = "sha512@example.test"
    message = "From: a@example.net\r\nSubject: quota\r\n\r\n" + "x" * 5000 + "\r\n"

    async def usage(store: Store) -> tuple[int, int]:
        async with store.read() as conn:
            row = await mailboxes.get_by_email(conn, EVERYTHING, email)
        return row["quota_used_bytes"], row["quota_used_messages"]

    before = stack.lookupd.call(usage)
    stack.dovecot.deliver("a@example.net", email, message)
    stack.dovecot.deliver("a@example.net", email, message)
    stack.lookupd.wait_until(
        lambda: stack.lookupd.call(usage)[1] == before[1] + 2, "the usage in the database"
    )
    used_bytes, _ = stack.lookupd.call(usage)
    assert used_bytes >= before[0] + 2 * 5000
    assert (stack.root / "vmail" / "example.test" / "sha512" / "Maildir").is_dir()


# --- Lua + HTTP ----------------------------------------------------------------------------------


@pytest.mark.skipif(not have_dovecot_lua(), reason="dovecot-auth-lua, lua-socket, lua-dkjson")
def test_lua_driver_authenticates_through_the_http_endpoints(stack: Stack) -> None:
    root = make_root()
    settings = stack.lookupd.settings
    dovecot = DovecotInstance(
        root, dict_socket=settings.dict_listen.removeprefix("unix:"), imap_port=free_port(),
        lookupd_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}", auth="lua",
    )
    try:
        dovecot.start()
        run = dovecot.doveadm
        assert dovecot.auth_test("blf@example.test", PASSWORD).returncode == 0
        assert dovecot.auth_test("blf@alias.test", PASSWORD).returncode == 0
        assert dovecot.auth_test("blf@example.test", "wrong").returncode == 77
        assert dovecot.auth_test("disabled@example.test", PASSWORD).returncode == 77
        assert dovecot.auth_test("nobody@example.test", PASSWORD).returncode == 77
        user = run("user", "sha512@example.test")
        assert user.returncode == 0 and f"*:bytes={QUOTA}" in user.stdout
        assert run("user", "nobody@example.test").returncode == 67
        assert sorted(run("user", "*").stdout.split()) == sorted(stack.mailbox_ids)
        with imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=10) as imap:
            imap.login("ssha512@example.test", PASSWORD)
            imap.logout()
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- temporary failures ------------------------------------------------------------------------


def assert_temporary_failure(dovecot: DovecotInstance, login: str) -> None:
    result = dovecot.auth_test(login, PASSWORD)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "temp_fail" in output, output
    lookup = dovecot.doveadm("user", login)
    assert lookup.returncode != 67, lookup.stdout + lookup.stderr  # not "doesn't exist"


def test_no_snapshot_yet_is_a_temporary_failure(stack: Stack) -> None:
    root = make_root()
    socket = root / "loading.sock"

    async def start() -> DictServer:
        return await start_dict_server(f"unix:{socket}", lambda: None)

    async def stop(server: DictServer) -> None:
        server.close()
        await server.wait_closed(timeout=1.0)

    server = stack.lookupd._run(start())
    dovecot = DovecotInstance(root, dict_socket=str(socket), imap_port=free_port())
    try:
        dovecot.start()
        assert_temporary_failure(dovecot, "sha512@example.test")
        with (
            pytest.raises(imaplib.IMAP4.error) as refused,
            imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=10) as imap,
        ):
            imap.login("sha512@example.test", PASSWORD)
        assert "UNAVAILABLE" in str(refused.value)  # "Temporary authentication failure"
    finally:
        dovecot.stop()
        stack.lookupd._run(stop(server))
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not have_dovecot_lua(), reason="dovecot-auth-lua, lua-socket, lua-dkjson")
def test_lua_with_the_daemon_unreachable_is_a_temporary_failure(stack: Stack) -> None:
    root = make_root()
    dovecot = DovecotInstance(
        root, dict_socket=stack.lookupd.settings.dict_listen.removeprefix("unix:"),
        imap_port=free_port(), lookupd_url=f"http://127.0.0.1:{free_port()}", auth="lua",
    )
    try:
        dovecot.start()
        assert_temporary_failure(dovecot, "sha512@example.test")
    finally:
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_lookup_metrics_are_exported(stack: Stack) -> None:
    daemon = stack.lookupd.daemon
    assert daemon is not None
    text = daemon.metrics.exposition().decode()
    labels: Any = 'dinomail_lookupd_lookups_total{map="%s",protocol="dovecot_dict",result="%s"}'
    assert labels % ("passdb", "ok") in text
    assert labels % ("userdb", "notfound") in text
    assert 'dinomail_lookupd_lookup_seconds_count{protocol="dovecot_dict"}' in text


# --- an auth worker idle past Dovecot's dict client timeout --------------------------------------


def test_auth_worker_idle_for_36_seconds_does_not_panic(stack: Stack) -> None:
    """Dovecot 2.3's dict client panics when a kept connection sees no command for 30 s
    (`client_dict_input_timeout`: assertion failed: (cmd != NULL)); the shipped idle_msecs must
    close it first. One lookup through the dict, 36 s of quiet, another lookup, a clean log."""
    root = make_root()
    settings = stack.lookupd.settings
    dovecot = DovecotInstance(
        root, dict_socket=settings.dict_listen.removeprefix("unix:"), imap_port=free_port(),
    )
    try:
        dovecot.start()
        assert dovecot.auth_test("sha512@example.test", PASSWORD).returncode == 0
        time.sleep(36)
        assert dovecot.auth_test("sha256@example.test", PASSWORD).returncode == 0
        assert dovecot.doveadm("user", "sha512@example.test").returncode == 0
        assert crash_lines(dovecot.log_text()) == [], dovecot.log_text()
    finally:
        dovecot.stop()  # also fails on a Panic, Fatal or crash in the log
        shutil.rmtree(root, ignore_errors=True)
