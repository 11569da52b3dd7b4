"""The original's API clients against a running admin API: the `slumber` client as its users
drove tastypie, and what tastypie answered that clients rely on (PUT keeping what it leaves out,
the same login key, ignored parameters, OPTIONS, schema/, set/, absolute references), with the
tenancy rules holding throughout and no key in the logs."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import slumber
from slumber.exceptions import HttpClientError, HttpNotFoundError
from uvicorn.logging import AccessFormatter

from adminapi.api import GENERIC_RESOURCES, logredact
from dinomail.store import EVERYTHING, Store, admins, aliasdomains, aliases, mailboxes
from tests.support.adminapi import (
    PASSWORD,
    Account,
    add_admin,
    add_domain,
    add_mailbox,
    fast_admin_hashing,
    key_header,
)
from tests.support.live_adminapi import live_adminapi


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_admin_hashing(monkeypatch)


@pytest.fixture
async def root(store: Store) -> Account:
    return await add_admin(store, "root", superadmin=True)


@pytest.fixture
async def server(store: Store) -> AsyncIterator[str]:
    async with live_adminapi(store) as url:
        yield url


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server) as client:
        yield client


def _session(auth: tuple[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, whatever proxy the environment names
    session.auth = auth
    return session


def _client_error(call: Any) -> requests.Response:
    """The response of a slumber call that must fail with a 4xx."""
    with pytest.raises(HttpClientError) as raised:
        call()
    return raised.value.response


def slumber_script(base: str) -> dict[str, Any]:
    """What a user of the original wrote with slumber: get the key with the password, then
    pass `username` and `api_key` with every call. Returns what the test checks afterwards."""
    login = slumber.API(f"{base}/api/", session=_session(("root", PASSWORD)))
    key = login.apikey.get()["objects"][0]["key"]
    # The same key at every login, as the original.
    assert login.apikey.get()["objects"][0]["key"] == key
    api = slumber.API(f"{base}/api/", session=_session())
    creds = {"username": "root", "api_key": key}

    # Create (the 201 body is the new object), list, read.
    domain = api.virtualdomain.post({"name": "slumber.org", "display_name": "Slumber"}, **creds)
    assert domain["resource_uri"] == f"/api/virtualdomain/{domain['id']}/"
    names = [obj["name"] for obj in api.virtualdomain.get(**creds)["objects"]]
    assert "slumber.org" in names
    box = api.virtualuser.post(
        {"email": "ann@slumber.org", "domain": domain["resource_uri"], "quota": 1000}, **creds
    )
    # jQuery's cache buster and tastypie's format are ignored, not refused.
    listed = api.virtualuser.get(_="1733450000000", format="json", **creds)
    assert [obj["email"] for obj in listed["objects"]] == ["ann@slumber.org"]

    # Update: a PUT that leaves out quota keeps it; PATCH changes it.
    api.virtualuser(box["id"]).put({"email": "ann@slumber.org"}, **creds)
    assert api.virtualuser(box["id"]).get(**creds)["quota"] == 1000
    api.virtualdomain(domain["id"]).put({"smtp_address": "smtp.slumber.org"}, **creds)
    kept = api.virtualdomain(domain["id"]).get(**creds)
    assert (kept["display_name"], kept["smtp_address"]) == ("Slumber", "smtp.slumber.org")
    patched = api.virtualuser(box["id"]).patch({"quota": 2000}, **creds)
    assert patched["quota"] == 2000

    # A reference written as an absolute URL, as clients that build full URLs send it.
    alias = api.virtualalias.post(
        {"source": "info@slumber.org", "destination": "ann@slumber.org",
         "domain": f"{base}/api/virtualdomain/{domain['id']}/"}, **creds
    )
    assert alias["domain"] == domain["resource_uri"]

    # tastypie's own URLs.
    schema = api.virtualalias.schema.get(**creds)
    assert schema["fields"]["domain"]["related_type"] == "to_one"
    several = api.virtualuser.set(f"{box['id']};999999").get(**creds)
    assert [obj["email"] for obj in several["objects"]] == ["ann@slumber.org"]
    assert several["not_found"] == ["999999"]
    detail = api.virtualuser(box["id"])
    allowed = detail.options(**creds)
    assert detail._.headers["Allow"] == "GET,PUT,PATCH,DELETE"
    assert allowed == b"GET,PUT,PATCH,DELETE"

    # Refusals a client can act on.
    bad_filter = _client_error(lambda: api.virtualuser.get(email="ann@slumber.org", **creds))
    assert (bad_filter.status_code, bad_filter.json()["field"]) == (400, "email")
    wrong_key = _client_error(lambda: api.virtualuser.get(username="root", api_key="0" * 40))
    assert wrong_key.status_code == 401
    with pytest.raises(HttpNotFoundError):
        api.virtualuser(999999).put({"quota": 1}, **creds)

    # Delete.
    assert api.virtualalias(alias["id"]).delete(**creds) is True
    assert api.virtualuser(box["id"]).delete(**creds) is True
    assert api.virtualuser.get(**creds)["meta"]["total_count"] == 0

    # Regenerating: revoking the login key makes the next login return another one.
    login_id = login.apikey.get()["objects"][0]["id"]
    assert login.apikey(login_id).delete() is True
    new_key = login.apikey.get()["objects"][0]["key"]
    assert new_key != key
    revoked = _client_error(lambda: api.virtualdomain.get(**creds))
    assert revoked.status_code == 401
    assert api.virtualdomain.get(username="root", api_key=new_key)["meta"]["total_count"] == 1
    return {"keys": [key, new_key]}


async def test_slumber_client_and_no_key_in_the_logs(
    server: str, root: Account, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    outcome = await asyncio.to_thread(slumber_script, server)
    access = [record for record in caplog.records if record.name == "uvicorn.access"]
    # The access log saw the requests, keys in their URLs, and shows them redacted.
    lines = [AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(r)
             for r in access]
    assert any("api_key=[redacted]" in line and "/api/virtualuser/" in line for line in lines)
    logged = caplog.text + "\n".join(lines)
    for key in outcome["keys"]:
        assert key not in logged


async def test_put_changes_only_what_it_names_and_never_creates(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "nanoy.fr", display_name="Nanoy", imap_address="imap.x")
    box = await add_mailbox(store, "a@nanoy.fr", quota=5000)
    url = f"/api/virtualuser/{box['id']}/"
    # An original client PUTs back the original fields it knows, without quota.
    answer = await client.put(url, json={"email": "a@nanoy.fr", "domain": "/api/virtualdomain/1/"},
                              headers=root.headers)
    assert answer.status_code == 204
    after = (await client.get(url, headers=root.headers)).json()
    assert (after["quota"], after["active"]) == (5000, True)
    # null is named, so it is applied: the domain's default quota (unset here: unlimited).
    await client.put(url, json={"quota": None}, headers=root.headers)
    assert (await client.get(url, headers=root.headers)).json()["quota"] == 0
    domain_url = f"/api/virtualdomain/{domain['id']}/"
    await client.put(domain_url, json={"dkim_key_name": "sel"}, headers=root.headers)
    shown = (await client.get(domain_url, headers=root.headers)).json()
    assert (shown["display_name"], shown["imap_address"], shown["dkim_key_name"]) == (
        "Nanoy", "imap.x", "sel")
    # A PUT to an object that does not exist is a 404, and creates nothing.
    missing = await client.put("/api/virtualdomain/77/", json={"name": "new.org"},
                               headers=root.headers)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert "never creates" in missing.json()["error"]
    names = [obj["name"] for obj in
             (await client.get("/api/virtualdomain/", headers=root.headers)).json()["objects"]]
    assert names == ["nanoy.fr"]


async def test_options_answers_the_allowed_methods(client: httpx.AsyncClient) -> None:
    # As tastypie's method_check: no credentials needed, 200, the methods in Allow and body.
    expected = {
        "/api/virtualdomain/": "GET,POST",
        "/api/virtualdomain/1/": "GET,PUT,PATCH,DELETE",
        "/api/virtualdomain/12345/": "GET,PUT,PATCH,DELETE",
        "/api/changeuserpassword/1/": "PUT,PATCH,POST",
        "/api/changeuserpassword/": "",
        "/api/apikey/": "GET,POST",
        "/api/virtualuser/schema/": "GET",
        "/api/virtualuser/set/1;2/": "GET",
        "/api/": "GET",
    }
    for url, allowed in expected.items():
        answer = await client.options(url)
        assert (answer.status_code, answer.headers["allow"], answer.text) == (200, allowed, allowed)
    refused = await client.get("/api/changeuserpassword/")
    assert refused.status_code == 405


async def test_schema_as_tastypie(client: httpx.AsyncClient, root: Account) -> None:
    assert (await client.get("/api/virtualuser/schema/")).status_code == 401
    schema = (await client.get("/api/virtualuser/schema/", headers=root.headers)).json()
    assert schema["default_format"] == "application/json"
    assert schema["allowed_list_http_methods"] == ["get", "post"]
    assert schema["allowed_detail_http_methods"] == ["get", "put", "patch", "delete"]
    assert schema["default_limit"] == 20
    email = schema["fields"]["email"]
    assert {key: email[key] for key in ("type", "nullable", "readonly", "unique", "blank")} == {
        "type": "string", "nullable": False, "readonly": False, "unique": True, "blank": False}
    assert schema["fields"]["quota"]["nullable"] is True
    assert schema["fields"]["id"]["primary_key"] is True
    assert {"type": "related", "related_type": "to_one",
            "related_schema": "/api/virtualdomain/schema/"}.items() <= (
        schema["fields"]["domain"].items())
    assert schema["fields"]["created_at"]["type"] == "datetime"
    assert schema["fields"]["resource_uri"]["readonly"] is True
    assert "password" not in schema["fields"]
    assert schema["filtering"] == {"domain": ["exact"]} and "email" in schema["ordering"]
    password = (await client.get("/api/changeuserpassword/schema/", headers=root.headers)).json()
    assert set(password["fields"]) == {"password", "resource_uri"}
    assert password["allowed_list_http_methods"] == []
    admin = (await client.get("/api/admin/schema/", headers=root.headers)).json()
    assert admin["fields"]["domains"]["related_type"] == "to_many"


async def test_set_and_tenancy(client: httpx.AsyncClient, root: Account, store: Store) -> None:
    mine = await add_domain(store, "mine.org")
    theirs = await add_domain(store, "theirs.org")
    own = await add_mailbox(store, "a@mine.org")
    other = await add_mailbox(store, "b@theirs.org")
    tenant = await add_admin(store, "tenant", domain_ids=(mine["id"],))

    both = f"/api/virtualuser/set/{own['id']};{other['id']}/"
    everything = (await client.get(both, headers=root.headers)).json()
    assert [obj["email"] for obj in everything["objects"]] == ["a@mine.org", "b@theirs.org"]
    assert "not_found" not in everything
    # Another tenant's object answers exactly as one that does not exist.
    scoped = (await client.get(both, headers=tenant.headers)).json()
    absent = (await client.get(f"/api/virtualuser/set/{own['id']};424242/",
                               headers=tenant.headers)).json()
    assert scoped == {"objects": [everything["objects"][0]], "not_found": [str(other["id"])]}
    assert absent["not_found"] == ["424242"] and absent["objects"] == scoped["objects"]
    domains = (await client.get(f"/api/virtualdomain/set/{theirs['id']};{mine['id']};x/",
                                headers=tenant.headers)).json()
    assert [obj["name"] for obj in domains["objects"]] == ["mine.org"]
    assert domains["not_found"] == [str(theirs["id"]), "x"]
    # set/ of keys: only one's own.
    keys = (await client.get(f"/api/apikey/set/{root.key_id};{tenant.key_id}/",
                             headers=tenant.headers)).json()
    assert [obj["id"] for obj in keys["objects"]] == [tenant.key_id]
    assert (await client.get(both)).status_code == 401
    # A tenant referring to another tenant's domain by absolute URL is refused like any other.
    refused = await client.post(
        "/api/virtualalias/",
        json={"source": "x@theirs.org", "destination": "a@mine.org",
              "domain": f"http://elsewhere.example/api/virtualdomain/{theirs['id']}/"},
        headers=tenant.headers,
    )
    assert refused.status_code == 400 and refused.json()["field"] == "domain"
    accepted = await client.post(
        "/api/virtualalias/",
        json={"source": "x@mine.org", "destination": "a@mine.org",
              "domain": f"https://admin.example:8443/api/virtualdomain/{mine['id']}/"},
        headers=tenant.headers,
    )
    assert accepted.status_code == 201, accepted.text
    filtered = await client.get(
        f"/api/virtualalias/?domain=http://h/api/virtualdomain/{mine['id']}/",
        headers=tenant.headers)
    assert [obj["source"] for obj in filtered.json()["objects"]] == ["x@mine.org"]


async def test_query_string_key_can_be_turned_off(store: Store, root: Account) -> None:
    async with live_adminapi(store, API_KEY_IN_QUERY=False) as url, \
            httpx.AsyncClient(base_url=url) as client:
        refused = await client.get(f"/api/virtualdomain/?username=root&api_key={root.secret}")
        header = await client.get("/api/virtualdomain/", headers=key_header("root", root.secret))
    assert refused.status_code == 400 and "API_KEY_IN_QUERY" in refused.json()["error"]
    assert header.status_code == 200


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    """The Python example of the README's admin API section."""
    section = README.read_text().split("## The admin API", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the admin API section has no Python example"
    return match.group(1)


async def test_readme_example_runs(
    server: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with store.write() as conn:
        await admins.create(conn, "test", username="admin", password="password",
                            is_superadmin=True)
    code = _readme_example().replace("http://127.0.0.1:8000", server)
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == "1\n"
    async with store.read() as conn:
        box = await mailboxes.get_by_email(conn, EVERYTHING, "ann@example.org")
    assert box["quota"] == 10**9


async def test_an_empty_put_or_patch_changes_nothing_anywhere(
    client: httpx.AsyncClient, root: Account, store: Store
) -> None:
    domain = await add_domain(store, "nanoy.fr", display_name="Nanoy", smtp_address="smtp.x")
    await add_mailbox(store, "a@nanoy.fr", quota=123)
    other = await add_domain(store, "other.fr")
    await add_admin(store, "tenant", domain_ids=(domain["id"],))
    async with store.write() as conn:
        await aliases.create(conn, "t", EVERYTHING,
                             {"source": "b@nanoy.fr", "destination": "a@nanoy.fr"})
        await aliasdomains.create(conn, "t", EVERYTHING,
                                  {"name": "alias.fr", "target_domain_id": other["id"]})
    # Every resource that PUT and PATCH reach, with values that differ from their defaults.
    changes = {
        "domainlimit": {"max_mailboxes": 9, "default_quota": 77},
        "clientconfig": {"imap_ssl_port": 10993, "mx_host": "mx.nanoy.fr"},
        "domainsendlimit": {"mailbox_messages_per_hour": 5, "reply": "REJECT busy"},
        "mailboxsendlimit": {"messages_per_hour": 3},
        "aliasdomain": {"active": False},
        "admin": {"email": "t@nanoy.fr"},
    }
    for name, values in changes.items():
        answer = await client.patch(f"/api/{name}/1/" if name != "admin" else "/api/admin/2/",
                                    json=values, headers=root.headers)
        assert answer.status_code == 202, (name, answer.text)
    for resource in (*GENERIC_RESOURCES,):
        if resource.update is None:
            continue
        url = f"/api/{resource.name}/{2 if resource.name == 'admin' else 1}/"
        before = (await client.get(url, headers=root.headers)).json()
        for method in ("PUT", "PATCH"):
            answer = await client.request(method, url, json={}, headers=root.headers)
            assert answer.status_code in (202, 204), (url, answer.text)
            after = (await client.get(url, headers=root.headers)).json()
            after.pop("updated_at", None)
            assert {k: v for k, v in before.items() if k != "updated_at"} == after, (url, method)


def test_redaction_covers_the_forms_a_url_takes() -> None:
    secret = "0123456789abcdef0123456789abcdef01234567"
    for line in (f"GET /api/x/?username=u&api_key={secret} HTTP/1.1",
                 f"GET /api/x/?api%5Fkey={secret}&_=1",
                 f"GET /api/x/?API_KEY={secret}", f"/api/x/?access_token={secret}#top",
                 f"GET /api/x/?api_key%3D{secret}"):
        redacted = logredact.redact(line)
        assert secret not in redacted and logredact.REDACTED in redacted, line
    assert logredact.redact("GET /api/x/?my_api_keyring=1") == "GET /api/x/?my_api_keyring=1"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s" %d',
                               ("127.0.0.1:1", "GET", f"/a/?api_key={secret}", 200), None)
    logredact.RedactQueryKeys().filter(record)
    assert record.args == ("127.0.0.1:1", "GET", "/a/?api_key=[redacted]", 200)
