"""The lookup daemon's side of vacation replies and app passwords, on SQLite and PostgreSQL:
the dict `sieve` that Pigeonhole reads scripts from, and `POST /dovecot/verify`, which the Lua
passdb asks to check a password (main or app password, per service)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import httpx

from dinomail.passwords import hash_password
from dinomail.store import (
    EVERYTHING,
    Store,
    aliasdomains,
    aliases,
    apppasswords,
    domains,
    mailboxes,
)
from dinomail.store import vacation as store_vacation
from lookupd.dovecot.tabescape import split_fields, tabunescape
from tests.support.lookupd import eventually, running_lookupd, wait_until

PASSWORD = "Main-password-123"


async def _fill(store: Store) -> tuple[int, int]:
    async with store.write() as conn:
        domain = await domains.create(conn, "t", EVERYTHING, {"name": "example.org"})
        await aliasdomains.create(conn, "t", EVERYTHING,
                                  {"name": "example.net", "target_domain_id": domain["id"]})
        box = await mailboxes.create(conn, "t", EVERYTHING, {"email": "ann@example.org"},
                                     password_hash=hash_password(PASSWORD, "SHA512-CRYPT"))
        await mailboxes.create(conn, "t", EVERYTHING, {"email": "off@example.org",
                                                       "active": False},
                               password_hash=hash_password(PASSWORD, "SHA512-CRYPT"))
    return box["id"], domain["id"]


async def _dict(path: str, lines: list[bytes]) -> list[bytes]:
    """Send a dict protocol 3 handshake for dict `sieve`, then `lines`; one reply line each."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(b"H3\t2\t0\t\tsieve\n" + b"".join(line + b"\n" for line in lines))
        await writer.drain()
        return [(await reader.readline()).rstrip(b"\n") for _ in lines]
    finally:
        writer.close()


async def test_dict_sieve_serves_the_vacation_script(store: Store, tmp_path: Path) -> None:
    mailbox_id, _ = await _fill(store)
    async with running_lookupd(store, tmp_path) as (daemon, settings):
        socket = settings.dict_listen.removeprefix("unix:")
        await wait_until(lambda: daemon.vacations.loaded, what="the vacation scripts")
        name = b"Lpriv/sieve/name/vacation\tann@example.org"
        assert await _dict(socket, [name]) == [b"N"]
        async with store.write() as conn:
            await store_vacation.put(conn, "t", EVERYTHING, mailbox_id,
                                     {"enabled": True, "subject": "Away", "body": 'a "b"\n.'})
        await wait_until(lambda: daemon.vacations.script("ann@example.org") is not None,
                         what="the new script")
        script = daemon.vacations.script("ann@example.org")
        assert script is not None
        (found,) = await _dict(socket, [name])
        assert found == b"O" + script.id.encode()
        data = b"Lpriv/sieve/data/" + script.id.encode() + b"\tann@example.org"
        replies = await _dict(socket, [
            data,
            b"Lpriv/sieve/data/vacation-old\tann@example.org",
            b"Lpriv/sieve/name/vacation\tANN@example.net",  # the alias domain, any case
            b"Lpriv/sieve/name/vacation\tnobody@example.org",
            b"Lpriv/sieve/name/other\tann@example.org",
        ])
        text = tabunescape(split_fields(replies[0][1:])[0]).decode()
        assert replies[0][:1] == b"O" and text == script.text
        assert 'vacation :days 7 :subject "Away"' in text and '"a \\"b\\"\n."' in text
        assert ':addresses ["ann@example.org", "ann@example.net"]' in text
        assert replies[1] == b"N" and replies[2] == found and replies[3] == b"N"
        assert replies[4].startswith(b"F")
        async with store.write() as conn:
            await store_vacation.put(conn, "t", EVERYTHING, mailbox_id, {"enabled": False})
        await wait_until(lambda: daemon.vacations.script("ann@example.org") is None,
                         what="the script gone")


