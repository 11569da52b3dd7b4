"""The admin HTTP application: the REST API, the web pages, metrics and health, behind the host
check."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adminapi import api, autoconfig, pages
from adminapi.api import logredact
from adminapi.api.errors import EXCEPTION_HANDLERS
from adminapi.loginlimit import LoginRateLimiter
from adminapi.metrics import HttpMetrics, MetricsMiddleware
from adminapi.mtasts import MtaStsHost
from dinomail.dnscheck import DnsRefresher
from dinomail.dnscheck.metrics import DnsCheckMetrics
from dinomail.reports.metrics import ReportMetrics
from dinomail.reports.service import ReportsService
from dinomail.settings import Settings
from dinomail.store import Store, audit


async def healthz(request: Request) -> JSONResponse:
    """Up, and the database hands out a connection."""
    try:
        async with request.app.state.store.read():
            pass
    except Exception:
        return JSONResponse({"status": "database unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


class ApiTrailingSlash:
    """The original's URLs end in `/` and it redirected the others; clients that drop the slash
    get the same answer here, without a redirect (a redirected POST loses its body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            last = path.rsplit("/", 1)[-1]
            if (path == "/api" or path.startswith("/api/")) and last and "." not in last:
                # In place: the metrics middleware reads the matched route from this scope.
                scope["path"] = path + "/"
                if scope.get("raw_path"):
                    scope["raw_path"] = scope["raw_path"] + b"/"
        await self.app(scope, receive, send)


class AuditAddress:
    """Changes made while answering a request are logged with the client's address (the peer
    of the connection, as the login limits see it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        with audit.client_address(client[0] if client else None):
            await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def background_tasks(app: Starlette) -> AsyncIterator[None]:
    """The admin side's background tasks (DNS checks, DMARC and TLS reports), started and
    stopped with the server that serves the app: `dinomail serve` and `dinomail adminapi` run
    this lifespan. One that fails to start stops those started before it."""
    async with contextlib.AsyncExitStack() as started:
        refresher: DnsRefresher = app.state.dns_refresher
        refresher.start()
        started.push_async_callback(refresher.stop)
        reports: ReportsService = app.state.reports
        await reports.start()
        started.push_async_callback(reports.stop)
        yield


def create_app(settings: Settings, store: Store) -> Starlette:
    # API keys may come in URLs (tastypie's ?api_key=); no log of this process shows them.
    logredact.install()
    metrics = HttpMetrics()
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        *api.routes(),
        # Public, without login: where mail clients look for their settings.
        *autoconfig.routes(),
        # After the API's: a page never shadows an API path.
        *pages.routes(),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            # `mta-sts.<domain>` hosts get their policy and nothing else, before the host check.
            Middleware(MtaStsHost),
            # ALLOWED_HOSTS, except on the autoconfig paths (asked at every hosted domain).
            Middleware(autoconfig.HostCheck, allowed_hosts=list(settings.ALLOWED_HOSTS)),
            Middleware(ApiTrailingSlash),
            Middleware(AuditAddress),
        ],
        # The API's JSON errors on its paths; pages in the admin's language elsewhere.
        exception_handlers=pages.exception_handlers(EXCEPTION_HANDLERS),
        lifespan=background_tasks,
    )
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    # Started by the app's lifespan, in the process that serves it (`background_tasks`).
    app.state.dns_refresher = DnsRefresher(store, settings, DnsCheckMetrics(metrics.registry))
    app.state.reports = ReportsService(store, settings, ReportMetrics(metrics.registry))
    # One count of failed admin logins for the pages and the API's Basic credentials.
    app.state.login_limiter = LoginRateLimiter()
    app.state.pages = pages.build_state(settings, app.state.login_limiter)
    return app
