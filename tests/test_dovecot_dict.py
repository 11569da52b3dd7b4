"""The Dovecot dict proxy server in process, over a real unix socket; its answers, its limits,
and the HTTP endpoints for Dovecot's Lua driver. (The same against a real Dovecot:
test_dovecot_e2e.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from dinomail.records import DomainRow, MailboxRow, MailData
from lookupd.dovecot.auth import expand_home
from lookupd.dovecot.dict import MAX_LINE_BYTES, DictServer, start_dict_server
from lookupd.dovecot.tabescape import join_fields, split_fields, tabescape, tabunescape
from lookupd.http import create_http_app
from lookupd.metrics import LookupdMetrics
from lookupd.refresher import SnapshotHolder
from lookupd.snapshot import Snapshot
from tests.support.dict_client import V3_AUTH, Client
from tests.support.dict_server import USERDB, Recorder


def found(reply: bytes) -> dict[str, object]:
    assert reply[:1] == b"O", reply
    return json.loads(tabunescape(reply[1:]))


# --- tab escaping --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    b"", b"plain", b"a\tb", b"line\nbreak\r", b"\x01", b"\x011\x01t", b"\t\t\n\x01",
])
def test_tabescape_round_trip(value: bytes) -> None:
    escaped = tabescape(value)
    assert b"\t" not in escaped and b"\n" not in escaped and b"\r" not in escaped
    assert tabunescape(escaped) == value


def test_tabescape_wire_forms() -> None:
    # The byte pairs of Dovecot's str_append_tabescaped().
    assert tabescape(b"\x01\t\r\n") == b"\x011\x01t\x01r\x01n"
    assert tabunescape(b"a\x010b") == b"a\0b"  # 2.4's NUL
    assert tabunescape(b"a\x01xb") == b"axb"  # any other byte stands for itself
    assert tabunescape(b"a\x01") == b"a"
    assert split_fields(b"") == []
    assert split_fields(b"k\x01tey\tuser") == [b"k\tey", b"user"]
    assert join_fields([b"a\tb", b"c"]) == b"a\x01tb\tc"


def test_home_template() -> None:
    assert expand_home("/var/vmail/%d/%n", "alice@example.com") == "/var/vmail/example.com/alice"
    assert expand_home("/m/%u/%%/%x", "a@b.c") == "/m/a@b.c/%/%x"
    # A slash in a local part cannot reach into another mailbox's folder.
    assert expand_home("/v/%d/%n", "a/Maildir@b.c") == "/v/b.c/a%2FMaildir"
    assert expand_home("/v/%d/%n", "a%2F@b.c") == "/v/b.c/a%252F"


# --- lookups -------------------------------------------------------------------------------------


async def test_passdb_and_userdb_lookups(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    alice, alice_user, upper, nobody = await client.ask(
        b"Lshared/passdb/alice@example.com\talice@example.com",
        b"Lshared/userdb/alice@example.com\talice@example.com",
        b"Lshared/passdb/ALICE@Example.COM\tALICE@Example.COM",
        b"Lshared/passdb/nobody@example.com\tnobody@example.com",
    )
    assert found(alice) == {"password": "{SHA512-CRYPT}$6$salt$hash"}
    assert found(alice_user) == {
        "uid": 5000, "gid": 5001, "home": "/var/vmail/example.com/alice",
        "quota_rule": "*:bytes=1000000",
    }
    # Case-insensitive; the stored name comes back as `user`.
    assert found(upper) == {"password": "{SHA512-CRYPT}$6$salt$hash", "user": "alice@example.com"}
    assert nobody == b"N"
    await client.close()


async def test_alias_domain_login_is_renamed(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    passdb, userdb = await client.ask(
        b"Lshared/passdb/bob@alias.example\tbob@alias.example",
        b"Lshared/userdb/bob@alias.example\tbob@alias.example",
    )
    assert found(passdb) == {"password": "{SSHA512}abc", "user": "bob@example.com"}
    assert found(userdb) == {
        "uid": 5000, "gid": 5001, "home": "/var/vmail/example.com/bob", "user": "bob@example.com",
    }
    await client.close()


async def test_inactive_mailbox_or_domain_gets_nologin_with_a_reason(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    carol, dave, carol_user = await client.ask(
        b"Lshared/passdb/carol@example.com\tcarol@example.com",
        b"Lshared/passdb/dave@off.example\tdave@off.example",
        b"Lshared/userdb/carol@example.com\tcarol@example.com",
    )
    assert found(carol) == {
        "password": "{SSHA512}def", "nologin": "y", "fail": "y",
        "reason": "This mailbox is disabled.",
    }
    assert found(dave)["reason"] == "This mail domain is disabled."
    # The userdb still says where its mail is (quota 0: unlimited, no rule).
    assert found(carol_user) == {"uid": 5000, "gid": 5001, "home": "/var/vmail/example.com/carol"}
    await client.close()


async def test_no_snapshot_unknown_key_and_bad_login_answers(
    server: DictServer, holder: SnapshotHolder
) -> None:
    client = await Client.connect(server, V3_AUTH)
    unknown_key, not_utf8 = await client.ask(
        b"Lshared/other/alice@example.com\talice@example.com",
        b"Lshared/passdb/\xff@example.com\tx",
    )
    assert unknown_key.startswith(b"F")  # a configuration mistake is not "unknown user"
    assert not_utf8 == b"N"
    holder.current = None
    (reply,) = await client.ask(b"Lshared/passdb/alice@example.com\talice@example.com")
    assert reply == b"Fmail data not loaded yet"
    await client.close()


async def test_an_exception_in_a_lookup_is_a_temporary_failure(
    server: DictServer, holder: SnapshotHolder, metrics: LookupdMetrics
) -> None:
    class Broken:
        def mailbox(self, email: str) -> None:
            raise RuntimeError("boom")

    holder.current = Broken()  # type: ignore[assignment]
    client = await Client.connect(server, V3_AUTH)
    (reply,) = await client.ask(b"Lshared/passdb/alice@example.com\talice@example.com")
    assert reply == b"Finternal error"
    await client.close()
    assert b'reason="exception"' in metrics.exposition()


async def test_handshakes_of_every_protocol_version(server: DictServer, quota: Recorder) -> None:
    # 2.3.0–2.3.16: the user is in the handshake, commands carry none.
    v2 = await Client.connect(server, b"H2\t1\t0\tbob@example.com\tauth")
    (reply,) = await v2.ask(b"Lshared/passdb/alice@example.com")
    assert found(reply)["password"].startswith("{SHA512-CRYPT}")
    # 2.4.
    v4 = await Client.connect(server, b"H4\t0\t0\t\tauth")
    (reply,) = await v4.ask(b"Lshared/userdb/bob@example.com\tbob@example.com")
    assert found(reply)["home"] == "/var/vmail/example.com/bob"
    # quota_clone on 2.3.16: its user comes from the handshake.
    q2 = await Client.connect(server, b"H2\t1\t0\tBob@Example.com\tquota")
    (reply,) = await q2.ask(b"B1\nS1\tpriv/quota/storage\t100\nS1\tpriv/quota/messages\t3\nC1")
    assert reply == b"O1"
    assert quota.accepted[-1][0] == "bob@example.com"
    assert (quota.accepted[-1][1].bytes, quota.accepted[-1][1].messages) == (100, 3)
    for client in (v2, v4, q2):
        await client.close()


async def test_pipelined_commands_are_answered_in_order(server: DictServer) -> None:
    client = await Client.connect(server)
    lines = [V3_AUTH]
    expected = []
    for n in range(200):
        if n % 3 == 0:
            lines.append(b"Lshared/passdb/nobody%d@example.com\tx" % n)
            expected.append(b"N")
        else:
            lines.append(b"Lshared/userdb/bob@example.com\tbob@example.com")
            expected.append(b"O")
    client.writer.write(b"\n".join(lines) + b"\n")
    replies = [await client.line() for _ in expected]
    assert [reply[:1] for reply in replies] == expected
    await client.close()


async def test_iteration_lists_every_mailbox_then_later_commands(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    # As `doveadm user '*'` sends it, with a lookup pipelined behind.
    client.send(b"I0\t0\tshared/userdb/\t*", b"Lshared/passdb/nobody@example.com\tx")
    rows = []
    while (row := await client.line()) != b"":
        rows.append(row)
    assert await client.line() == b"N"  # the lookup's answer comes after the end of the rows
    keys = sorted(split_fields(row[1:])[0] for row in rows)
    assert keys == sorted(
        b"shared/userdb/" + email.encode()
        for email in ("alice@example.com", "bob@example.com", "carol@example.com",
                      "dave@off.example", "a/maildir@example.com")
    )
    values = {split_fields(row[1:])[0]: split_fields(row[1:])[1] for row in rows}
    assert json.loads(values[b"shared/userdb/alice@example.com"])["uid"] == 5000

    # NO_VALUE and SORT_BY_KEY with a row limit; EXACT_KEY.
    client.send(b"I10\t2\tshared/userdb/\t*", b"I16\t0\tshared/userdb/bob@example.com\t*")
    limited = [await client.line() for _ in range(3)]
    assert limited == [b"Oshared/userdb/a/maildir@example.com\t",
                       b"Oshared/userdb/alice@example.com\t", b""]
    exact = [await client.line() for _ in range(2)]
    assert exact[0].startswith(b"Oshared/userdb/bob@example.com\t{") and exact[1] == b""

    (unknown_path,) = await client.ask(b"I0\t0\tshared/passdb/\t*")
    assert unknown_path.startswith(b"F")
    await client.close()


async def test_large_iteration_keeps_other_connections_answered(tmp_path: Path) -> None:
    count = 20_000
    data = MailData(
        domains=[DomainRow(1, "big.example", True)], alias_domains=[], aliases=[],
        mailboxes=[
            MailboxRow(n, 1, f"user{n:06}@big.example", "{PLAIN}x", None, True)
            for n in range(1, count + 1)
        ],
    )
    snapshot = Snapshot.build(data)
    server = await start_dict_server(f"unix:{tmp_path / 'big.sock'}", lambda: snapshot)
    try:
        iterating = await Client.connect(server, V3_AUTH)
        other = await Client.connect(server, V3_AUTH)
        iterating.send(b"I0\t0\tshared/userdb/\t*")
        # While the rows stream (and the iterating client does not read), lookups go on.
        for _ in range(20):
            (reply,) = await other.ask(b"Lshared/passdb/user000001@big.example\tx")
            assert reply.startswith(b"O")
        rows = 0
        while await iterating.line() != b"":
            rows += 1
        assert rows == count
        await iterating.close()
        await other.close()
    finally:
        server.close()
        await server.wait_closed(timeout=1.0)


# --- quota_clone ---------------------------------------------------------------------------------


async def test_quota_clone_transactions(server: DictServer, quota: Recorder) -> None:
    client = await Client.connect(server, b"H3\t2\t0\t\tquota")
    # What quota_clone sends on 2.3.17+: the user on B, absolute values, commit.
    (reply,) = await client.ask(
        b"B7\talice@example.com\n"
        b"S7\tpriv/quota/storage\t12345\n"
        b"S7\tpriv/quota/messages\t42\n"
        b"C7"
    )
    assert reply == b"O7"
    email, usage = quota.accepted[-1]
    assert (email, usage.bytes, usage.messages) == ("alice@example.com", 12345, 42)

    # Increments, an unset, a rollback, 2.3's async commit; an alias-domain user is renamed.
    client.send(b"B8\tbob@alias.example", b"A8\tpriv/quota/storage\t-10",
                b"U8\tpriv/quota/messages", b"A8\tpriv/quota/messages\t2", b"T8\t1\t0")
    client.send(b"B9\tbob@example.com", b"S9\tpriv/quota/storage\t1", b"R9")
    (reply,) = await client.ask(b"D8")
    assert reply == b"AO8"
    email, usage = quota.accepted[-1]
    assert email == "bob@example.com"
    assert (usage.bytes, usage.bytes_delta, usage.messages, usage.messages_delta) == (
        None, -10, 0, 2
    )
    assert len(quota.accepted) == 2  # the rolled-back transaction left nothing

    # Anything but the two usage keys is refused, and nothing of it is kept.
    (reply,) = await client.ask(
        b"B10\talice@example.com\nS10\tpriv/quota/storage\t5\nS10\tpriv/other\tx\nC10"
    )
    assert reply.startswith(b"F10\t")
    (reply,) = await client.ask(b"B11\talice@example.com\nS11\tpriv/quota/storage\tlots\nC11")
    assert reply.startswith(b"F11\t")
    (reply,) = await client.ask(b"B12\t\nS12\tpriv/quota/storage\t5\nC12")
    assert reply.startswith(b"F12\t")  # no user
    (reply,) = await client.ask(b"Lpriv/quota/storage\talice@example.com")
    assert reply.startswith(b"F")
    assert len(quota.accepted) == 2
    await client.close()


async def test_auth_dict_is_read_only(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    (reply,) = await client.ask(b"B1\t\nS1\tshared/passdb/x\ty\nC1")
    assert reply.startswith(b"F1\t")
    await client.close()


# --- bad clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", [
    [b"Lshared/passdb/alice@example.com\tx"],  # no handshake
    [b"H9\t0\t0\t\tauth"],  # unknown major version
    [b"H3\t2\t0\t\tacl"],  # unknown dict name
    [b"H3\t2"],  # malformed handshake
    [V3_AUTH, b"Zwhat"],  # unknown command
    [V3_AUTH, b""],  # empty line
    [V3_AUTH, b"Ix\t0\tshared/userdb/\t*"],  # malformed iteration
    [V3_AUTH, b"S1\tpriv/quota/storage\t1"],  # a transaction that was never begun
    [V3_AUTH, b"B1\t", b"B1\t"],  # a transaction id begun twice
    [V3_AUTH, b"B1\t", b"A1\tpriv/quota/storage\tten"],  # a bad increment
    [V3_AUTH, b"C"],  # a commit without an id
])
async def test_bad_input_closes_that_connection_only(
    server: DictServer, lines: list[bytes], metrics: LookupdMetrics
) -> None:
    good = await Client.connect(server, V3_AUTH)
    bad = await Client.connect(server)
    bad.send(*lines)
    assert await bad.closed_by_server()
    (reply,) = await good.ask(b"Lshared/passdb/alice@example.com\talice@example.com")
    assert reply.startswith(b"O")
    await good.close()
    await bad.close()
    assert b"dinomail_lookupd_client_errors_total" in metrics.exposition()


async def test_oversized_line_closes_the_connection(server: DictServer) -> None:
    good = await Client.connect(server, V3_AUTH)
    bad = await Client.connect(server, V3_AUTH)
    # A line just under the limit is answered; one over it (even before its end) closes.
    (reply,) = await bad.ask(b"Lshared/passdb/" + b"a" * (MAX_LINE_BYTES - 20) + b"@x\tx")
    assert reply == b"N"
    bad.writer.write(b"Lshared/passdb/" + b"a" * (MAX_LINE_BYTES + 10))
    assert await bad.closed_by_server()
    (reply,) = await good.ask(b"Lshared/passdb/bob@example.com\tbob@example.com")
    assert reply.startswith(b"O")
    await good.close()
    await bad.close()


# --- connections ---------------------------------------------------------------------------------


async def test_many_concurrent_and_short_connections(server: DictServer) -> None:
    async def persistent(n: int) -> None:
        client = await Client.connect(server, V3_AUTH)
        for _ in range(20):
            (reply,) = await client.ask(b"Lshared/passdb/bob@example.com\tbob@example.com")
            assert reply.startswith(b"O")
        await client.close()

    async def one_lookup_per_connection(n: int) -> None:
        # Dovecot's default (idle_msecs=0): connect, handshake, one lookup, close.
        for _ in range(5):
            client = await Client.connect(server, V3_AUTH)
            (reply,) = await client.ask(b"Lshared/userdb/alice@example.com\talice@example.com")
            assert reply.startswith(b"O")
            await client.close()

    await asyncio.gather(*(persistent(n) for n in range(60)),
                         *(one_lookup_per_connection(n) for n in range(60)))


async def test_shutdown_answers_what_was_sent_then_closes(server: DictServer) -> None:
    client = await Client.connect(server, V3_AUTH)
    await asyncio.sleep(0.05)  # accepted: shutdown concerns connections, not the backlog
    client.send(b"Lshared/passdb/alice@example.com\tx")
    await client.writer.drain()
    server.close()
    assert (await client.line()).startswith(b"O")
    assert await client.closed_by_server()
    await server.wait_closed(timeout=2.0)
    assert len(server.connections) == 0


async def test_metrics_count_lookups_by_kind_and_result(
    server: DictServer, metrics: LookupdMetrics, holder: SnapshotHolder
) -> None:
    client = await Client.connect(server, V3_AUTH)
    await client.ask(b"Lshared/passdb/alice@example.com\tx", b"Lshared/userdb/nobody@x.y\tx")
    holder.current = None
    await client.ask(b"Lshared/passdb/alice@example.com\tx")
    await client.close()
    text = metrics.exposition().decode()
    line = 'dinomail_lookupd_lookups_total{map="%s",protocol="dovecot_dict",result="%s"} 1.0'
    assert line % ("passdb", "ok") in text
    assert line % ("userdb", "notfound") in text
    assert line % ("passdb", "temp") in text
    assert 'dinomail_lookupd_lookup_seconds_count{protocol="dovecot_dict"}' in text


# --- HTTP endpoints for the Lua driver -----------------------------------------------------------


def http_client(app: object, client_host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_host, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://lookupd")


async def test_http_passdb_and_userdb(holder: SnapshotHolder, metrics: LookupdMetrics) -> None:
    app = create_http_app(holder, metrics, userdb=USERDB)
    async with http_client(app) as client:
        alice = await client.get("/dovecot/passdb/Alice@Example.com")
        assert alice.status_code == 200
        assert alice.json() == {
            "password": "{SHA512-CRYPT}$6$salt$hash", "user": "alice@example.com",
        }
        carol = (await client.get("/dovecot/passdb/carol@example.com")).json()
        assert carol["nologin"] == "y" and carol["reason"]
        user = await client.get("/dovecot/userdb/alice@example.com")
        assert user.json()["quota_rule"] == "*:bytes=1000000"
        user24 = await client.get("/dovecot/userdb/alice@example.com?dovecot=2.4")
        assert user24.json()["quota_storage_size"] == 1_000_000
        assert "quota_rule" not in user24.json()
        slash = await client.get("/dovecot/userdb/a%2Fmaildir@example.com")
        assert slash.json()["home"] == "/var/vmail/example.com/a%2Fmaildir"
        assert (await client.get("/dovecot/passdb/nobody@example.com")).status_code == 404
        users = await client.get("/dovecot/users")
        assert sorted(users.json()) == sorted([
            "alice@example.com", "bob@example.com", "carol@example.com", "dave@off.example",
            "a/maildir@example.com",
        ])
        holder.current = None
        for path in ("/dovecot/passdb/alice@example.com", "/dovecot/userdb/alice@example.com",
                     "/dovecot/users"):
            assert (await client.get(path)).status_code == 503
    text = metrics.exposition().decode()
    line = 'dinomail_lookupd_lookups_total{map="passdb",protocol="dovecot_http",result="ok"}'
    assert line in text


async def test_http_endpoints_are_loopback_only_unless_a_secret_is_set(
    holder: SnapshotHolder, metrics: LookupdMetrics
) -> None:
    app = create_http_app(holder, metrics)
    async with http_client(app, "192.0.2.7") as remote:
        assert (await remote.get("/dovecot/passdb/alice@example.com")).status_code == 403
        assert (await remote.get("/dovecot/users")).status_code == 403
        assert (await remote.get("/healthz")).status_code == 200
    async with http_client(app, "::1") as local:
        assert (await local.get("/dovecot/passdb/alice@example.com")).status_code == 200

    secret = "s3cret-s3cret-s3cret"
    app = create_http_app(holder, LookupdMetrics(), dovecot_secret=secret)
    async with http_client(app, "192.0.2.7") as remote:
        url = "/dovecot/passdb/alice@example.com"
        assert (await remote.get(url)).status_code == 403
        assert (await remote.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 403
        assert (await remote.get(
            url, headers={"Authorization": f"Bearer {secret}"}
        )).status_code == 200
    async with http_client(app, "127.0.0.1") as local:
        assert (await local.get(url)).status_code == 403  # once set, required from everyone