async def test_vacation_scripts_follow_the_change_log(store: Store, tmp_path: Path) -> None:
    """The script comes from the snapshot: its settings, and the mailbox's other addresses (the
    aliases leading to it, catch-alls aside, and its address in each active alias domain), each
    followed through the change log."""
    mailbox_id, domain_id = await _fill(store)
    async with store.write() as conn:
        joe = await mailboxes.create(conn, "t", EVERYTHING, {"email": "joe@example.org"},
                                     password_hash="{PLAIN}x")
        await aliases.create(conn, "t", EVERYTHING,
                             {"source": "sales@example.org", "destination": "ann@example.org"})
        await aliases.create(conn, "t", EVERYTHING,
                             {"source": "@example.org", "destination": "ann@example.org"})
        await store_vacation.put(conn, "t", EVERYTHING, mailbox_id,
                                 {"enabled": True, "body": "Away", "ends": "2027-01-04"})
        await store_vacation.put(conn, "t", EVERYTHING, joe["id"],
                                 {"enabled": False, "body": "x"})
    async with running_lookupd(store, tmp_path) as (daemon, _):
        vacations = daemon.vacations

        def text() -> str:
            script = vacations.script("ann@example.org")
            assert script is not None
            return script.text

        # Loaded in full: the alias domain example.net (from _fill) and the alias, not the
        # catch-all; the last day tested by the script itself, whatever today is.
        assert ':addresses ["ann@example.org", "sales@example.org", "ann@example.net"]' in text()
        assert 'currentdate :value "le" "date" "2027-01-04"' in text()
        assert vacations.script("joe@example.org") is None  # disabled
        first = vacations.script("ann@example.org")
        assert first is not None and vacations.script("ann@example.org") is first  # cached

        async with store.write() as conn:
            info = await aliases.create(conn, "t", EVERYTHING, {
                "source": "info@example.org", "destination": "ann@example.org"})
            await aliasdomains.create(conn, "t", EVERYTHING,
                                      {"name": "example.com", "target_domain_id": domain_id})
        expected = ('["ann@example.org", "sales@example.org", "info@example.org", '
                    '"ann@example.com", "ann@example.net"]')
        await wait_until(lambda: expected in text(), what="the new addresses in the script")
        async with store.write() as conn:
            await aliases.delete(conn, "t", EVERYTHING, info["id"])
            await store_vacation.put(conn, "t", EVERYTHING, mailbox_id, {"subject": "Later"})
        await wait_until(lambda: ':subject "Later"' in text(), what="the new subject")
        assert '"info@example.org"' not in text()
        second = vacations.script("ann@example.org")
        assert second is not None and second.id != first.id

        # Another mailbox away: its aliases are found too; turning it off removes its script.
        async with store.write() as conn:
            await aliases.create(conn, "t", EVERYTHING,
                                 {"source": "help@example.org", "destination": "joe@example.org"})
            await store_vacation.put(conn, "t", EVERYTHING, joe["id"], {"enabled": True})
        await wait_until(lambda: vacations.script("joe@example.org") is not None,
                         what="joe's script")
        joes = vacations.script("joe@example.org")
        assert joes is not None and '"help@example.org"' in joes.text
        async with store.write() as conn:
            await store_vacation.delete(conn, "t", EVERYTHING, mailbox_id)
        await wait_until(lambda: vacations.script("ann@example.org") is None,
                         what="the removed vacation gone")
        assert vacations.script("joe@example.org") is not None


async def test_verify_checks_main_and_app_passwords_per_service(
    store: Store, tmp_path: Path
) -> None:
    mailbox_id, domain_id = await _fill(store)
    secret = apppasswords.new_secret()
    async with store.write() as conn:
        app = await apppasswords.create(
            conn, "t", EVERYTHING, mailbox_id, name="phone", protocols=["imap", "smtp"],
            password_hash=await apppasswords.hash_secret(secret),
        )
    async with running_lookupd(store, tmp_path, APP_PASSWORD_FLUSH_INTERVAL="0.05") as (
        _, settings
    ), httpx.AsyncClient(base_url=f"http://{settings.LOOKUPD_HTTP_LISTEN}") as http:

        async def verify(user: str, password: str, service: str) -> tuple[int, object]:
            answer = await http.post(
                "/dovecot/verify",
                content=urlencode({"user": user, "password": password, "service": service}),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            return answer.status_code, answer.json()

        async def refused(user: str, password: str, service: str) -> bool:
            return await verify(user, password, service) == (200, mismatch)

        ok = {"result": "ok", "fields": {}}
        mismatch = {"result": "mismatch", "fields": {}}
        assert await verify("ann@example.org", PASSWORD, "imap") == (200, ok)
        assert await verify("ann@example.org", secret, "imap") == (200, ok)
        assert await verify("ann@example.org", secret, "submission") == (200, ok)
        assert await verify("ann@example.org", secret, "pop3") == (200, mismatch)
        assert await verify("ann@example.org", secret, "sieve") == (200, mismatch)
        assert await verify("ann@example.org", "wrong", "imap") == (200, mismatch)
        assert await verify("ann@example.net", secret, "imap") == (
            200, {"result": "ok", "fields": {"user": "ann@example.org"}})
        assert (await verify("nobody@example.org", PASSWORD, "imap"))[0] == 404
        # A disabled mailbox: the same answer as a wrong password.
        assert await verify("off@example.org", PASSWORD, "imap") == (200, mismatch)
        garbled = await http.post("/dovecot/verify", content=b"user=%FF&password=x",
                                  headers={"Content-Type":
                                           "application/x-www-form-urlencoded"})
        assert garbled.json() == mismatch

        async with store.write() as conn:
            await domains.update(conn, "t", EVERYTHING, domain_id,
                                 {"require_app_passwords": True})
        # The rule reaches the snapshot through the change log.
        await eventually(lambda: refused("ann@example.org", PASSWORD, "imap"),
                         what="the domain's rule in the snapshot")
        for service in ("imap", "pop3", "smtp", "submission", "sieve"):
            assert await verify("ann@example.org", PASSWORD, service) == (200, mismatch)
        assert await verify("ann@example.org", PASSWORD, "doveadm") == (200, ok)
        assert await verify("ann@example.org", secret, "imap") == (200, ok)

        async def last_used() -> object:
            async with store.read() as conn:
                (row,) = await apppasswords.list_for(conn, EVERYTHING, mailbox_id)
            return row["last_used"]

        deadline = asyncio.get_running_loop().time() + 10
        while await last_used() is None:
            assert asyncio.get_running_loop().time() < deadline, "last use never written"
            await asyncio.sleep(0.05)
        async with store.write() as conn:
            await apppasswords.revoke(conn, "t", EVERYTHING, mailbox_id, app["id"])
        await eventually(lambda: refused("ann@example.org", secret, "imap"),
                         what="the revoked app password refused")
        assert await verify("ann@example.org", secret, "smtp") == (200, mismatch)
