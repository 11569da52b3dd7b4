"""The DNS checks against a real DNS server (dnsmasq on a loopback port) serving zones with
right, wrong, missing and broken records, and a zone whose server never answers.

Then what is built on them: storing results and the original status columns, the background
checker, the metrics, and the API (`/api/virtualdomain/<id>/dnscheck/`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.exposition import generate_latest

from adminapi.app import create_app
from dinomail import dkim
from dinomail.dnscheck import CheckStatus, read_report, request_run, run_now
from dinomail.dnscheck import refresher as refresher_module
from dinomail.dnscheck.checks import (
    CheckInputs,
    check_dkim,
    check_dmarc,
    check_domain,
    check_mx,
    check_spf,
)
from dinomail.dnscheck.model import CHECK_NAMES, CheckResult
from dinomail.dnscheck.resolver import Resolver
from dinomail.schema import changelog
from dinomail.settings import Settings
from dinomail.store import EVERYTHING, Store, domains
from dinomail.store import dns as dns_store
from tests.support.adminapi import HOST, Account, add_admin, add_domain, fast_admin_hashing
from tests.support.dns import (
    DnsServer,
    address,
    cname,
    mx,
    running_dns,
    srv,
    txt,
    unused_nameserver,
)

# Short, so the zone that never answers costs little; dnsmasq answers the others in < 1 ms.
TIMEOUT = 0.5
MAIL_HOST = "mail.good.test"


@dataclass(frozen=True)
class Zones:
    server: DnsServer
    good_key: dkim.KeyPair
    ed_key: dkim.KeyPair

    @property
    def resolver(self) -> Resolver:
        return Resolver([self.server.nameserver], TIMEOUT)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"DNS_RESOLVERS": (self.server.nameserver,),
                                  "DNS_TIMEOUT": TIMEOUT, "MX_HOST": MAIL_HOST,
                                  "ALLOWED_HOSTS": (HOST,)}
        return Settings(**(values | overrides))


def _dkim_record(name: str, pair: dkim.KeyPair) -> str:
    return txt(name, *dkim.split_txt(dkim.record_text(pair.algorithm, pair.public_value)))


@pytest.fixture(scope="module")
def zones() -> Iterator[Zones]:
    good, wrong, ed = dkim.generate_key(), dkim.generate_key(), dkim.generate_key("ed25519")
    records = [
        # good.test: every record right.
        _dkim_record("s1._domainkey.good.test", good),
        txt("good.test", "v=spf1 mx a:mail.good.test include:_spf.good.test -all"),
        txt("good.test", "site-verification=not-an-spf-record"),
        txt("_spf.good.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"),
        txt("_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test,"
            "mailto:copy@good.test; adkim=s"),
        mx("good.test", MAIL_HOST, 10),
        address(MAIL_HOST, "127.0.0.10"),
        txt("_mta-sts.good.test", "v=STSv1; id=20261125"),
        address("mta-sts.good.test", "127.0.0.10"),
        txt("_smtp._tls.good.test", "v=TLSRPTv1; rua=mailto:tls@good.test"),
        cname("autoconfig.good.test", MAIL_HOST),
        srv("_autodiscover._tcp.good.test", MAIL_HOST, 443),
        # wrong.test: valid records saying other things, and duplicates.
        _dkim_record("s1._domainkey.wrong.test", wrong),
        txt("wrong.test", "v=spf1 -all"),
        txt("wrong.test", "v=spf1 mx -all"),
        txt("_dmarc.wrong.test", "v=DMARC1; p=bogus"),
        mx("wrong.test", "mx.elsewhere.example", 10),
        txt("_mta-sts.wrong.test", "v=STSv1; id=not-valid!"),
        txt("_smtp._tls.wrong.test", "v=TLSRPTv1"),
        address("autodiscover.wrong.test", "127.0.0.11"),
        # broken.test: syntax errors.
        txt("s1._domainkey.broken.test", "v=DKIM1; k=rsa; p=this is not base64!"),
        txt("s2._domainkey.broken.test", "v=DKIM1; k=rsa"),
        txt("broken.test", "v=spf1 ip4:999.0.0.1 foo:bar ~all"),
        txt("_dmarc.broken.test", "p=reject; v=DMARC1"),
        mx("broken.test", "mx1.elsewhere.example", 10),
        mx("broken.test", "mail.good.test", 20),
        # lookups.test: a valid SPF record costing more than 10 lookups; DMARC that only monitors.
        txt("lookups.test", "v=spf1 a mx include:l1.lookups.test include:l2.lookups.test ~all"),
        txt("l1.lookups.test",
            "v=spf1 a mx ptr exists:%{i}.x.lookups.test include:l3.lookups.test -all"),
        txt("l2.lookups.test", "v=spf1 a mx a:x.lookups.test -all"),
        txt("l3.lookups.test", "v=spf1 a mx -all"),
        txt("_dmarc.lookups.test", "v=DMARC1; p=none"),
        txt("badinclude.lookups.test", "v=spf1 include:nothing.lookups.test -all"),
        txt("halfslow.lookups.test", "v=spf1 include:_spf.slow.test -all"),
        # ed.test: an Ed25519 key.
        _dkim_record("s1._domainkey.ed.test", ed),
    ]
    local = ["good.test", "wrong.test", "missing.test", "broken.test", "lookups.test", "ed.test"]
    with running_dns(records, local=local, silent=["slow.test"]) as server:
        yield Zones(server, good, ed)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.check: result for result in results}


# --- each check against the server ----------------------------------------------------------------


async def test_good_zone(zones: Zones) -> None:
    inputs = CheckInputs("good.test", "s1", zones.good_key.public_value, MAIL_HOST)
    results = by_name(await check_domain(zones.resolver, inputs))
    assert list(results) == list(CHECK_NAMES)
    assert {name: result.status for name, result in results.items()} == {
        name: CheckStatus.OK for name in CHECK_NAMES}

    dkim_result = results["dkim"]
    assert dkim_result.queries[0].name == "s1._domainkey.good.test"
    # The 2048-bit key was published as two strings; the check joined them.
    assert dkim_result.data["strings"] == [255, 155]
    assert dkim_result.data["key_bits"] == 2048 and dkim_result.problems == []
    assert dkim_result.found == f"p={zones.good_key.public_value}"

    spf = results["spf"]
    assert spf.found == "v=spf1 mx a:mail.good.test include:_spf.good.test -all"
    assert spf.data["lookups"] == 3 and spf.data["followed"] == ["_spf.good.test"]
    assert [query.name for query in spf.queries] == ["good.test", "_spf.good.test"]
    assert len(spf.queries[0].records) == 2  # the other TXT record was seen and left aside

    dmarc = results["dmarc"]
    assert dmarc.data["policy"] == "reject" and dmarc.data["percent"] == 100
    assert dmarc.data["reports_to"] == ["mailto:dmarc@good.test", "mailto:copy@good.test"]

    assert results["mx"].expected == f"an MX record naming {MAIL_HOST}"
    assert results["mx"].data["exchanges"] == [{"preference": 10, "host": MAIL_HOST}]
    assert results["mta_sts"].data["id"] == "20261125"
    assert results["autoconfig"].found == f"127.0.0.10 (through the CNAME {MAIL_HOST})"
    assert results["autodiscover"].found == f"{MAIL_HOST}:443"


async def test_wrong_zone(zones: Zones) -> None:
    inputs = CheckInputs("wrong.test", "s1", zones.good_key.public_value, MAIL_HOST)
    results = by_name(await check_domain(zones.resolver, inputs))
    assert {name: result.status for name, result in results.items()} == {
        "dkim": CheckStatus.MISMATCH, "spf": CheckStatus.INVALID, "dmarc": CheckStatus.INVALID,
        "mx": CheckStatus.MISMATCH, "mta_sts": CheckStatus.INVALID,
        "tls_rpt": CheckStatus.INVALID, "autoconfig": CheckStatus.MISSING,
        "autodiscover": CheckStatus.OK,
    }
    assert "not the domain's key" in results["dkim"].problems[0]
    assert results["dkim"].expected.endswith(zones.good_key.public_value)
    assert "2 SPF records" in results["spf"].summary
    assert "p=bogus" in results["dmarc"].problems[0]
    assert results["mx"].found == "10 mx.elsewhere.example."
    assert "id=not-valid!" in results["mta_sts"].problems[0]
    assert "rua" in results["tls_rpt"].problems[0]


async def test_missing_zone(zones: Zones) -> None:
    inputs = CheckInputs("missing.test", "s1", zones.good_key.public_value, MAIL_HOST)
    results = by_name(await check_domain(zones.resolver, inputs))
    assert {name: result.status for name, result in results.items()} == {
        "dkim": CheckStatus.MISSING, "spf": CheckStatus.MISSING, "dmarc": CheckStatus.MISSING,
        "mx": CheckStatus.MISSING, "mta_sts": CheckStatus.ABSENT,
        "tls_rpt": CheckStatus.ABSENT, "autoconfig": CheckStatus.MISSING,
        "autodiscover": CheckStatus.MISSING,
    }
    assert results["dkim"].queries[0].outcome == "nxdomain"
    assert [query.name for query in results["autodiscover"].queries] == [
        "autodiscover.missing.test", "autodiscover.missing.test",
        "_autodiscover._tcp.missing.test"]


async def test_broken_zone(zones: Zones) -> None:
    inputs = CheckInputs("broken.test", "s1", zones.good_key.public_value, MAIL_HOST)
    results = by_name(await check_domain(zones.resolver, inputs))
    assert results["dkim"].status is CheckStatus.INVALID
    assert results["dkim"].problems == ["p=: the key is not valid base64"]
    spf = results["spf"]
    assert spf.status is CheckStatus.INVALID
    assert any("999.0.0.1" in problem for problem in spf.problems)
    assert any("foo is not an SPF mechanism" in problem for problem in spf.problems)
    # v=DMARC1 not first: receivers do not see a DMARC record (the original's WRONGENTRY).
    assert results["dmarc"].status is CheckStatus.INVALID
    assert "does not start with v=DMARC1" in results["dmarc"].summary
    # The mail host is there, but only as the backup MX.
    assert results["mx"].status is CheckStatus.WARNING
    assert results["mx"].problems == [f"mail goes first to the MX with preference 10, not to "
                                      f"{MAIL_HOST}"]
    without_key = await check_dkim(zones.resolver, "broken.test", "s2",
                                   zones.good_key.public_value)
    assert without_key.status is CheckStatus.INVALID
    assert without_key.problems == ["the record has no p= tag (the public key)"]


async def test_spf_lookups_and_includes(zones: Zones) -> None:
    many = await check_spf(zones.resolver, "lookups.test")
    assert many.status is CheckStatus.WARNING
    # 4 here, 5 in l1 (with a macro exists: counted, not followed), 2 in l3, 3 in l2.
    assert many.data["lookups"] == 14
    assert many.data["followed"] == ["l1.lookups.test", "l3.lookups.test", "l2.lookups.test"]
    assert many.problems[0].startswith("evaluating the record costs 14 DNS lookups")
    assert any("ptr is slow" in problem for problem in many.problems)

    bad_include = await check_spf(zones.resolver, "badinclude.lookups.test")
    assert bad_include.status is CheckStatus.INVALID
    assert bad_include.problems == [
        "nothing.lookups.test has no SPF record: receivers fail SPF (permerror) there"]
    # The record itself was read, but an include's server did not answer: unknown count.
    half = await check_spf(zones.resolver, "halfslow.lookups.test")
    assert half.status is CheckStatus.COULD_NOT_CHECK
    assert half.found == "v=spf1 include:_spf.slow.test -all"
    assert half.queries[-1].outcome == "timeout"

    monitoring = await check_dmarc(zones.resolver, "lookups.test")
    assert monitoring.status is CheckStatus.WARNING and monitoring.data["policy"] == "none"


async def test_ed25519_and_unconfigured_dkim(zones: Zones) -> None:
    result = await check_dkim(zones.resolver, "ed.test", "s1", zones.ed_key.public_value)
    assert result.status is CheckStatus.OK
    assert (result.data["algorithm"], result.data["key_bits"]) == ("ed25519", 256)
    nothing = await check_dkim(zones.resolver, "good.test", "", "")
    assert nothing.status is CheckStatus.NOT_CONFIGURED and nothing.queries == []
    # The same key, folded differently in the domain's column, is still the same key.
    folded = " ".join(zones.good_key.public_value[i:i + 60]
                      for i in range(0, len(zones.good_key.public_value), 60))
    assert (await check_dkim(zones.resolver, "good.test", "s1", folded)).status is CheckStatus.OK


async def test_mx_without_an_expected_host(zones: Zones) -> None:
    result = await check_mx(zones.resolver, "good.test", "")
    assert result.status is CheckStatus.WARNING and result.found == f"10 {MAIL_HOST}."


async def test_a_server_that_does_not_answer_is_could_not_check(zones: Zones) -> None:
    inputs = CheckInputs("slow.test", "s1", zones.good_key.public_value, MAIL_HOST)
    started = asyncio.get_running_loop().time()
    results = await check_domain(zones.resolver, inputs)
    # The checks run side by side: one timeout's worth, not eight.
    assert asyncio.get_running_loop().time() - started < 4 * TIMEOUT
    for result in results:
        assert result.status is CheckStatus.COULD_NOT_CHECK, result.check
        assert result.queries[-1].outcome == "timeout"
        assert result.queries[-1].error == f"no answer within {TIMEOUT:g} s"
        assert "the record itself may be fine" in result.summary


async def test_no_resolver_at_all_is_could_not_check() -> None:
    # A loopback port where nothing listens: no answer, never a verdict on the record.
    resolver = Resolver([unused_nameserver()], TIMEOUT)
    result = await check_spf(resolver, "good.test")
    assert result.status is CheckStatus.COULD_NOT_CHECK


# --- stored results, the original columns, the background checker ---------------------------------


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _add_checked_domain(store: Store, zones: Zones, name: str, **extra: Any) -> int:
    domain = await add_domain(store, name, dkim_key_name="s1",
                              dkim_key=zones.good_key.public_value, **extra)
    return int(domain["id"])


async def _changelog_length(store: Store) -> int:
    async with store.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(changelog)))


async def test_results_are_stored_with_the_original_columns(store: Store, zones: Zones) -> None:
    settings = zones.settings()
    good = await _add_checked_domain(store, zones, "good.test")
    wrong = await _add_checked_domain(store, zones, "wrong.test")
    missing = await _add_checked_domain(store, zones, "missing.test")

    report = await run_now(store, settings, EVERYTHING, good)
    assert report.pending is False and report.checked_at is not None
    assert [result.status for result in report.checks] == [CheckStatus.OK] * len(CHECK_NAMES)
    assert (report.original["dkim_status"], report.original["dmarc_status"],
            report.original["spf_status"]) == (4, 2, 1)
    stored = await read_report(store, settings, EVERYTHING, good)
    assert stored.as_json() == report.as_json()
    assert stored.check("spf") is not None and stored.check("spf").data["lookups"] == 3

    for domain_id, expected in ((wrong, (3, 1, 0)), (missing, (1, 0, 0))):
        shown = await run_now(store, settings, EVERYTHING, domain_id)
        assert (shown.original["dkim_status"], shown.original["dmarc_status"],
                shown.original["spf_status"]) == expected

    # Checking again with nothing changed writes nothing to the mail tables (no lookupd wakes).
    logged = await _changelog_length(store)
    async with store.read() as conn:
        before = await domains.get(conn, EVERYTHING, good)
    await run_now(store, settings, EVERYTHING, good)
    assert await _changelog_length(store) == logged
    async with store.read() as conn:
        assert (await domains.get(conn, EVERYTHING, good))["dkim_last_update"] == \
            before["dkim_last_update"]


async def test_a_timeout_keeps_the_original_columns(store: Store, zones: Zones) -> None:
    settings = zones.settings()
    slow = await _add_checked_domain(store, zones, "slow.test")
    async with store.write() as conn:
        await domains.set_dns_status(conn, slow, {"dkim_status": 4, "dmarc_status": 2,
                                                  "spf_status": 1})
    report = await run_now(store, settings, EVERYTHING, slow)
    assert {result.status for result in report.checks} == {CheckStatus.COULD_NOT_CHECK}
    assert (report.original["dkim_status"], report.original["dmarc_status"],
            report.original["spf_status"]) == (4, 2, 1)
    async with store.read() as conn:
        rows = await dns_store.check_targets(conn, domain_ids=[slow])
    assert rows[0]["incomplete"] is True


async def test_the_background_checker(store: Store, zones: Zones) -> None:
    settings = zones.settings()
    refresher = refresher_module.DnsRefresher(store, settings)
    good = await _add_checked_domain(store, zones, "good.test")
    await _add_checked_domain(store, zones, "missing.test")
    # New domains are due; then nothing is, until something changes.
    assert await refresher.run_once() == 2
    assert await refresher.run_once() == 0
    # The domain's key changed (here as by hand): the fingerprint differs, it is due again.
    async with store.write() as conn:
        await domains.update(conn, "test", EVERYTHING, good, {"dkim_key": "changed"})
    assert (await read_report(store, settings, EVERYTHING, good)).pending is True
    assert await refresher.run_once() == 1
    report = await read_report(store, settings, EVERYTHING, good)
    assert report.pending is False and report.check("dkim").status is CheckStatus.MISMATCH
    # So does the expected MX host of the domain's client settings.
    async with store.write() as conn:
        await dns_store.update_client_config(conn, "test", EVERYTHING, good,
                                             {"mx_host": "other.good.test"})
    assert await refresher.run_once() == 1
    # Asked for: due at once, even with automatic checks off.
    off = refresher_module.DnsRefresher(store, dataclasses.replace(settings,
                                                                  DNS_CHECK_INTERVAL=0))
    assert await off.run_once() == 0
    await request_run(store, EVERYTHING, good)
    assert (await read_report(store, settings, EVERYTHING, good)).pending is True
    assert await off.run_once() == 1
    assert (await read_report(store, settings, EVERYTHING, good)).requested_at is None
    # Old results are due after the interval.
    aged = refresher_module.DnsRefresher(store, dataclasses.replace(settings,
                                                                   DNS_CHECK_INTERVAL=0.001))
    await asyncio.sleep(0.01)
    assert await aged.run_once() == 2


async def test_the_checker_wakes_after_a_write(
    store: Store, zones: Zones, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refresher_module, "QUIET", 0.01)
    settings = zones.settings()
    refresher = refresher_module.DnsRefresher(store, settings)
    refresher.start()
    try:
        await asyncio.sleep(0.05)
        domain_id = await _add_checked_domain(store, zones, "good.test")
        for _ in range(200):
            report = await read_report(store, settings, EVERYTHING, domain_id)
            if not report.pending:
                break
            await asyncio.sleep(0.02)
        assert report.pending is False and report.check("dkim").status is CheckStatus.OK
    finally:
        await refresher.stop()


# --- the API and the metrics ----------------------------------------------------------------------


@pytest.fixture
async def api(store: Store, zones: Zones) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(zones.settings(), store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
        yield client, app


async def test_dnscheck_api(
    api: tuple[httpx.AsyncClient, Any], store: Store, zones: Zones
) -> None:
    client, app = api
    root = await add_admin(store, "root", superadmin=True)
    good = await _add_checked_domain(store, zones, "good.test")
    await _add_checked_domain(store, zones, "missing.test")
    url = f"/api/virtualdomain/{good}/dnscheck/"

    never = (await client.get(url, headers=root.headers)).json()
    assert never["pending"] is True and never["checks"] == [] and never["checked_at"] is None
    asked = await client.post(url, headers=root.headers)
    assert asked.status_code == 202 and asked.json()["requested_at"] is not None
    # The app's own background checker does the work.
    assert await app.state.dns_refresher.run_once() == 2
    body = (await client.get(url, headers=root.headers)).json()
    assert body["pending"] is False and body["domain"] == f"/api/virtualdomain/{good}/"
    assert [check["name"] for check in body["checks"]] == list(CHECK_NAMES)
    assert {check["status"] for check in body["checks"]} == {"ok"}
    assert (body["dkim_status"], body["dmarc_status"], body["spf_status"]) == (4, 2, 1)
    dkim_check = body["checks"][0]
    assert dkim_check["queries"][0] == {
        "name": "s1._domainkey.good.test", "type": "TXT", "outcome": "answer",
        "records": [dkim.record_text("rsa", zones.good_key.public_value)], "error": None}
    key = (await client.get(f"/api/virtualdomain/{good}/dkim/", headers=root.headers)).json()
    assert key["check"] == dkim_check and key["dkim_status"] == 4

    metrics = generate_latest(app.state.metrics.registry).decode()
    assert 'dinomail_dns_check_domains{check="dkim",status="ok"} 1.0' in metrics
    assert 'dinomail_dns_check_domains{check="dkim",status="missing"} 1.0' in metrics
    assert 'dinomail_dns_checks_total{check="spf",status="ok"} 1.0' in metrics
    assert "dinomail_dns_check_last_pass_timestamp_seconds" in metrics
    served = (await client.get("/metrics")).text
    assert 'dinomail_dns_check_domains{check="mx",status="ok"} 1.0' in served

    # What the scan pages' buttons call: a check now, counted in the same metrics.
    report = await app.state.dns_refresher.check_now(EVERYTHING, good)
    assert report.pending is False and report.check("dkim").status is CheckStatus.OK
    metrics = generate_latest(app.state.metrics.registry).decode()
    assert 'dinomail_dns_checks_total{check="spf",status="ok"} 2.0' in metrics


async def test_dnscheck_api_rights(
    api: tuple[httpx.AsyncClient, Any], store: Store, zones: Zones
) -> None:
    client, _ = api
    mine = await _add_checked_domain(store, zones, "good.test")
    theirs = await _add_checked_domain(store, zones, "other.test")
    admin: Account = await add_admin(store, "admin", domain_ids=(mine,))
    reader = await add_admin(store, "reader", domain_ids=(mine,), read_only=True)
    assert (await client.get(f"/api/virtualdomain/{mine}/dnscheck/", headers=admin.headers)
            ).status_code == 200
    assert (await client.post(f"/api/virtualdomain/{mine}/dnscheck/", headers=admin.headers)
            ).status_code == 202
    assert (await client.post(f"/api/virtualdomain/{mine}/dnscheck/", headers=reader.headers)
            ).status_code == 403
    for method in ("GET", "POST"):
        answer = await client.request(method, f"/api/virtualdomain/{theirs}/dnscheck/",
                                      headers=admin.headers)
        assert answer.status_code == 404
    assert (await client.get(f"/api/virtualdomain/{mine}/dnscheck/")).status_code == 401
    # A parameter it does not know is ignored (a client's cache buster), as everywhere.
    assert (await client.get(f"/api/virtualdomain/{mine}/dnscheck/?_=1",
                             headers=admin.headers)).status_code == 200
