"""The admin web pages: server-rendered HTML over `dinomail.store`, beside the REST API.

Everything is served by DinoMail itself (templates, stylesheet, icons): no CDN. Every page but
the login, the legal page and the static files needs a login; every change is a POST carrying
the session's CSRF token. See `web` for what every page shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adminapi.pages import (
    account,
    admins,
    aliasdomains,
    aliases,
    auditlog,
    authblocks,
    bulk,
    dkim,
    domains,
    limits,
    mailboxes,
    myaccount,
    overview,
    owner_routes,
    reports,
    sendlimits,
    twofactor,
    twofactor_admin,
    twofactor_login,
)
from adminapi.pages.web import (
    ROUTE_PREFIX,
    STATIC_DIR,
    View,
    build_state,
    error_page,
    log,
    page_endpoint,
)
from dinomail.store.errors import Unavailable

__all__ = ["build_state", "exception_handlers", "routes"]

# Paths that belong to programs (the API, monitoring, mail clients' autoconfiguration), not to
# people: their errors keep the API's JSON shape.
MACHINE_PREFIXES = ("/api/", "/metrics", "/healthz", "/mail/", "/.well-known/", "/autodiscover/")
# Static file URLs carry a digest of their content (`?v=`), so they may be cached for long.
STATIC_MAX_AGE = 7 * 24 * 3600

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _route(path: str, view: View, methods: tuple[str, ...] = ("GET",), *,
           public: bool = False, enrolment: bool = False) -> Route:
    """`enrolment`: open to an admin who must set up a second factor before anything else."""
    return Route(path, page_endpoint(view, public=public, enrolment=enrolment),
                 methods=list(methods), name=ROUTE_PREFIX + view.__name__)


def _redirect_to(target: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return RedirectResponse(target, status_code=308)

    return endpoint


class StaticHeaders:
    """The static files, with the headers every answer of the pages carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", f"public, max-age={STATIC_MAX_AGE}".encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


GET_POST = ("GET", "POST")


