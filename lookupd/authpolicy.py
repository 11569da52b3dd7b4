"""Dovecot's authentication policy server (`auth_policy_server_url`): brute-force protection.

Dovecot POSTs JSON to `/dovecot/auth-policy?command=allow` before (and after) checking a
password, and `?command=report` with the outcome (protocols.md section 6). The body holds
`login`, `remote` (the client address), `pwhash` (a short hash of nonce, login and the password
tried, never the password) and `success`/`policy_reject` in reports. `allow` is answered
`{"status": 0}` (go on), `{"status": N}` (go on after N seconds: a tarpit) or
`{"status": -1, "msg": ...}` (refuse, msg shown to the client); `report` with `{}`.

What counts as a failure: a distinct wrong password, not a retry of the same one.
- Per client: distinct (login, pwhash) pairs that failed from that address (IPv6: its /64,
  which one client can always change within). A phone retrying an old password every minute is
  one failure; spraying many logins or guessing many passwords are many.
- Per login: distinct pwhash values that failed for that login, from any address: guessing
  one account from many addresses.
A failure is remembered for AUTH_POLICY_WINDOW seconds after it was last seen. Reports of
refusals by this policy (`policy_reject`) are not failures: a blocked client's further tries do
not extend its block, which ends one window after its last real failure.

Answers: past `*_TARPIT_AFTER` failures, a tarpit of AUTH_POLICY_TARPIT_SECONDS per failure
beyond the threshold (up to AUTH_POLICY_MAX_TARPIT); past `*_BLOCK_AFTER`, -1 (0 disables).
Blocking a login lets a stranger lock its owner out by guessing: that is why its default
threshold is high; it stops guessing one account from a botnet.

A successful login forgets that login's failures (the user found the right password), and that
login's pairs in the client's failures, but not the client's failures for other logins: an
attacker who owns one account must not be able to wipe its record by logging into it.
Clients in AUTH_POLICY_ALLOW_NETWORKS (loopback by default: webmail, doveadm) are never
counted nor slowed down.

All of this is in memory, per lookup daemon: a restart forgets it, like Dovecot's own
auth_failure_delay; with several daemons behind one Dovecot, point Dovecot at one of them.
The current blocks are copied to the database every AUTH_POLICY_SYNC_INTERVAL, where admins
list them and unblock (`lookupd.authblocks`); an unblock makes this daemon forget the key's
failures (`release`). No request waits for that I/O.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dinomail.store.authblocks import CLIENT, LOGIN
from lookupd.httpbody import JSONBodyError, load_json_object
from lookupd.metrics import LookupdMetrics

PATH = "/dovecot/auth-policy"
BLOCK_MESSAGE = "Too many failed logins, try again later"
# Keys (clients, logins) remembered; past this, the longest quiet is forgotten first.
MAX_TRACKED = 100_000
# What is kept of each field: the failures remembered are keyed by them, so their length
# bounds that memory (a login is an address: 254 characters; a pwhash is at most a whole
# SHA-512 in hex; an address, IPv6 with a zone at most). A longer login still counts, cut.
MAX_LOGIN_CHARS = 320
MAX_PWHASH_CHARS = 128
MAX_REMOTE_CHARS = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AuthPolicyConfig:
    window: float = 600.0
    ip_tarpit_after: int = 5
    ip_block_after: int = 20
    login_tarpit_after: int = 5
    login_block_after: int = 30
    tarpit_seconds: int = 2
    max_tarpit: int = 15
    allow_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    block_message: str = BLOCK_MESSAGE


class FailureLog:
    """Distinct failures per key, each forgotten `window` seconds after it was last seen.

    Both levels are dicts in least-recently-seen order (an update moves its entry to the end),
    so expiring only ever looks at the front.
    """

    def __init__(self, window: float, *, max_keys: int = MAX_TRACKED, max_items: int = 100):
        self.window = window
        self.max_keys = max_keys
        self.max_items = max_items
        self._keys: dict[str, dict[Hashable, float]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def record(self, key: str, item: Hashable, now: float) -> None:
        items = self._keys.pop(key, None)
        if items is None:
            if len(self._keys) >= self.max_keys:
                del self._keys[next(iter(self._keys))]
            items = {}
        self._keys[key] = items
        items.pop(item, None)
        items[item] = now
        if len(items) > self.max_items:
            del items[next(iter(items))]

    def count(self, key: str, now: float) -> int:
        items = self._keys.get(key)
        if items is None:
            return 0
        horizon = now - self.window
        while items:
            first = next(iter(items))
            if items[first] >= horizon:
                break
            del items[first]
        if not items:
            del self._keys[key]
        return len(items)

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def forget_items(self, key: str, which: Callable[[Any], bool]) -> None:
        items = self._keys.get(key)
        if items is None:
            return
        for item in [item for item in items if which(item)]:
            del items[item]
        if not items:
            del self._keys[key]

    def expire(self, now: float) -> None:
        """Drop the keys whose every failure is older than the window."""
        horizon = now - self.window
        keys = self._keys
        while keys:
            first = next(iter(keys))
            items = keys[first]
            # The last item is the latest failure.
            if items and next(reversed(items.values())) >= horizon:
                break
            del keys[first]

    def blocked(self, threshold: int, now: float) -> list[tuple[str, int, float, float]]:
        """(key, failures, last failure, end of the block) of every key with at least
        `threshold` failures (none when 0). The block ends when enough failures have left the
        window for the count to fall below the threshold."""
        if threshold <= 0:
            return []
        self.expire(now)
        found = []
        for key in list(self._keys):
            count = self.count(key, now)
            if count < threshold:
                continue
            # Items are in the order they were last seen: the oldest first.
            seen = list(self._keys[key].values())
            found.append((key, count, seen[-1], seen[count - threshold] + self.window))
        return found

    def over(self, threshold: int, now: float) -> int:
        """How many keys have at least `threshold` failures (0: none, whatever the counts)."""
        if threshold <= 0:
            return 0
        self.expire(now)
        return sum(1 for key in list(self._keys) if self.count(key, now) >= threshold)


def client_key(remote: str) -> str | None:
    """What a client is counted as: its IPv4 address, or the /64 of its IPv6 address."""
    try:
        address = ipaddress.ip_address(remote.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def parse_networks(values: tuple[str, ...] | list[str]) -> tuple[Network, ...]:
    """CIDR networks (a bare address is its own /32 or /128); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not a network, as in 192.0.2.0/24 or ::1") from None
    return tuple(networks)


