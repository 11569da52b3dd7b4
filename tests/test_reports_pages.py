"""The report pages and the MTA-STS page: charts drawn as SVG on the server with tables of the
same numbers, reverse names of sources (from the test DNS server), English and French, a domain
admin kept to their domains; then the same page in headless Chromium, screenshotted."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from dinomail.reports.intake import receive
from dinomail.store import EVERYTHING, Store, admins, domains
from tests.support import reports as samples
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.dns import DnsServer, running_dns
from tests.support.pages import log_in, page_settings, pages_client


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture(scope="module")
def ptr_dns() -> Iterator[DnsServer]:
    records = ["ptr-record=10.2.0.192.in-addr.arpa,mail.example.org"]
    with running_dns(records, local=["2.0.192.in-addr.arpa", "113.0.203.in-addr.arpa",
                                     "100.51.198.in-addr.arpa", "ip6.arpa"]) as server:
        yield server


async def fill(store: Store) -> dict[str, int]:
    async with store.write() as conn:
        example = await domains.create(conn, "test", EVERYTHING, {"name": "example.org"})
        other = await domains.create(conn, "test", EVERYTHING, {"name": "other.org"})
        await admins.create(conn, "test", username="root", password=PASSWORD,
                            is_superadmin=True)
        await admins.create(conn, "test", username="stranger", password=PASSWORD,
                            domain_ids=[other["id"]])
    for build in samples.GOOD_REPORTS.values():
        await receive(store, build())
    await receive(store, samples.truncated_gzip())
    return {"example": example["id"], "other": other["id"]}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_report_page(store: Store, ptr_dns: DnsServer) -> None:
    ids = await fill(store)
    settings = page_settings(DNS_RESOLVERS=(ptr_dns.nameserver,), DNS_TIMEOUT=1.0)
    async with pages_client(store, settings) as client:
        root = await log_in(client, "root")
        answer = await root.get("/reports/", days="30")
        assert answer.status_code == 200
        body = answer.text
        assert body.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"') == 2
        assert "<title>Messages per day, passing and failing DMARC</title>" in body
        assert "<title>12-05: Failed DMARC 10</title>" in body
        assert "<title>Google Inc.: Failed sessions 4</title>" in body
        text = _text(body)
        # The table under the chart: day, messages, passed, failed, DKIM aligned, SPF aligned.
        assert "2026-12-05 145 135 10 135 135" in text
        assert "2026-12-04 45 42 3 42 0" in text
        assert "192.0.2.10 mail.example.org Yahoo, google.com 135 0 100 %" in text
        assert "203.0.113.66 — Yahoo, google.com 8 8 0 %" in text
        assert "2001:db8:4:1::25" in text
        assert "Google Inc. certificate-expired 3" in text
        assert "truncated gzip data" in text  # set aside, shown to a superadmin

        one = await root.get("/reports/", domain="example.org")
        assert one.status_code == 200 and "Reports for example.org" in one.text
        empty = await root.get("/reports/", domain="other.org")
        assert "No DMARC report in this period." in empty.text
        assert (await root.get("/reports/", domain="nowhere.example")).status_code == 404

        french = await client.get("/reports/", headers={"Accept-Language": "fr"})
        assert "Messages par jour, réussissant et échouant DMARC" in french.text
        assert "Sources échouant DMARC" in french.text

    async with pages_client(store, settings) as client:
        stranger = await log_in(client, "stranger")
        assert (await stranger.get("/reports/", domain="example.org")).status_code == 404
        mine = await stranger.get("/reports/")
        assert mine.status_code == 200
        assert "192.0.2.10" not in mine.text and "Google Inc." not in mine.text
        assert "truncated gzip data" not in mine.text
        url = f"/virtual-domains/{ids['example']}/mta-sts"
        assert (await stranger.get(url)).status_code == 404


async def test_mtasts_page(store: Store) -> None:
    ids = await fill(store)
    url = f"/virtual-domains/{ids['example']}/mta-sts"
    async with pages_client(store, page_settings(MX_HOST="mail.example.org")) as client:
        root = await log_in(client, "root")
        shown = await root.get(url)
        assert shown.status_code == 200 and "Not served" in shown.text
        saved = await root.post(url, {"mode": "enforce", "mx": "", "max_age": "86400"})
        assert saved.status_code == 303
        page = (await root.get(url)).text
        first_id = re.search(r'<code id="mtasts-id">([0-9a-f]+)</code>', page).group(1)
        txt = re.search(r'<code class="wrap" id="mtasts-txt">([^<]*)</code>', page).group(1)
        assert html.unescape(txt) == f'_mta-sts.example.org. IN TXT "v=STSv1; id={first_id}"'
        assert "mode: enforce" in page and "mx: mail.example.org" in page

        served = await client.get("/.well-known/mta-sts.txt",
                                  headers={"Host": "mta-sts.example.org"})
        assert served.text == ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\n"
                               "max_age: 86400\r\n")

        await root.post(url, {"mode": "testing", "mx": "", "max_age": "86400"})
        page = (await root.get(url)).text
        second_id = re.search(r'<code id="mtasts-id">([0-9a-f]+)</code>', page).group(1)
        assert second_id != first_id

        refused = await root.post(url, {"mode": "enforce", "mx": "not a host!",
                                        "max_age": "soon"})
        assert refused.status_code == 400
        assert "Enter a number of seconds." in refused.text

        stopped = await root.post(f"{url}/delete")
        assert stopped.status_code == 303
        assert (await client.get("/.well-known/mta-sts.txt",
                                 headers={"Host": "mta-sts.example.org"})).status_code == 404


# --- in a real browser ----------------------------------------------------------------------------


def test_report_charts_in_chromium(tmp_path: Path) -> None:
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect, sync_playwright

    from tests.support.browser import (
        CHROMIUM,
        ServedApp,
        browser_page,
        launch_chromium,
        screenshot,
    )
    from tests.support.dns import unused_nameserver

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    settings = page_settings(DNS_RESOLVERS=(unused_nameserver(),), DNS_TIMEOUT=0.3)
    app = ServedApp(f"sqlite:///{tmp_path / 'pages.sqlite3'}", settings)
    app.start(lambda store: fill(store))
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                with browser_page(browser, app) as page:
                    page.goto("/login")
                    page.fill("#id_username", "root")
                    page.fill("#id_password", PASSWORD)
                    page.keyboard.press("Enter")
                    page.get_by_role("navigation", name="Sections").get_by_role(
                        "link", name="Reports").click()
                    charts = page.locator("svg.chart")
                    expect(charts).to_have_count(2)
                    box = charts.first.bounding_box()
                    assert box is not None and box["width"] > 300 and box["height"] > 100
                    # The bars are drawn: one rect per (day, series) with messages.
                    assert charts.first.locator("rect[fill='#b42318']").count() >= 2
                    path = screenshot(page, "reports")
                    assert path.stat().st_size > 10_000
                    screenshot(page, "reports-first-screen", full_page=False)
                    page.goto("/reports/?domain=example.org")
                    screenshot(page, "reports-example.org")
            finally:
                browser.close()
    finally:
        app.stop()


def test_chart_labels_from_reports_are_escaped() -> None:
    """Organisation names and sources come from whoever sent a report."""
    from adminapi.pages.charts import PASS_COLOUR, Series, stacked_columns, stacked_rows

    hostile = '<script>alert("x")</script>'
    rows = stacked_rows([hostile], [(3, 1)], (Series(hostile, PASS_COLOUR),
                                              Series("b", PASS_COLOUR)),
                        title=hostile, description=hostile)
    columns = stacked_columns([hostile], [(3, 1)], (Series("a", PASS_COLOUR),
                                                     Series("b", PASS_COLOUR)),
                              title="t", description="d")
    for svg in (str(rows), str(columns)):
        assert "<script>" not in svg and "&lt;script&gt;" in svg
    # Empty data still draws a valid chart (an axis, no bar).
    empty = str(stacked_columns([], [], (Series("a", PASS_COLOUR),), title="t",
                                description="d"))
    assert empty.startswith("<svg") and empty.endswith("</svg>") and "<rect x" in empty
