"""The admin web pages without a browser, on SQLite and PostgreSQL: login and sessions, CSRF,
forms that refuse bad input without changing anything, GETs that never change anything,
domain admins kept to their domains, languages, and what the pages show."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from adminapi.pages.sessions import COOKIE_NAME
from dinomail import schema
from dinomail.passwords import verify_password
from dinomail.store import EVERYTHING, Store, admins, aliases, apikeys, mailboxes
from tests.support.adminapi import PASSWORD, fast_admin_hashing
from tests.support.pages import (
    HOST,
    SECRET_KEY,
    World,
    log_in,
    page_settings,
    pages_client,
    snapshot,
    token_in,
)


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


# --- logging in ----------------------------------------------------------------------------------


async def test_pages_need_a_login_and_come_back_after_it(client: httpx.AsyncClient) -> None:
    answer = await client.get("/virtual-users/", params={"domain": "a.org"})
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/virtual-users/?domain=a.org"]}
    for public in ("/login", "/legals", "/static/dinomail.css", "/static/favicon.svg"):
        assert (await client.get(public)).status_code == 200, public

    token = token_in(await client.get("/login"))
    answer = await client.post("/login", data={
        "username": "root", "password": PASSWORD, "csrf_token": token,
        "next": "/virtual-users/?domain=a.org"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/virtual-users/?domain=a.org")
    assert "anna@a.org" in (await client.get("/virtual-users/?domain=a.org")).text


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "",
])
async def test_login_goes_only_to_local_pages(client: httpx.AsyncClient, target: str) -> None:
    token = token_in(await client.get("/login"))
    answer = await client.post("/login", data={
        "username": "root", "password": PASSWORD, "csrf_token": token, "next": target})
    assert (answer.status_code, answer.headers["location"]) == (303, "/")


async def test_wrong_password_is_refused_without_saying_which_field(
    client: httpx.AsyncClient,
) -> None:
    token = token_in(await client.get("/login"))
    for username, password in (("root", "wrong password"), ("nobody", PASSWORD)):
        answer = await client.post("/login", data={
            "username": username, "password": password, "csrf_token": token})
        assert answer.status_code == 400
        assert "Please enter a correct username and password" in answer.text
        assert (await client.get("/")).status_code == 303


async def test_logout_is_a_post_and_ends_the_session(client: httpx.AsyncClient) -> None:
    browser = await log_in(client, "root")
    assert (await client.get("/logout")).status_code == 405
    assert (await client.get("/")).status_code == 200
    answer = await browser.post("/logout")
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    assert "You are logged out." in (await client.get("/login")).text
    assert (await client.get("/")).status_code == 303


async def test_failed_logins_are_limited_per_account(client: httpx.AsyncClient) -> None:
    token = token_in(await client.get("/login"))
    for _ in range(5):
        answer = await client.post("/login", data={
            "username": "root", "password": "wrong", "csrf_token": token})
        assert answer.status_code == 400
    # Even the right password waits now: the guessing costs time, not our CPU.
    blocked = await client.post("/login", data={
        "username": "root", "password": PASSWORD, "csrf_token": token})
    assert blocked.status_code == 429
    assert "Too many failed logins" in blocked.text
    assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
    # Another account from the same address is not blocked by root's failures.
    other = await client.post("/login", data={
        "username": "alice", "password": PASSWORD, "csrf_token": token})
    assert other.status_code == 303


async def test_failed_logins_are_limited_per_address(client: httpx.AsyncClient) -> None:
    token = token_in(await client.get("/login"))
    for number in range(20):
        await client.post("/login", data={
            "username": f"guess{number}", "password": "wrong", "csrf_token": token})
    answer = await client.post("/login", data={
        "username": "alice", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 429


def test_rate_limit_window_slides() -> None:
    from adminapi.loginlimit import LoginRateLimiter

    now = [1000.0]
    limiter = LoginRateLimiter(clock=lambda: now[0])
    for _ in range(5):
        limiter.failed("Root", "192.0.2.1")
    assert limiter.retry_after("root", "192.0.2.9") == pytest.approx(900)
    now[0] += 899
    assert limiter.retry_after("root", "192.0.2.9") == pytest.approx(1)
    now[0] += 1
    assert limiter.retry_after("root", "192.0.2.9") == 0
    limiter.failed("root", "192.0.2.1")
    limiter.succeeded("root")
    assert limiter.retry_after("root", "192.0.2.9") == 0


# --- sessions ------------------------------------------------------------------------------------


def _set_cookie(answer: httpx.Response) -> str:
    cookies = [value for value in answer.headers.get_list("set-cookie")
               if value.startswith(COOKIE_NAME + "=")]
    assert len(cookies) == 1
    return cookies[0].lower()


@pytest.mark.parametrize(("base_url", "debug", "secure"), [
    ("https://testserver", False, True),
    ("http://testserver", False, True),   # a network name over plain HTTP: Secure, and a warning
    ("http://testserver", True, False),
    ("http://127.0.0.1:8000", False, False),  # the quickstart on loopback
    ("http://localhost:8000", False, False),
])
async def test_session_cookie_flags(
    store: Store, base_url: str, debug: bool, secure: bool
) -> None:
    async with pages_client(store, page_settings(DEBUG=debug), base_url=base_url) as client:
        answer = await client.get("/login")
    cookie = _set_cookie(answer)
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert ("secure" in cookie.split("; ")) is secure
    warning = "The login cookie is only sent over HTTPS"
    assert (warning in answer.text) is (secure and base_url.startswith("http:"))


async def test_forged_or_expired_sessions_are_ignored(client: httpx.AsyncClient) -> None:
    from adminapi.pages.sessions import SESSION_LIFETIME_SECONDS, Session, SessionCodec

    await log_in(client, "root")
    value = client.cookies[COOKIE_NAME]
    payload, _, signature = value.partition(".")
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, payload + "." + signature[::-1])
    assert (await client.get("/")).status_code == 303

    codec = SessionCodec(SECRET_KEY)
    other_key = SessionCodec("another-secret-key-another-secret-key-12")
    session = Session(admin_id=1)
    assert codec.decode(other_key.encode(session)) is None
    assert codec.decode(codec.encode(session)) is not None
    late = session.issued_at + SESSION_LIFETIME_SECONDS + 1
    assert codec.decode(codec.encode(session), now=late) is None


async def test_a_new_password_or_deactivation_ends_sessions(
    client: httpx.AsyncClient, store: Store, world: World
) -> None:
    await log_in(client, "root")
    async with store.write() as conn:
        await admins.update(conn, "test", world.root, {"password": "another password"})
    assert (await client.get("/")).status_code == 303

    await log_in(client, "root", "another password")
    async with store.write() as conn:
        await admins.update(conn, "test", world.root, {"is_active": False})
    assert (await client.get("/")).status_code == 303


async def test_pages_carry_security_headers(client: httpx.AsyncClient) -> None:
    for answer in (await client.get("/login"), await client.get("/no/such/page")):
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
    static = await client.get("/static/dinomail.css")
    assert static.headers["x-content-type-options"] == "nosniff"
    assert "max-age" in static.headers["cache-control"]


# --- CSRF and state changes ----------------------------------------------------------------------


def state_changes(world: World) -> list[tuple[str, dict[str, str], int]]:
    """Every POST of the pages with a valid body, and its status when the token is right, in an
    order that lets them all succeed one after the other."""
    password = {"password": "a new password", "password_confirm": "a new password"}
    return [
        ("/virtual-domains/new", {"name": "new.org", "active": "on"}, 303),
        ("/virtual-domains/1/edit", {"name": "a.org", "display_name": "A", "active": "on"}, 303),
        ("/virtual-domains/1/update-status", {}, 303),
        ("/virtual-users/new", {"email": "new@a.org", "active": "on"}, 303),
        ("/virtual-users/1/edit", {"email": "anna@a.org", "quota": "1 GB"}, 303),
        ("/virtual-users/1/edit-password", password, 303),
        ("/virtual-aliases/new", {"source": "x@a.org", "destination": "anna@a.org"}, 303),
        ("/virtual-aliases/1/edit", {"source": "info@a.org", "destination": "z@b.org"}, 303),
        ("/alias-domains/new", {"name": "c.net", "target": "a.org", "active": "on"}, 303),
        ("/alias-domains/1/edit", {"name": "a.net", "target": "a.org"}, 303),
        ("/domain-limits/1/edit", {"max_mailboxes": "5"}, 303),
        ("/api-keys", {"name": "backup"}, 200),
        (f"/api-keys/{world.root_key}/revoke", {}, 303),
        ("/virtual-aliases/1/delete", {}, 303),
        ("/alias-domains/1/delete", {}, 303),
        ("/virtual-users/1/delete", {"verifier": "anna@a.org"}, 303),
        ("/virtual-domains/1/delete", {"verifier": "a.org"}, 303),
        ("/language", {"language": "fr", "next": "/"}, 303),
        ("/logout", {}, 303),
    ]


async def test_a_post_without_the_right_token_changes_nothing(
    client: httpx.AsyncClient, store: Store, world: World
) -> None:
    browser = await log_in(client, "root")
    before = await snapshot(store)
    for url, data, _status in state_changes(world):
        for sent in ({}, {"csrf_token": "wrong"}, {"csrf_token": ""}):
            answer = await client.post(url, data={**data, **sent})
            assert answer.status_code == 403, (url, sent)
            assert "without a valid security token" in answer.text
        # The right token from another site's page: browsers say so in Origin.
        answer = await browser.post(url, data, origin="https://evil.example")
        assert answer.status_code == 403, url
    assert await snapshot(store) == before
    assert "<html lang=\"en\">" in (await client.get("/")).text

    # The same requests with the token all go through: the refusals above were the token's.
    for url, data, status in state_changes(world):
        answer = await browser.post(url, data, origin=f"https://{HOST}")
        assert answer.status_code == status, (url, answer.text[:2000])
    assert await snapshot(store) != before


async def test_login_form_needs_its_token(client: httpx.AsyncClient, store: Store) -> None:
    before = await snapshot(store)
    answer = await client.post("/login", data={"username": "root", "password": PASSWORD})
    assert answer.status_code == 403
    assert await snapshot(store) == before  # last_login untouched
    assert (await client.get("/")).status_code == 303


async def test_a_get_never_changes_anything(
    client: httpx.AsyncClient, store: Store, world: World
) -> None:
    await log_in(client, "root")
    before = await snapshot(store)
    pages = [
        "/", "/search?q=a", "/legals", "/api-keys", "/virtual-domains/", "/virtual-domains/new",
        "/virtual-domains/1/edit", "/virtual-domains/1/delete", "/virtual-domains/1/autoconfig",
        "/virtual-domains/1/dkim-scan", "/virtual-domains/1/dmarc-scan",
        "/virtual-domains/1/spf-scan", "/virtual-users/", "/virtual-users/?domain=a.org",
        "/virtual-users/new", "/virtual-users/1/edit", "/virtual-users/1/edit-password",
        "/virtual-users/1/delete", "/virtual-aliases/", "/virtual-aliases/new",
        "/virtual-aliases/1/edit", "/virtual-aliases/1/delete", "/alias-domains/",
        "/alias-domains/new", "/alias-domains/1/edit", "/alias-domains/1/delete",
        "/domain-limits/", "/domain-limits/1/edit",
    ]
    for url in pages:
        answer = await client.get(url)
        assert answer.status_code == 200, url
    # What the original did on a GET (delete an alias, regenerate a key, update statuses)
    # is a confirmation page, a 405 or nothing at all here.
    assert (await client.get("/virtual-domains/1/update-status")).status_code == 405
    assert (await client.get("/api-keys/1/revoke")).status_code == 405
    assert (await client.get("/regen-api-key")).status_code == 404
    assert (await client.get("/logout")).status_code == 405
    assert await snapshot(store) == before


# --- forms refuse bad input ----------------------------------------------------------------------

INVALID_FORMS = [
    ("/virtual-domains/new", {"name": "bad_name.org"}, "name", "is not a valid domain name"),
    ("/virtual-domains/new", {"name": "localhost"}, "name", "is not a full domain name"),
    ("/virtual-domains/new", {"name": ""}, "name", "This field is required."),
    ("/virtual-domains/new", {"name": "A.ORG"}, "name", "The domain a.org already exists."),
    ("/virtual-domains/new", {"name": "a.net"}, "name", "a.net is already an alias domain."),
    ("/virtual-domains/1/edit", {"name": "a.org", "imap_address": "imap_1.a.org"},
     "imap_address", "is not a valid domain name"),
    ("/virtual-domains/1/edit", {"name": "renamed.org"}, "name", "cannot be renamed"),
    ("/virtual-domains/1/delete", {"verifier": "b.org"}, "verifier",
     "Names don&#39;t match. Operation cancelled."),
    ("/virtual-users/new", {"email": "nope"}, "email", "is not an email address (no @)"),
    ("/virtual-users/new", {"email": "x@b.org", "domain": "a.org"}, "email",
     "The domain of x@b.org (b.org) is not the same as the domain a.org"),
    ("/virtual-users/new", {"email": "x@a.org", "quota": "lots"}, "quota",
     "Enter a size in bytes"),
    ("/virtual-users/new", {"email": "x@a.org", "password": "abcdefgh",
                            "password_confirm": "abcdefgi"},
     "password_confirm", "The two passwords don&#39;t match."),
    ("/virtual-users/new", {"email": "Anna@a.org"}, "email",
     "The mailbox anna@a.org already exists."),
    ("/virtual-users/new", {"email": "x@nowhere.org"}, "domain",
     "nowhere.org is not a domain you manage."),
    ("/virtual-users/new", {"email": "x@a.org", "domain": "nowhere.org"}, "domain",
     "No such domain among yours."),
    ("/virtual-users/1/edit", {"email": "anna@b.org"}, "email", "is not the same as the domain"),
    ("/virtual-users/1/edit-password", {"password": "", "password_confirm": ""}, "password",
     "A new password is required."),
    ("/virtual-users/1/edit-password", {"password": "abcdefgh", "password_confirm": "x"},
     "password_confirm", "The two passwords don&#39;t match."),
    ("/virtual-users/1/edit-password", {"password": "a\tb", "password_confirm": "a\tb"},
     "password", "Must not contain tabs"),
    ("/virtual-users/1/delete", {"verifier": "bob@b.org"}, "verifier",
     "Emails don&#39;t match. Operation cancelled"),
    ("/virtual-aliases/new", {"source": "info@a.org", "destination": "not-an-address"},
     "destination", "is not an email address"),
    ("/virtual-aliases/new", {"source": "info@a.org", "destination": "info@a.org"},
     "destination", "An alias cannot deliver to its own address."),
    ("/virtual-aliases/new", {"source": "info@a.org", "destination": "anna@a.org"},
     "source", "already exists"),
    ("/virtual-aliases/1/edit", {"source": "info@b.org", "destination": "anna@a.org"},
     "source", "is not the same as the domain a.org"),
    ("/alias-domains/new", {"name": "a.org", "target": "a.org"}, "name",
     "a.org is already a mail domain."),
    ("/alias-domains/new", {"name": "c.net", "target": ""}, "target",
     "This field is required."),
    ("/alias-domains/new", {"name": "c.net", "target": "zzz.org"}, "target",
     "No such domain among yours."),
    ("/domain-limits/1/edit", {"max_mailboxes": "many"}, "max_mailboxes",
     "Enter a whole number"),
    ("/domain-limits/1/edit", {"default_quota": "2 parsecs"}, "default_quota",
     "Enter a size in bytes"),
    ("/api-keys", {"name": "x" * 101}, "name", "At most 100 characters."),
]


async def test_invalid_input_is_shown_under_its_field_and_changes_nothing(
    client: httpx.AsyncClient, store: Store
) -> None:
    browser = await log_in(client, "root")
    before = await snapshot(store)
    for url, data, field, message in INVALID_FORMS:
        answer = await browser.post(url, data)
        assert answer.status_code == 400, (url, data)
        error = re.search(rf'<p class="field__error" id="error-{field}">(.*?)</p>',
                          answer.text, re.S)
        assert error, (url, data, field)
        assert message in error.group(1), (url, data, error.group(1))
        assert 'aria-describedby="' in answer.text and 'aria-invalid="true"' in answer.text
        assert await snapshot(store) == before, (url, data)
    # What was typed is shown again (a password never is).
    answer = await browser.post("/virtual-users/new", {
        "email": "x@a.org", "quota": "lots", "password": "secret-one",
        "password_confirm": "secret-one"})
    assert 'value="lots"' in answer.text and "secret-one" not in answer.text


async def test_empty_login_fields_are_reported(client: httpx.AsyncClient) -> None:
    token = token_in(await client.get("/login"))
    answer = await client.post("/login", data={"csrf_token": token, "username": "",
                                               "password": ""})
    assert answer.status_code == 400
    assert 'id="error-username"' in answer.text and 'id="error-password"' in answer.text


# --- the original flows --------------------------------------------------------------------------


async def test_create_change_and_delete_with_the_original_messages(
    client: httpx.AsyncClient, store: Store
) -> None:
    browser = await log_in(client, "root")

    async def follow(answer: httpx.Response) -> str:
        assert answer.status_code == 303, answer.text[:1000]
        return (await client.get(answer.headers["location"])).text

    text = await follow(await browser.post("/virtual-domains/new", {"name": "Shop.Example"}))
    assert "Domain shop.example was created." in text
    text = await follow(await browser.post("/virtual-users/new", {
        "domain": "shop.example", "email": "anna@shop.example", "quota": "2 GB",
        "active": "on", "password": "first password", "password_confirm": "first password"}))
    assert "User anna@shop.example was created." in text
    async with store.read() as conn:
        created = await mailboxes.get_by_email(conn, EVERYTHING, "anna@shop.example")
        first_hash = await mailboxes.password_hash(conn, EVERYTHING, created["id"])
    assert created["quota"] == 2_000_000_000 and created["active"]
    assert verify_password("first password", first_hash, user="anna@shop.example")

    text = await follow(await browser.post("/virtual-aliases/new", {
        "source": "sales@shop.example", "destination": "anna@shop.example"}))
    assert "Alias sales@shop.example -&gt; anna@shop.example was created." in text
    text = await follow(await browser.post(f"/virtual-users/{created['id']}/edit-password", {
        "password": "second password", "password_confirm": "second password"}))
    assert "anna@shop.example&#39;s password was changed." in text
    async with store.read() as conn:
        second_hash = await mailboxes.password_hash(conn, EVERYTHING, created["id"])
    assert verify_password("second password", second_hash, user="anna@shop.example")

    domain_id = created["domain_id"]
    text = await follow(await browser.post(f"/virtual-domains/{domain_id}/edit", {
        "name": "shop.example", "display_name": "Shop & Co", "active": "on"}))
    assert "Domain shop.example was changed." in text
    xml = await client.get(f"/virtual-domains/{domain_id}/autoconfig")
    assert xml.headers["content-type"].startswith("application/xml")
    assert "attachment" in xml.headers["content-disposition"]
    assert b"<displayName>Shop &amp; Co</displayName>" in xml.content

    refused = await browser.post(f"/virtual-domains/{domain_id}/delete",
                                 {"verifier": "shop.exampl"})
    assert refused.status_code == 400
    assert "Names don&#39;t match. Operation cancelled." in refused.text
    text = await follow(await browser.post(f"/virtual-domains/{domain_id}/delete",
                                           {"verifier": "shop.example"}))
    assert "Domain shop.example was deleted." in text
    async with store.read() as conn:
        assert await mailboxes.count(conn, EVERYTHING) == 2  # anna@shop.example went with it


async def test_api_key_is_shown_once_and_works(client: httpx.AsyncClient, store: Store) -> None:
    browser = await log_in(client, "root")
    created = await browser.post("/api-keys", {"name": "backup", "read_only": "on"})
    assert created.status_code == 200
    assert "Api key was created." in created.text
    secret = re.search(r'id="new-key" class="secret" type="text" value="([0-9a-f]{40})"',
                       created.text).group(1)
    api = await client.get("/api/virtualdomain/",
                           headers={"Authorization": f"ApiKey root:{secret}"})
    assert api.status_code == 200 and api.json()["meta"]["total_count"] == 2
    listing = await client.get("/api-keys")
    assert secret not in listing.text and secret[:8] in listing.text
    async with store.read() as conn:
        key = (await apikeys.list_window(conn, 1, limit=1)).rows[0]
    assert key["read_only"] and key["name"] == "backup"
    revoked = await browser.post(f"/api-keys/{key['id']}/revoke")
    assert revoked.status_code == 303
    assert (await client.get("/api/virtualdomain/", headers={
        "Authorization": f"ApiKey root:{secret}"})).status_code == 401


async def test_alias_columns_keep_their_original_meaning(
    client: httpx.AsyncClient, store: Store
) -> None:
    async with store.write() as conn:
        for source, destination in (("abuse@a.org", "postmaster@a.org"),
                                    ("out@a.org", "someone@elsewhere.net")):
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": source, "destination": destination})
    await log_in(client, "root")
    text = (await client.get("/virtual-aliases/", params={"q": "a.org"})).text
    rows = {
        match.group(1): match.group(0)
        for match in re.finditer(r"<tr>.*?<strong>([^<]+)</strong>.*?</tr>", text, re.S)
    }
    tip = "Destination domain is managed by this instance but no email or alias was found."
    broken = rows["abuse@a.org"]
    assert re.search(r'Exterior \?">No<', broken) and tip in broken
    assert re.search(r'Exterior \?">Yes<', rows["out@a.org"]) and tip not in rows["out@a.org"]
    assert re.search(r'Exterior \?">No<', rows["info@a.org"]) and tip not in rows["info@a.org"]


async def test_lists_are_paged_with_a_cursor(client: httpx.AsyncClient, store: Store) -> None:
    async with store.write() as conn:
        for number in range(120):
            await mailboxes.create(conn, "test", EVERYTHING, {"email": f"u{number:03d}@a.org"},
                                   password_hash="{PLAIN}x")
    await log_in(client, "root")
    first = (await client.get("/virtual-users/", params={"domain": "a.org"})).text
    assert "Showing 1–50 of 121" in first and "Page 1 of 3" in first
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "after=" in next_url and "domain=a.org" in next_url
    second = (await client.get(next_url)).text
    assert "Showing 51–100 of 121" in second and "u049@a.org" in second
    assert "u048@a.org" not in second
    third = (await client.get(re.search(r'rel="next" href="([^"]+)"', second)
                              .group(1).replace("&amp;", "&"))).text
    assert "Showing 101–121 of 121" in third and 'rel="next"' not in third
    back = re.search(r'rel="prev" href="([^"]+)"', third).group(1).replace("&amp;", "&")
    assert "Showing 51–100 of 121" in (await client.get(back)).text
    # A damaged cursor falls back to the page number.
    assert "Showing 51–100" in (await client.get(
        "/virtual-users/", params={"page": "2", "after": "garbage"})).text


async def test_status_update_asks_the_checker_and_scan_pages_show_what_it_stored(
    client: httpx.AsyncClient, store: Store
) -> None:
    from datetime import UTC, datetime

    from dinomail.store import dns as dns_store

    browser = await log_in(client, "root")
    answer = await browser.post("/virtual-domains/1/update-status",
                                {"next": "/virtual-domains/1/spf-scan"})
    assert (answer.status_code, answer.headers["location"]) == (303, "/virtual-domains/1/spf-scan")
    page = (await client.get(answer.headers["location"])).text
    assert "A DNS check of a.org was asked for" in page
    assert "A check of this domain is due" in page and "Not checked yet." in page
    async with store.read() as conn:
        run, _results = await dns_store.check_results(conn, 1)
    assert run is not None and run["requested_at"] is not None

    details = {
        "summary": "v=spf1 record found", "expected": None, "found": "v=spf1 mx -all",
        "problems": ["ends with -all"], "data": {},
        "queries": [{"name": "a.org", "type": "TXT", "outcome": "answer",
                     "records": ["v=spf1 mx -all", "<script>x</script>"], "error": None}],
    }
    async with store.write() as conn:
        await dns_store.save_check_results(
            conn, 1, [{"name": "spf", "status": "ok", "details": details}], inputs="x",
            incomplete=False, started_at=datetime.now(UTC), original={"spf_status": 1})
    page = (await client.get("/virtual-domains/1/spf-scan")).text
    assert "v=spf1 record found" in page and "ends with -all" in page
    assert "<code class=\"wrap record\">v=spf1 mx -all</code>" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert 'class="badge badge--ok"' in page
    # The original column follows, shown in the list.
    listing = (await client.get("/virtual-domains/")).text
    row_of_a = listing.split("<strong>a.org</strong>")[1].split("<strong>b.org</strong>")[0]
    assert "No DNS record for SPF" not in row_of_a and ">OK</span>" in row_of_a
    assert "Not checked yet." in (await client.get("/virtual-domains/1/dmarc-scan")).text


async def test_search_finds_domains_mailboxes_and_aliases(client: httpx.AsyncClient) -> None:
    await log_in(client, "root")
    text = (await client.get("/search", params={"q": "b.org"})).text
    assert "Results for “b.org”" in text
    assert "bob@b.org" in text and "info@b.org" in text and 'href="/virtual-domains/2/edit"' in text
    assert "anna@a.org" not in text
    assert "Results for" not in (await client.get("/search")).text  # not "Results for None"


async def test_quota_is_readable_with_a_usage_bar(client: httpx.AsyncClient, store: Store) -> None:
    async with store.write() as conn:
        await mailboxes.record_usage(conn, {"anna@a.org": (1_500_000_000, 10)})
    await log_in(client, "root")
    text = (await client.get("/virtual-users/")).text
    assert "2 GB" in text and "1.5 GB of 2 GB (75%)" in text
    assert re.search(r'<meter min="0" max="2000000000" [^>]*value="1500000000"', text)
    assert "Unlimited" in text  # bob@b.org has no quota


# --- domain admins -------------------------------------------------------------------------------


async def test_a_domain_admin_sees_only_their_domains(
    client: httpx.AsyncClient, store: Store
) -> None:
    browser = await log_in(client, "alice")
    home = (await client.get("/")).text
    assert "There is 1 virtual domain." in home and "There is 1 virtual user." in home
    assert "There is 1 virtual alias." in home
    for url, mine, others in (
        ("/virtual-domains/", "b.org", "a.org"),
        ("/virtual-users/", "bob@b.org", "anna@a.org"),
        ("/virtual-aliases/", "info@b.org", "info@a.org"),
        ("/alias-domains/", "b.net", "a.net"),
        ("/domain-limits/", "b.org", "a.org"),
        ("/search?q=org", "bob@b.org", "a.org"),
        ("/virtual-users/new", 'value="b.org"', "a.org"),
        ("/virtual-aliases/new", 'value="b.org"', "a.org"),
    ):
        text = (await client.get(url)).text
        assert mine in text and others not in text, url
    filtered = (await client.get("/virtual-users/", params={"domain": "a.org"})).text
    assert "There is no domain a.org among yours" in filtered and "anna@a.org" not in filtered
    assert "New domain" not in (await client.get("/virtual-domains/")).text

    before = await snapshot(store)
    for url in ("/virtual-domains/1/edit", "/virtual-users/1/edit", "/virtual-aliases/1/edit",
                "/alias-domains/1/edit", "/domain-limits/1/edit", "/virtual-domains/1/autoconfig",
                "/virtual-domains/1/dkim-scan"):
        assert (await client.get(url)).status_code == 404, url
    assert (await browser.post("/virtual-users/1/delete", {"verifier": "anna@a.org"})
            ).status_code == 404
    assert (await browser.post("/virtual-aliases/1/delete")).status_code == 404
    assert (await client.get("/virtual-domains/new")).status_code == 403
    assert (await browser.post("/virtual-domains/2/delete", {"verifier": "b.org"})
            ).status_code == 403
    # Another tenant's domain is answered like a domain that does not exist.
    refused = await browser.post("/virtual-users/new", {"email": "x@a.org"})
    assert refused.status_code == 400 and "a.org is not a domain you manage." in refused.text
    missing = await browser.post("/virtual-users/new", {"email": "x@nowhere.org"})
    assert missing.text.replace("nowhere.org", "a.org") == refused.text
    refused = await browser.post("/virtual-users/new", {"email": "x@a.org", "domain": "b.org"})
    assert refused.status_code == 400 and "is not the same as the domain b.org" in refused.text
    assert await snapshot(store) == before

    # Their own domain: edited but not renamed; only the default quota among the limits.
    answer = await browser.post("/virtual-domains/2/edit", {
        "name": "renamed.org", "display_name": "B", "active": "on"})
    assert answer.status_code == 303
    answer = await browser.post("/domain-limits/2/edit", {
        "max_mailboxes": "1000", "default_quota": "1 GB"})
    assert answer.status_code == 303
    async with store.read() as conn:
        row = (await conn.execute(sa.select(schema.virtualdomain).where(
            schema.virtualdomain.c.id == 2))).mappings().one()
    assert (row["name"], row["display_name"]) == ("b.org", "B")
    assert (row["max_mailboxes"], row["default_quota"]) == (0, 1_000_000_000)


# --- languages -----------------------------------------------------------------------------------


async def test_the_browser_language_is_honoured(store: Store, world: World) -> None:
    async with pages_client(store, headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.8"}
                            ) as client:
        login = (await client.get("/login")).text
        assert '<html lang="fr">' in login and "Mot de passe" in login
        browser = await log_in(client, "root")
        home = (await client.get("/")).text
        assert "Il y a 2 domaines virtuels." in home and "Des e-mails en toute sérénité" in home
        refused = await browser.post("/virtual-users/new", {"email": "x@b.org",
                                                            "domain": "a.org"})
        assert "Le domaine de x@b.org (b.org) n&#39;est pas le même que le domaine a.org" \
            in refused.text
        # The admin's own choice wins over the browser's.
        answer = await browser.post("/language", {"language": "en", "next": "/virtual-users/"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/virtual-users/")
        assert '<html lang="en">' in (await client.get("/virtual-users/")).text


async def test_the_admin_layout_and_api_keys_page_in_french(store: Store, world: World) -> None:
    async with pages_client(store, headers={"Accept-Language": "fr"}) as client:
        browser = await log_in(client, "root")
        created = await browser.post("/api-keys", {"name": "sauvegarde"})
        assert created.status_code == 200
        page = created.text
        # The layout: the search, the user menu, the sections, the footer.
        for text in ('id="site-search"', 'placeholder="Rechercher"', "Superadministrateur",
                     "Mon compte", "Déconnexion", "Domaines", 'aria-current="page"',
                     'href="/legals">Mentions légales', "github.com/nanoy42/dinomail",
                     'name="next" value="/api-keys"'):
            assert text in page, text
        # The key shown once, with the header to send it in; the list, with revoke buttons.
        secret = re.search(r'id="new-key" class="secret" type="text" value="([0-9a-f]{40})"',
                           page)
        assert secret and "Votre nouvelle clé API" in page
        assert "Copiez-la maintenant\u00a0: elle n'est affichée que cette fois." in page
        assert f"Authorization: ApiKey root:{secret.group(1)}" in page
        assert '<th scope="col" class="actions-col">Administration</th>' in page
        assert re.search(r'action="/api-keys/\d+/revoke">', page) and "Révoquer" in page
        listed = (await client.get("/api-keys?page=1")).text
        assert secret.group(1) not in listed
        # The language switch comes back to the same page, query string included.
        assert 'name="next" value="/api-keys?page=1"' in listed


@pytest.mark.parametrize(("header", "setting", "expected"), [
    (None, "fr", "fr"),
    ("de-DE,de;q=0.9", "fr", "fr"),     # nothing we speak: the setting
    ("de-DE,en;q=0.5", "fr", "en"),
    ("fr;q=0, en", "fr", "en"),
    ("*", "fr", "fr"),
    ("EN-gb", "fr", "en"),
])
async def test_language_code_is_the_default(
    store: Store, header: str | None, setting: str, expected: str
) -> None:
    headers = {"Accept-Language": header} if header else {}
    async with pages_client(store, page_settings(LANGUAGE_CODE=setting), headers=headers
                            ) as client:
        text = (await client.get("/login")).text
    assert f'<html lang="{expected}">' in text


def test_a_catalog_without_its_mo_is_compiled_at_start(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adminapi.pages import i18n

    source, _mo = i18n.catalog_paths("fr")
    folder = tmp_path / "fr" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_bytes(source.read_bytes())
    monkeypatch.setattr(i18n, "TRANSLATIONS_DIR", tmp_path)
    i18n.translations_for.cache_clear()
    try:
        assert i18n.translations_for("fr").gettext("Domains") == "Domaines"
        assert not (folder / "messages.mo").exists()
    finally:
        i18n.translations_for.cache_clear()


def test_build_compiles_the_catalogs(tmp_path: Any) -> None:
    import runpy
    from pathlib import Path

    from babel.support import Translations

    root = Path(__file__).resolve().parents[1]
    setup = runpy.run_path(str(root / "setup.py"), run_name="setup_under_test")
    written = setup["compile_catalogs"](root, tmp_path)
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "adminapi/pages/translations/fr/LC_MESSAGES/messages.mo"]
    with written[0].open("rb") as file:
        assert Translations(file).gettext("Users") == "Utilisateurs"


def test_every_message_is_translated_and_the_template_is_current() -> None:
    from babel.messages.pofile import read_po

    from adminapi.pages.catalogs import TEMPLATE_PATH, extract, missing_translations

    assert missing_translations("fr") == []
    with TEMPLATE_PATH.open("rb") as file:
        template = read_po(file)
    in_template = {message.id for message in template if message.id}
    assert {message.id for message in extract() if message.id} == in_template, \
        "run: python -m adminapi.pages.catalogs update"


# --- safety of what is shown ---------------------------------------------------------------------


def test_legal_text_keeps_only_safe_markup() -> None:
    from adminapi.pages.legals import render_legals

    cases = {
        "<p>Hosted by <strong>Example</strong></p>": "<p>Hosted by <strong>Example</strong></p>",
        "<script>alert(1)</script>Hi": "Hi",
        '<a href="javascript:alert(1)">x</a>': "<a>x</a>",
        '<a href="https://example.org" onclick="evil()">x</a>':
            '<a href="https://example.org" rel="noopener noreferrer nofollow">x</a>',
        '<img src=x onerror=alert(1)>text': "text",
        "<p style='color:red' class='x'>t": "<p>t</p>",
        "a < b & c": "a &lt; b &amp; c",
        "<style>p{}</style><iframe src=x>in</iframe>ok": "ok",
        "<ul><li>one<li>two</ul>": "<ul><li>one<li>two</li></li></ul>",
        "<!-- note --><b>bold</b>": "<b>bold</b>",
        '<a href="&#106;avascript:alert(1)">x</a>': "<a>x</a>",
    }
    for given, expected in cases.items():
        assert str(render_legals(given)) == expected, given


async def test_the_legal_page_shows_the_setting_safely(store: Store) -> None:
    legals = '<p>Run by <em>Example SAS</em><script>alert("x")</script></p>'
    async with pages_client(store, page_settings(DINOMAIL_LEGALS=legals)) as client:
        text = (await client.get("/legals")).text
    assert "<p>Run by <em>Example SAS</em></p>" in text and "alert" not in text
    assert "along with DinoMail" in text and "BarMan" not in text


async def test_names_and_addresses_are_escaped(client: httpx.AsyncClient, store: Store) -> None:
    await log_in(client, "root")
    text = (await client.get("/search", params={"q": "<script>x</script>"})).text
    assert "<script>x</script>" not in text and "&lt;script&gt;x&lt;/script&gt;" in text


async def test_api_paths_keep_their_json_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nosuchthing/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    page = await client.get("/no/such/page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Not found" in page.text


async def test_a_database_outage_is_a_page_not_a_traceback(
    store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from dinomail.store import domains

    async def unavailable(*args: Any, **kwargs: Any) -> int:
        raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))

    async with pages_client(store) as client:
        await log_in(client, "root")
        monkeypatch.setattr(domains, "count", unavailable)
        answer = await client.get("/")
    assert answer.status_code == 503
    assert "The database is not answering" in answer.text and "Traceback" not in answer.text


def test_sizes_typed_and_shown() -> None:
    from adminapi.pages.forms import parse_size, size_for_input
    from adminapi.pages.i18n import Formats

    typed = {"0": 0, "123": 123, "2 GB": 2 * 10**9, "2GB": 2 * 10**9, "1,5 Go": 15 * 10**8,
             "500 mb": 5 * 10**8, "1 GiB": 2**30, "7 kB": 7000, " 3 T ": 3 * 10**12}
    for text, size in typed.items():
        assert parse_size(text) == size, text
    for text in ("", "lots", "-1", "2 parsecs", "1e9", "99999999999 TB"):
        assert parse_size(text) is None, text
    for size in (0, 1, 999, 2 * 10**9, 1_500_000_000, 123_456_789, 10**12):
        assert parse_size(size_for_input(size)) == size

    english, french = Formats("en", "UTC"), Formats("fr", "UTC")
    shown = [(999, "999 B"), (1000, "1 kB"), (20 * 10**9, "20 GB"), (1_999_000_000, "1.9 GB"),
             (200 * 10**6, "200 MB"), (3 * 10**12, "3 TB")]
    for size, text in shown:
        assert english.size(size) == text
    assert french.size(1_500_000_000) == "1,5\u00a0Go"
    assert english.quota(0) == english.quota(None) == "Unlimited"