DECISIONS = {
    "allow": ("allow", "tarpit", "reject", "trusted"),
    "report": ("success", "failure", "policy_reject", "trusted"),
}


class AuthPolicyMetrics:
    def __init__(self, metrics: LookupdMetrics, policy: AuthPolicy) -> None:
        decisions = Counter(
            "dinomail_lookupd_auth_policy_requests",
            "Dovecot auth policy requests, by command (allow, report) and decision "
            "(allow: allow, tarpit, reject, trusted; report: success, failure, policy_reject, "
            "trusted).",
            ["command", "decision"], registry=metrics.registry,
        )
        self.decisions = {
            (command, decision): decisions.labels(command, decision)
            for command, names in DECISIONS.items()
            for decision in names
        }
        blocked = Gauge(
            "dinomail_lookupd_auth_policy_blocked",
            "Clients (kind=client) and logins (kind=login) refused now for too many failed "
            "logins.", ["kind"], registry=metrics.registry,
        )
        blocked.labels("client").set_function(policy.blocked_clients)
        blocked.labels("login").set_function(policy.blocked_logins)
        tracked = Gauge(
            "dinomail_lookupd_auth_policy_tracked",
            "Clients and logins with recent failed logins, by kind.",
            ["kind"], registry=metrics.registry,
        )
        tracked.labels("client").set_function(lambda: len(policy.clients))
        tracked.labels("login").set_function(lambda: len(policy.logins))


