"""MTA-STS policy hosting: the document served at `mta-sts.<domain>` (RFC 8461 section 3.2,
byte for byte), nothing else on that host, the policy id that follows every change, the API
with its tenant scope, and the DNS check of the served policy against the `_mta-sts` record and
the MX (against a real DNS server)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from dinomail import mtasts
from dinomail.dnscheck import CheckStatus, run_now
from dinomail.dnscheck.checks import check_mta_sts
from dinomail.dnscheck.resolver import Resolver
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store
from dinomail.store import mtasts as mtasts_store
from tests.support.adminapi import (
    HOST,
    add_admin,
    add_domain,
    api_client,
    api_settings,
    fast_admin_hashing,
)
from tests.support.dns import DnsServer, address, mx, running_dns, txt

MAIL_HOST = "mail.sts.test"
# RFC 8461 section 3.2: exactly these keys, `key: value`, CRLF after every line.
LINE = re.compile(r"(version|mode|mx|max_age): [^\r\n]+")


def parse_policy(body: bytes) -> list[tuple[str, str]]:
    text = body.decode("ascii")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    assert all(LINE.fullmatch(line) for line in lines), lines
    return [tuple(line.split(": ", 1)) for line in lines]  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


def test_policy_text_and_patterns() -> None:
    policy = mtasts.Policy("enforce", ("mail.example.org", "*.mx.example.org"), 86400)
    assert policy.text() == ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\n"
                             "mx: *.mx.example.org\r\nmax_age: 86400\r\n")
    assert re.fullmatch(r"[0-9a-f]{20}", policy.policy_id)
    assert mtasts.txt_record(policy) == f"v=STSv1; id={policy.policy_id}"
    assert mtasts.Policy("testing", policy.mx, 86400).policy_id != policy.policy_id
    assert mtasts.matches("*.mx.example.org", "a.mx.example.org")
    assert not mtasts.matches("*.mx.example.org", "a.b.mx.example.org")
    assert not mtasts.matches("*.mx.example.org", "mx.example.org")
    assert mtasts.unmatched_hosts(policy.mx, ["MAIL.example.org.", "other.example"]) == \
        ["other.example"]
    assert mtasts.normalize_patterns("Mail.Example.org, *.MX.example.org mail.example.org") == \
        ("mail.example.org", "*.mx.example.org")
    assert mtasts.domain_of_host("MTA-STS.Example.org:443") == "example.org"
    assert mtasts.domain_of_host("example.org") is None


async def test_policy_served_on_the_mta_sts_host_only(store: Store) -> None:
    domain = await add_domain(store, "example.org")
    await add_domain(store, "nopolicy.org")
    root = await add_admin(store, "root", superadmin=True)
    url = f"/api/virtualdomain/{domain['id']}/mta-sts/"
    sts_host = {"Host": "mta-sts.example.org"}
    async with api_client(store, api_settings(MX_HOST=MAIL_HOST)) as client:
        shown = (await client.get(url, headers=root.headers)).json()
        assert shown["published"] is False and shown["default_mx"] == [MAIL_HOST]
        assert (await client.get(mtasts.POLICY_PATH, headers=sts_host)).status_code == 404

        answer = await client.put(url, json={"mode": "enforce", "max_age": 86400},
                                  headers=root.headers)
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        assert shown["published"] is True and shown["effective_mx"] == [MAIL_HOST]
        assert shown["record_name"] == "_mta-sts.example.org"
        assert shown["txt_record"] == f"v=STSv1; id={shown['policy_id']}"

        served = await client.get(mtasts.POLICY_PATH, headers=sts_host)
        assert served.status_code == 200
        assert served.headers["content-type"] == "text/plain; charset=utf-8"
        assert parse_policy(served.content) == [
            ("version", "STSv1"), ("mode", "enforce"), ("mx", MAIL_HOST), ("max_age", "86400")]
        assert served.text == shown["text"]
        # Nothing else of the admin site on that host, whatever the path or method.
        for path in ("/", "/api/", "/login", "/metrics", "/.well-known/mta-sts.txt/x",
                     "/static/style.css"):
            other = await client.get(path, headers=sts_host)
            assert other.status_code == 404, path
            assert "DinoMail" not in other.text
        assert (await client.post(mtasts.POLICY_PATH, headers=sts_host)).status_code == 405
        # A domain without a policy, an unknown domain: 404 (not the host check's 400).
        for host in ("mta-sts.nopolicy.org", "mta-sts.unknown.example"):
            assert (await client.get(mtasts.POLICY_PATH,
                                     headers={"Host": host})).status_code == 404
        # Other hosts still go through ALLOWED_HOSTS.
        assert (await client.get("/api/", headers={"Host": "evil.example"})).status_code == 400
        assert (await client.get("/healthz")).status_code == 200

        # A new mode is a new document and a new id.
        changed = (await client.patch(url, json={"mode": "testing", "mx": ["*.sts.test"]},
                                      headers=root.headers)).json()
        assert changed["policy_id"] != shown["policy_id"]
        assert changed["txt_record"] == f"v=STSv1; id={changed['policy_id']}"
        served = await client.get(mtasts.POLICY_PATH, headers=sts_host)
        assert ("mode", "testing") in parse_policy(served.content)
        assert ("mx", "*.sts.test") in parse_policy(served.content)
        # Saving the same policy again keeps the id.
        same = (await client.put(url, json={"mode": "testing"}, headers=root.headers)).json()
        assert same["policy_id"] == changed["policy_id"]

        for bad, field in (({"mode": "strict"}, "mode"), ({"max_age": -1}, "max_age"),
                           ({"mx": ["not a host"]}, "mx"), ({"colour": 1}, "colour")):
            refused = await client.patch(url, json=bad, headers=root.headers)
            assert refused.status_code == 400 and refused.json()["field"] == field, bad

        assert (await client.delete(url, headers=root.headers)).status_code == 204
        assert (await client.get(mtasts.POLICY_PATH, headers=sts_host)).status_code == 404


async def test_no_default_mx_needs_patterns(store: Store) -> None:
    domain = await add_domain(store, "bare.org")
    root = await add_admin(store, "root", superadmin=True)
    url = f"/api/virtualdomain/{domain['id']}/mta-sts/"
    async with api_client(store) as client:
        refused = await client.put(url, json={"mode": "enforce"}, headers=root.headers)
        assert refused.status_code == 400 and refused.json()["field"] == "mx"
        none = await client.put(url, json={"mode": "none"}, headers=root.headers)
        assert none.status_code == 200
        served = await client.get(mtasts.POLICY_PATH, headers={"Host": "mta-sts.bare.org"})
        assert parse_policy(served.content) == [
            ("version", "STSv1"), ("mode", "none"), ("max_age", str(mtasts.DEFAULT_MAX_AGE))]


async def test_a_domain_admin_sees_only_their_policies(store: Store) -> None:
    mine = await add_domain(store, "mine.org")
    theirs = await add_domain(store, "theirs.org")
    admin = await add_admin(store, "admin", domain_ids=(mine["id"],))
    reader = await add_admin(store, "reader", domain_ids=(mine["id"],), read_only=True)
    body = {"mode": "testing", "mx": ["mail.mine.org"]}
    async with api_client(store) as client:
        ok = await client.put(f"/api/virtualdomain/{mine['id']}/mta-sts/", json=body,
                              headers=admin.headers)
        assert ok.status_code == 200
        for pk in (theirs["id"], 999999):
            for method in ("GET", "PUT", "DELETE"):
                answer = await client.request(
                    method, f"/api/virtualdomain/{pk}/mta-sts/", headers=admin.headers,
                    json=body if method == "PUT" else None)
                assert answer.status_code == 404, (pk, method)
        refused = await client.put(f"/api/virtualdomain/{mine['id']}/mta-sts/", json=body,
                                   headers=reader.headers)
        assert refused.status_code == 403


# --- the DNS check of the served policy -----------------------------------------------------------

GOOD = mtasts.Policy("enforce", (MAIL_HOST,), 86400)


@pytest.fixture(scope="module")
def sts_dns() -> Iterator[DnsServer]:
    records = [
        # agree.test: the record carries the served id, the MX matches the pattern.
        txt("_mta-sts.agree.test", f"v=STSv1; id={GOOD.policy_id}"),
        address("mta-sts.agree.test", "127.0.0.10"),
        mx("agree.test", MAIL_HOST),
        # stale.test: an old id in the record, and an MX the policy does not name.
        txt("_mta-sts.stale.test", "v=STSv1; id=20240101000000"),
        address("mta-sts.stale.test", "127.0.0.10"),
        mx("stale.test", MAIL_HOST, 10),
        mx("stale.test", "backup.elsewhere.test", 20),
        # unannounced.test: a policy served, no record.
        mx("unannounced.test", MAIL_HOST),
        address(MAIL_HOST, "127.0.0.10"),
    ]
    with running_dns(records, local=["agree.test", "stale.test", "unannounced.test",
                                     "sts.test"]) as server:
        yield server


async def test_dns_check_compares_policy_record_and_mx(sts_dns: DnsServer) -> None:
    resolver = Resolver([sts_dns.nameserver], 1.0)
    agree = await check_mta_sts(resolver, "agree.test", GOOD)
    assert agree.status == CheckStatus.OK and agree.data["mx_hosts"] == [MAIL_HOST]

    stale = await check_mta_sts(resolver, "stale.test", GOOD)
    assert stale.status == CheckStatus.MISMATCH
    assert any("20240101000000" in problem and GOOD.policy_id in problem
               for problem in stale.problems)
    assert any("backup.elsewhere.test" in problem and "will not deliver" in problem
               for problem in stale.problems)

    unannounced = await check_mta_sts(resolver, "unannounced.test", GOOD)
    assert unannounced.status == CheckStatus.MISSING
    assert unannounced.expected.endswith(mtasts.txt_record(GOOD))
    # Without a served policy, the record alone is checked, as before.
    assert (await check_mta_sts(resolver, "stale.test")).status == CheckStatus.OK


async def test_dns_check_of_a_stored_policy(store: Store, sts_dns: DnsServer) -> None:
    settings = Settings(DNS_RESOLVERS=(sts_dns.nameserver,), DNS_TIMEOUT=1.0, MX_HOST=MAIL_HOST,
                        ALLOWED_HOSTS=(HOST,))
    domain = await add_domain(store, "stale.test")
    async with store.write() as conn:
        await mtasts_store.save(conn, "test", EVERYTHING, domain["id"],
                                {"mode": "enforce", "max_age": 86400}, MAIL_HOST)
    report = await run_now(store, settings, EVERYTHING, domain["id"])
    check = report.check("mta_sts")
    assert check is not None and check.status == CheckStatus.MISMATCH
    assert check.data["served_id"] == GOOD.policy_id
    assert "backup.elsewhere.test" in " ".join(check.problems)
