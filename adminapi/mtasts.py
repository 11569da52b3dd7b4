"""The `mta-sts.<domain>` hosts: the domain's MTA-STS policy at `/.well-known/mta-sts.txt`, and
nothing else of the admin site.

Senders fetch the policy over HTTPS from `mta-sts.<domain>` for every domain that publishes
one, names ALLOWED_HOSTS cannot list in advance; so this responder sits before the host check
and answers every request for such a host itself: the policy (text/plain, exactly the RFC 8461
document) for GET and HEAD on the one path, 404 for anything else (another path, a domain
without a policy, an inactive or unknown domain), 405 for other methods. No session, cookie or
URL built from the Host header: nothing the host check protects is reachable from here.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dinomail import mtasts
from dinomail.settings import Settings
from dinomail.store import Store
from dinomail.store import mtasts as mtasts_store

# A policy is small and read often; senders cache it for max_age anyway.
CACHE_SECONDS = 300


def _host_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1")
    return ""


async def policy_response(store: Store, settings: Settings, domain: str, path: str,
                          method: str) -> Response:
    if path != mtasts.POLICY_PATH:
        return PlainTextResponse("not found\n", status_code=404)
    if method not in ("GET", "HEAD"):
        return PlainTextResponse("method not allowed\n", status_code=405,
                                 headers={"Allow": "GET, HEAD"})
    try:
        async with store.read() as conn:
            policy = await mtasts_store.served(conn, domain, settings.MX_HOST)
    except Exception:  # a database outage is a temporary failure, never a 404
        return PlainTextResponse("temporarily unavailable\n", status_code=503,
                                 headers={"Retry-After": "60"})
    if policy is None:
        return PlainTextResponse("not found\n", status_code=404)
    return Response(policy.text(), media_type="text/plain",
                    headers={"Cache-Control": f"max-age={CACHE_SECONDS}"})


class MtaStsHost:
    """Answers every HTTP request whose Host is `mta-sts.<domain>`; passes the rest on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            domain = mtasts.domain_of_host(_host_of(scope))
            if domain is not None:
                state = scope["app"].state
                response = await policy_response(state.store, state.settings, domain,
                                                 scope["path"], scope["method"])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