class AuthPolicy:
    """The decisions (no I/O). `clock` is monotonic seconds."""

    def __init__(
        self,
        config: AuthPolicyConfig | None = None,
        *,
        metrics: LookupdMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or AuthPolicyConfig()
        self.clock = clock
        self.trusted = parse_networks(self.config.allow_networks)
        items = max(self.config.ip_block_after, self.config.ip_tarpit_after,
                    self.config.login_block_after, self.config.login_tarpit_after) + 1
        self.clients = FailureLog(self.config.window, max_items=items)
        self.logins = FailureLog(self.config.window, max_items=items)
        self._metrics = AuthPolicyMetrics(metrics, self) if metrics is not None else None

    def _is_trusted(self, remote: str) -> bool:
        try:
            address = ipaddress.ip_address(remote.strip())
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def _count(self, command: str, decision: str) -> None:
        if self._metrics is not None:
            self._metrics.decisions[(command, decision)].inc()

    def allow(self, request: dict[str, Any]) -> tuple[int, str]:
        """(status, msg) for `command=allow`."""
        remote = _text(request.get("remote"), MAX_REMOTE_CHARS)
        if self._is_trusted(remote):
            self._count("allow", "trusted")
            return 0, ""
        now = self.clock()
        config = self.config
        client = client_key(remote)
        login = _text(request.get("login"), MAX_LOGIN_CHARS).lower()
        client_failures = self.clients.count(client, now) if client else 0
        login_failures = self.logins.count(login, now) if login else 0
        if ((config.ip_block_after and client_failures >= config.ip_block_after)
                or (config.login_block_after and login_failures >= config.login_block_after)):
            self._count("allow", "reject")
            return -1, config.block_message
        excess = max(
            _beyond(client_failures, config.ip_tarpit_after),
            _beyond(login_failures, config.login_tarpit_after),
        )
        if excess:
            self._count("allow", "tarpit")
            return min(config.max_tarpit, config.tarpit_seconds * excess), ""
        self._count("allow", "allow")
        return 0, ""

    def report(self, request: dict[str, Any]) -> None:
        """Record the outcome of an authentication (`command=report`)."""
        remote = _text(request.get("remote"), MAX_REMOTE_CHARS)
        if self._is_trusted(remote):
            self._count("report", "trusted")
            return
        now = self.clock()
        client = client_key(remote)
        login = _text(request.get("login"), MAX_LOGIN_CHARS).lower()
        if request.get("success") is True:
            self._count("report", "success")
            if login:
                self.logins.forget(login)
                if client:
                    self.clients.forget_items(client, lambda item: item[0] == login)
        elif request.get("policy_reject") is True:
            self._count("report", "policy_reject")
        else:
            self._count("report", "failure")
            pwhash = _text(request.get("pwhash"), MAX_PWHASH_CHARS)
            if client:
                self.clients.record(client, (login, pwhash), now)
            if login:
                self.logins.record(login, pwhash, now)
        self.clients.expire(now)
        self.logins.expire(now)

    def blocks(self) -> list[tuple[str, str, int, float, float]]:
        """(kind, key, failures, last failure, end) of every client and login refused now;
        times on `clock`."""
        now = self.clock()
        return [
            (kind, *found)
            for kind, log, threshold in (
                (CLIENT, self.clients, self.config.ip_block_after),
                (LOGIN, self.logins, self.config.login_block_after),
            )
            for found in log.blocked(threshold, now)
        ]

    def release(self, kind: str, key: str) -> None:
        """An admin unblocked this client or login: forget its failures."""
        (self.clients if kind == CLIENT else self.logins).forget(key)

    def blocked_clients(self) -> int:
        return self.clients.over(self.config.ip_block_after, self.clock())

    def blocked_logins(self) -> int:
        return self.logins.over(self.config.login_block_after, self.clock())


def _text(value: object, limit: int) -> str:
    """A string field, cut at `limit` characters (anything else: empty)."""
    return value[:limit] if isinstance(value, str) else ""


def _beyond(failures: int, threshold: int) -> int:
    """How many failures past a tarpit threshold (the first one at the threshold counts)."""
    if not threshold or failures < threshold:
        return 0
    return failures - threshold + 1


def is_local(request: Request) -> bool:
    """Whether the HTTP client is on this machine: loopback, or a unix socket."""
    client = request.client
    if client is None or not client.host:
        return True  # a unix socket
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


def auth_policy_route(policy: AuthPolicy, api_key: str = "") -> Route:
    """The endpoint, for `lookupd.http`. With `api_key` set, a request must carry it in
    `X-API-Key` (Dovecot's `auth_policy_server_api_header = <key>` sends exactly that);
    without, only loopback and unix-socket clients are answered."""
    expected = api_key.encode()

    def authorized(request: Request) -> bool:
        if not expected:
            return is_local(request)
        given = request.headers.get("x-api-key", "").encode("latin-1", "replace")
        return hmac.compare_digest(given, expected)

    async def endpoint(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        command = request.query_params.get("command")
        if command not in ("allow", "report"):
            return JSONResponse({"error": "command must be allow or report"}, status_code=400)
        try:
            # The body's size is bounded for the whole listener (`lookupd.httpbody.BodyLimit`).
            fields = load_json_object(await request.body())
        except JSONBodyError as error:
            return JSONResponse({"error": f"bad request: {error}"}, status_code=400)
        if command == "report":
            policy.report(fields)
            return JSONResponse({})
        status, message = policy.allow(fields)
        return JSONResponse({"status": status, "msg": message})

    return Route(PATH, endpoint, methods=["POST"])
