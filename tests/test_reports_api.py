"""Reports in the API (lists filtered by domain and dates, paging, details, stats, the set-aside
list) with the tenant scope, and the Prometheus metrics."""

from __future__ import annotations

import httpx
import pytest

from adminapi.app import create_app
from dinomail.reports.intake import receive
from dinomail.store import Store
from tests.support import reports as samples
from tests.support.adminapi import (
    add_admin,
    add_domain,
    api_client,
    api_settings,
    fast_admin_hashing,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


async def _fill(store: Store) -> None:
    await add_domain(store, "example.org")
    for build in samples.GOOD_REPORTS.values():
        await receive(store, build())
    await receive(store, samples.truncated_gzip())


async def test_report_lists_details_and_stats(store: Store) -> None:
    await _fill(store)
    other = await add_domain(store, "other.org")
    root = await add_admin(store, "root", superadmin=True)
    stranger = await add_admin(store, "stranger", domain_ids=(other["id"],))
    async with api_client(store) as client:
        listed = (await client.get("/api/dmarcreport/", headers=root.headers)).json()
        assert listed["meta"]["total_count"] == 3
        assert [item["org_name"] for item in listed["objects"]][-1] == "Outlook.com"
        first = listed["objects"][0]
        assert first["domain"] == "example.org" and first["date_begin"].startswith("2026-12-05")
        assert {item["org_name"]: (item["messages"], item["passed"])
                for item in listed["objects"]} == {
            "google.com": (127, 120), "Yahoo": (18, 15), "Outlook.com": (45, 42)}

        page = (await client.get("/api/dmarcreport/?limit=2&offset=0&domain=example.org",
                                 headers=root.headers)).json()
        assert len(page["objects"]) == 2 and "offset=2" in page["meta"]["next"]
        since = (await client.get("/api/dmarcreport/?since=2026-12-05",
                                  headers=root.headers)).json()
        assert since["meta"]["total_count"] == 2
        until = (await client.get("/api/dmarcreport/?until=2026-12-05T00:00:00Z",
                                  headers=root.headers)).json()
        assert [item["org_name"] for item in until["objects"]] == ["Outlook.com"]
        # The same moment written in another zone selects the same reports.
        shifted = (await client.get("/api/dmarcreport/?until=2026-12-05T02:00:00%2B02:00",
                                    headers=root.headers)).json()
        assert [item["org_name"] for item in shifted["objects"]] == ["Outlook.com"]
        far = await client.get("/api/dmarcreport/?since=0001-01-01T00:00:00%2B14:00",
                               headers=root.headers)
        assert far.status_code == 400 and far.json()["field"] == "since"

        detail = (await client.get(first["resource_uri"], headers=root.headers)).json()
        assert len(detail["records"]) >= 2 and "auth_results" in detail["records"][0]

        tls = (await client.get("/api/tlsreport/", headers=root.headers)).json()
        assert tls["meta"]["total_count"] == 2
        google = next(item for item in tls["objects"] if item["org_name"] == "Google Inc.")
        assert (google["successful_sessions"], google["failed_sessions"]) == (230, 4)
        assert google["policies"][0]["failures"][0]["result-type"] == "certificate-expired"

        stats = (await client.get("/api/reportstats/?domain=example.org",
                                  headers=root.headers)).json()
        assert [day["day"] for day in stats["dmarc_by_day"]] == ["2026-12-04", "2026-12-05"]
        assert stats["top_sources"][0]["source_ip"] == "192.0.2.10"
        assert stats["failing_sources"][0]["source_ip"] == "203.0.113.66"
        assert stats["tls_by_receiver"][0]["receiver"] == "Google Inc."

        rejects = (await client.get("/api/reportreject/", headers=root.headers)).json()
        assert rejects["meta"]["total_count"] == 1
        assert "truncated gzip" in rejects["objects"][0]["reason"]
        assert "raw" not in rejects["objects"][0]

        # A domain admin of another domain: nothing of example.org, and "not found" for it.
        assert (await client.get("/api/dmarcreport/", headers=stranger.headers)).json()[
            "meta"]["total_count"] == 0
        for url in ("/api/dmarcreport/?domain=example.org", first["resource_uri"],
                    google["resource_uri"], "/api/reportstats/?domain=example.org",
                    "/api/dmarcreport/?domain=nowhere.example", "/api/dmarcreport/99999/"):
            answer = await client.get(url, headers=stranger.headers)
            assert answer.status_code == 404, url
        stats = (await client.get("/api/reportstats/", headers=stranger.headers)).json()
        assert stats["dmarc_by_day"] == [] and stats["tls_by_receiver"] == []
        assert (await client.get("/api/reportreject/",
                                 headers=stranger.headers)).status_code == 403

        for url, field in (("/api/dmarcreport/?since=yesterday", "since"),
                           ("/api/dmarcreport/?limit=x", "limit"),
                           ("/api/reportstats/?domain=not%20a%20domain", "domain")):
            answer = await client.get(url, headers=root.headers)
            assert answer.status_code == 400 and answer.json()["field"] == field, url
        # Parameters the endpoint does not know are ignored, as everywhere in the API.
        plain = await client.get("/api/dmarcreport/", headers=root.headers)
        cache_busted = await client.get("/api/dmarcreport/?_=1733450000&colour=red",
                                        headers=root.headers)
        assert cache_busted.status_code == 200 and cache_busted.json() == plain.json()
        assert (await client.get("/api/dmarcreport/")).status_code == 401


async def test_report_metrics(store: Store) -> None:
    await add_domain(store, "example.org")
    await receive(store, samples.google_dmarc())
    app = create_app(api_settings(), store)
    service = app.state.reports
    await service.load_metrics()  # what `dinomail serve` does at start: the stored totals
    await receive(store, samples.outlook_dmarc(), metrics=service.metrics)
    await receive(store, samples.google_tlsrpt(), metrics=service.metrics)
    await receive(store, samples.google_tlsrpt(), metrics=service.metrics)  # a duplicate
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        text = (await client.get("/metrics")).text
    assert 'dinomail_dmarc_messages_total{domain="example.org",result="pass"} 162.0' in text
    assert 'dinomail_dmarc_messages_total{domain="example.org",result="fail"} 10.0' in text
    assert 'dinomail_tlsrpt_sessions_total{domain="example.org",result="success"} 230.0' in text
    assert 'dinomail_tlsrpt_sessions_total{domain="example.org",result="failure"} 4.0' in text
    assert 'dinomail_reports_received_total{kind="tlsrpt",outcome="duplicate"} 1.0' in text