def routes() -> list[BaseRoute]:
    lists = {
        "/virtual-domains": "/virtual-domains/", "/virtual-users": "/virtual-users/",
        "/virtual-aliases": "/virtual-aliases/", "/alias-domains": "/alias-domains/",
        "/domain-limits": "/domain-limits/", "/blocked-logins": "/blocked-logins/",
        "/reports": "/reports/", "/account": "/account/", "/admins": "/admins/",
        "/audit-log": "/audit-log/",
    }
    return [
        _route("/", overview.home),
        _route("/login", account.login, GET_POST, public=True),
        _route("/login/two-factor", twofactor_login.second_step, GET_POST, public=True),
        _route("/logout", account.logout, ("POST",), enrolment=True),
        _route("/language", account.set_language, ("POST",), public=True),
        _route("/legals", overview.legals, public=True),
        _route("/search", overview.search),
        _route("/api-keys", account.api_keys, GET_POST),
        _route("/api-keys/{pk:int}/revoke", account.revoke_api_key, ("POST",)),

        _route("/account/", myaccount.account),
        _route("/account/password", myaccount.change_password, ("POST",)),
        _route("/account/language", myaccount.change_language, ("POST",)),
        _route("/account/two-factor", twofactor.two_factor, enrolment=True),
        _route("/account/two-factor/app", twofactor.totp_enrol, GET_POST, enrolment=True),
        _route("/account/two-factor/app/remove", twofactor.totp_remove, ("POST",),
               enrolment=True),
        _route("/account/two-factor/recovery-codes", twofactor.recovery_codes, ("POST",),
               enrolment=True),
        _route("/account/two-factor/passkeys/new", twofactor.passkey_new, GET_POST,
               enrolment=True),
        _route("/account/two-factor/passkeys/{pk:int}/remove", twofactor.passkey_remove,
               ("POST",), enrolment=True),
        _route("/admins/{pk:int}/twofactor/remove", twofactor_admin.admin_twofactor_remove,
               GET_POST),

        _route("/virtual-domains/", domains.domain_list),
        _route("/virtual-domains/new", domains.domain_new, GET_POST),
        _route("/virtual-domains/{pk:int}/edit", domains.domain_edit, GET_POST),
        _route("/virtual-domains/{pk:int}/delete", domains.domain_delete, GET_POST),
        _route("/virtual-domains/{pk:int}/autoconfig", domains.domain_autoconfig),
        _route("/virtual-domains/{pk:int}/update-status", domains.domain_update_status,
               ("POST",)),
        _route("/virtual-domains/{pk:int}/dkim-scan", domains.domain_dkim_scan),
        _route("/virtual-domains/{pk:int}/dmarc-scan", domains.domain_dmarc_scan),
        _route("/virtual-domains/{pk:int}/spf-scan", domains.domain_spf_scan),
        _route("/virtual-domains/{pk:int}/dkim", dkim.domain_dkim, GET_POST),
        _route("/virtual-domains/{pk:int}/dkim/retire", dkim.domain_dkim_retire, ("POST",)),

        _route("/virtual-users/", mailboxes.mailbox_list),
        _route("/virtual-users/new", mailboxes.mailbox_new, GET_POST),
        _route("/virtual-users/{pk:int}/edit", mailboxes.mailbox_edit, GET_POST),
        _route("/virtual-users/{pk:int}/edit-password", mailboxes.mailbox_password, GET_POST),
        _route("/virtual-users/{pk:int}/delete", mailboxes.mailbox_delete, GET_POST),

        _route("/bulk-import", bulk.bulk_import, GET_POST),

        _route("/virtual-aliases/", aliases.alias_list),
        _route("/virtual-aliases/new", aliases.alias_new, GET_POST),
        _route("/virtual-aliases/{pk:int}/edit", aliases.alias_edit, GET_POST),
        _route("/virtual-aliases/{pk:int}/delete", aliases.alias_delete, GET_POST),

        _route("/alias-domains/", aliasdomains.aliasdomain_list),
        _route("/alias-domains/new", aliasdomains.aliasdomain_new, GET_POST),
        _route("/alias-domains/{pk:int}/edit", aliasdomains.aliasdomain_edit, GET_POST),
        _route("/alias-domains/{pk:int}/delete", aliasdomains.aliasdomain_delete, GET_POST),

        _route("/domain-limits/", limits.limit_list),
        _route("/domain-limits/{pk:int}/edit", limits.limit_edit, GET_POST),
        _route("/domain-limits/{pk:int}/sending", sendlimits.domain_sending, GET_POST),
        _route("/domain-limits/{pk:int}/sending/reset", sendlimits.domain_sending_reset,
               ("POST",)),
        _route("/virtual-users/{pk:int}/sending", sendlimits.mailbox_sending, GET_POST),
        _route("/virtual-users/{pk:int}/sending/reset", sendlimits.mailbox_sending_reset,
               ("POST",)),

        _route("/reports/", reports.report_overview),
        _route("/virtual-domains/{pk:int}/mta-sts", reports.mtasts_edit, GET_POST),
        _route("/virtual-domains/{pk:int}/mta-sts/delete", reports.mtasts_delete, ("POST",)),

        _route("/blocked-logins/", authblocks.authblock_list),
        _route("/blocked-logins/{pk:int}/unblock", authblocks.authblock_unblock, ("POST",)),

        _route("/admins/", admins.admin_list),
        _route("/admins/new", admins.admin_new, GET_POST),
        _route("/admins/{pk:int}/edit", admins.admin_edit, GET_POST),
        _route("/admins/{pk:int}/deactivate", admins.admin_deactivate, ("POST",)),
        _route("/admins/{pk:int}/reset-password", admins.admin_reset_password, ("POST",)),

        _route("/audit-log/", auditlog.audit_log),
        _route("/audit-log/export.csv", auditlog.audit_log_export),
        # The other spelling, as the API's `/api/auditlog/`.
        _route("/auditlog/", auditlog.audit_log_moved),
        _route("/auditlog/export.csv", auditlog.audit_log_export_moved),

        # The mailbox owners' pages (`/me/`) and the admin's pages for the same settings.
        *owner_routes.routes(),
        Route("/me", _redirect_to("/me/"), methods=["GET"]),
        *(Route(path, _redirect_to(target), methods=["GET"]) for path, target in lists.items()),
        Mount("/static", app=StaticHeaders(StaticFiles(directory=STATIC_DIR)), name="static"),
    ]


def _is_machine_path(request: Request) -> bool:
    path = request.url.path
    return path == "/api" or path.startswith(MACHINE_PREFIXES)


def exception_handlers(api_handlers: Mapping[Any, Handler]) -> dict[Any, Handler]:
    """The API's handlers for its own paths (and the machine endpoints), error pages in the
    admin's language everywhere else."""

    def by_path(exc_class: Any, api_handler: Handler) -> Handler:
        async def handler(request: Request, exc: Exception) -> Response:
            if _is_machine_path(request):
                return await api_handler(request, exc)
            if isinstance(exc, HTTPException):
                kinds = {404: "not_found", 405: "method"}
                if exc.status_code not in kinds:
                    return await api_handler(request, exc)
                return error_page(request, exc.status_code, kinds[exc.status_code])
            if isinstance(exc, Unavailable):
                log.warning("database unavailable: %s", exc)
                return error_page(request, 503, "unavailable")
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
            return error_page(request, 500, "internal")

        handler.__name__ = f"{getattr(exc_class, '__name__', 'error')}_handler"
        return handler

    return {exc_class: by_path(exc_class, handler) for exc_class, handler in api_handlers.items()}
