"""Dovecot's authentication policy: the decisions (one wrong password retried is not a guesser;
spraying and guessing are tarpitted, then refused; success forgets; trusted networks pass), and
the endpoint in the lookup daemon, with the JSON bodies Dovecot 2.3 sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from dinomail.store import Store
from lookupd.authpolicy import AuthPolicy, AuthPolicyConfig, client_key
from tests.support.authpolicy_requests import Clock, body, fail, pwhash
from tests.support.lookupd import running_lookupd


def policy(**config: Any) -> tuple[AuthPolicy, Clock]:
    clock = Clock()
    return AuthPolicy(AuthPolicyConfig(**config), clock=clock), clock


def test_pwhash_matches_dovecot() -> None:
    # Observed from Dovecot 2.3.19 (protocols.md): 12 bits are 4 hex digits.
    assert len(pwhash("alice@example.com", "x")) == 4


def test_one_old_password_retried_is_not_a_guesser() -> None:
    auth, _ = policy()
    for _ in range(50):
        assert fail(auth, "alice@example.org", "old password", "192.0.2.7") == (0, "")


def test_spraying_from_one_address_is_slowed_then_refused() -> None:
    auth, _ = policy()
    answers = [fail(auth, f"user{n}@example.org", "Summer2024!", "192.0.2.66")
               for n in range(25)]
    statuses = [status for status, _ in answers]
    assert statuses[:5] == [0] * 5  # five distinct failures are allowed freely
    assert statuses[5:9] == [2, 4, 6, 8]  # then 2 s more per failure
    assert statuses[9:20] == [10, 12, 14] + [15] * 8  # up to the maximum
    assert statuses[20:] == [-1] * 5  # refused from the 20th
    assert answers[-1][1] == "Too many failed logins, try again later"
    # Another client is not affected; the refusals did not extend the record.
    assert auth.allow(body("user0@example.org", "x", "192.0.2.67")) == (0, "")
    assert auth.blocked_clients() == 1


def test_guessing_one_login_from_many_addresses() -> None:
    auth, _ = policy(login_block_after=8)
    statuses = [fail(auth, "alice@example.org", f"guess{n}", f"198.51.100.{n}")[0]
                for n in range(12)]
    assert statuses == [0, 0, 0, 0, 0, 2, 4, 6, -1, -1, -1, -1]
    assert auth.blocked_logins() == 1
    assert auth.allow(body("bob@example.org", "x", "198.51.100.1")) == (0, "")


def test_success_forgets_that_login_only() -> None:
    auth, _ = policy(ip_tarpit_after=3)
    fail(auth, "alice@example.org", "wrong1", "192.0.2.7")
    fail(auth, "alice@example.org", "wrong2", "192.0.2.7")
    fail(auth, "bob@example.org", "wrong", "192.0.2.7")
    assert auth.allow(body("carol@example.org", "x", "192.0.2.7"))[0] == 2
    auth.report(body("Alice@Example.org", "right", "192.0.2.7", success=True,
                     policy_reject=False))
    assert auth.logins.count("alice@example.org", 0) == 0
    # bob's failure from that address stays: one owned account cannot wipe a client's record.
    assert auth.clients.count("192.0.2.7", 0) == 1
    assert auth.allow(body("carol@example.org", "x", "192.0.2.7")) == (0, "")


def test_failures_are_forgotten_after_the_window() -> None:
    auth, clock = policy(ip_block_after=3)
    for n in range(3):
        fail(auth, f"user{n}@example.org", "x", "192.0.2.9")
    assert auth.allow(body("a@example.org", "x", "192.0.2.9"))[0] == -1
    clock.now += 599
    assert auth.allow(body("a@example.org", "x", "192.0.2.9"))[0] == -1
    clock.now += 2
    assert auth.allow(body("a@example.org", "x", "192.0.2.9")) == (0, "")
    auth.report(body("a@example.org", "right", "192.0.2.1", success=True, policy_reject=False))
    assert len(auth.clients) == 0 and len(auth.logins) == 0


def test_trusted_networks_and_ipv6_prefixes() -> None:
    auth, _ = policy(ip_block_after=2, allow_networks=("127.0.0.0/8", "::1", "10.1.0.0/16"))
    for n in range(5):
        assert fail(auth, f"user{n}@example.org", "x", "10.1.2.3") == (0, "")
        assert fail(auth, f"user{n}@example.org", "x", "::1") == (0, "")
    assert len(auth.clients) == 0 and len(auth.logins) == 0
    # One IPv6 client owns a /64: changing the low bits does not give a fresh record.
    fail(auth, "a@example.org", "x", "2001:db8:1:2::10")
    fail(auth, "b@example.org", "x", "2001:db8:1:2:ffff::20")
    assert auth.allow(body("c@example.org", "x", "2001:db8:1:2::30"))[0] == -1
    assert auth.allow(body("c@example.org", "x", "2001:db8:1:3::30")) == (0, "")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("not an address") is None


def test_missing_fields_are_tolerated() -> None:
    auth, _ = policy()
    assert auth.allow({}) == (0, "")
    auth.report({"success": False})
    auth.report({"login": "a@example.org", "success": False})
    assert auth.logins.count("a@example.org", 1000) == 1


# --- the endpoint in the lookup daemon -----------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_endpoint_as_dovecot_calls_it(store: Store, tmp_path: Path) -> None:
    async with running_lookupd(
        store, tmp_path, AUTH_POLICY_IP_TARPIT_AFTER="2", AUTH_POLICY_IP_BLOCK_AFTER="3",
        AUTH_POLICY_ALLOW_NETWORKS="10.0.0.0/8",  # not loopback: the client below is
    ) as (_, settings):
        base = f"http://{settings.LOOKUPD_HTTP_LISTEN}"
        headers = {"User-Agent": "dovecot/auth-policy-client"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
            async def call(command: str, fields: dict[str, Any]) -> httpx.Response:
                return await http.post(f"/dovecot/auth-policy?command={command}", json=fields)

            statuses = []
            for n in range(4):
                answer = await call("allow", body(f"u{n}@example.org", "pw", "203.0.113.5"))
                assert answer.status_code == 200
                statuses.append(answer.json()["status"])
                report = await call("report", body(f"u{n}@example.org", "pw", "203.0.113.5",
                                                   success=False,
                                                   policy_reject=statuses[-1] < 0))
                assert (report.status_code, report.json()) == (200, {})
            assert statuses == [0, 0, 2, -1]
            refused = (await call("allow", body("x@example.org", "pw", "203.0.113.5"))).json()
            assert refused == {"status": -1, "msg": "Too many failed logins, try again later"}

            assert (await call("frobnicate", {})).status_code == 400
            bad = await http.post("/dovecot/auth-policy?command=allow", content=b"[1, 2")
            assert bad.status_code == 400
            assert (await http.get("/dovecot/auth-policy?command=allow")).status_code == 405

            metrics = (await http.get("/metrics")).text
    requests = "dinomail_lookupd_auth_policy_requests_total"
    assert f'{requests}{{command="allow",decision="reject"}} 2.0' in metrics
    assert f'{requests}{{command="report",decision="failure"}} 3.0' in metrics
    assert 'dinomail_lookupd_auth_policy_blocked{kind="client"} 1.0' in metrics


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_endpoint_with_an_api_key(store: Store, tmp_path: Path) -> None:
    key = "k" * 32
    async with running_lookupd(store, tmp_path, AUTH_POLICY_API_KEY=key) as (_, settings):
        url = f"http://{settings.LOOKUPD_HTTP_LISTEN}/dovecot/auth-policy?command=allow"
        fields = body("a@example.org", "pw", "203.0.113.5")
        async with httpx.AsyncClient(timeout=10) as http:
            # Dovecot's `auth_policy_server_api_header = <key>` sends it as X-API-Key.
            ok = await http.post(url, json=fields, headers={"X-API-Key": key})
            assert (ok.status_code, ok.json()) == (200, {"status": 0, "msg": ""})
            # Without it, even from loopback: the key is what is trusted once set.
            assert (await http.post(url, json=fields)).status_code == 403
            wrong = await http.post(url, json=fields, headers={"X-API-Key": "x" * 32})
            assert wrong.status_code == 403
