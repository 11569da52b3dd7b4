"""The public autoconfig endpoints, answered without login where mail clients look:

- `GET /mail/config-v1.1.xml` and `GET /.well-known/autoconfig/mail/config-v1.1.xml`
  (Thunderbird; the domain from `?emailaddress=`, else from the Host `autoconfig.<domain>`);
- `POST /autodiscover/autodiscover.xml`, path in any case (Outlook, POX);
- `GET /mail/apple.mobileconfig?emailaddress=` (an iPhone or a Mac installs it).

They answer for any address of an active mail domain without saying whether the mailbox
exists, so they tell nothing that DNS and the domain's own documentation would not. An unknown
domain is a 404, a malformed address a 400.
"""

from __future__ import annotations

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adminapi.autoconfig.documents import (
    AutodiscoverRequestError,
    autodiscover_response,
    mobileconfig,
    parse_autodiscover_request,
    thunderbird_config,
)
from adminapi.autoconfig.servers import ClientSettings, load_client_settings, public_client_settings
from dinomail import validation as v
from dinomail.store import Store
from dinomail.store.scope import Scope as DomainScope

THUNDERBIRD_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
MOBILECONFIG_PATH = "/mail/apple.mobileconfig"
PUBLIC_PATHS = frozenset({*THUNDERBIRD_PATHS, AUTODISCOVER_PATH, MOBILECONFIG_PATH})
# A real Autodiscover request is about 400 bytes.
MAX_AUTODISCOVER_BODY = 16 * 1024
# Host name prefixes clients put before the domain.
HOST_PREFIXES = ("autoconfig.", "autodiscover.")
XML = "application/xml"
MOBILECONFIG = "application/x-apple-aspen-config"


class AutoconfigError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(error: AutoconfigError) -> Response:
    return PlainTextResponse(error.message + "\n", status_code=error.status)


def _address(value: str) -> str:
    try:
        return v.normalize_email(value, "emailaddress")
    except v.ValidationError as error:
        raise AutoconfigError(400, f"not a valid email address: {error.message}") from None


def _host_domains(request: Request) -> list[str]:
    """Domains the Host header may name: `autoconfig.example.org` → example.org, then the host
    itself (Thunderbird's `/.well-known/` URL is on the domain)."""
    host = request.headers.get("host", "").strip().lower()
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    candidates = [host[len(prefix):] for prefix in HOST_PREFIXES if host.startswith(prefix)]
    candidates.append(host)
    names = []
    for candidate in candidates:
        try:
            names.append(v.normalize_domain(candidate, "host"))
        except v.ValidationError:
            continue
    return names


async def _settings_for(request: Request, names: list[str]) -> ClientSettings:
    store: Store = request.app.state.store
    async with store.read() as conn:
        for name in names:
            found = await public_client_settings(conn, name)
            if found is not None:
                return found
    raise AutoconfigError(404, "no mail domain here by that name")


async def thunderbird(request: Request) -> Response:
    try:
        address = request.query_params.get("emailaddress")
        if address is not None:
            names = [v.domain_of(_address(address))]
        else:
            names = _host_domains(request)
            if not names:
                raise AutoconfigError(400, "say which address: ?emailaddress=you@example.org")
        settings = await _settings_for(request, names)
    except AutoconfigError as error:
        return _answer(error)
    return Response(thunderbird_config(settings), media_type=XML)


async def autodiscover(request: Request) -> Response:
    try:
        body = await _limited_body(request)
        try:
            asked = parse_autodiscover_request(body)
        except AutodiscoverRequestError as error:
            raise AutoconfigError(400, str(error)) from None
        email = _address(asked.email)
        settings = await _settings_for(request, [v.domain_of(email)])
    except AutoconfigError as error:
        return _answer(error)
    return Response(autodiscover_response(settings, email), media_type=XML)


async def _limited_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_AUTODISCOVER_BODY:
        raise AutoconfigError(413, f"an Autodiscover request is at most {MAX_AUTODISCOVER_BODY} "
                                   "bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_AUTODISCOVER_BODY:
            raise AutoconfigError(413, f"an Autodiscover request is at most "
                                       f"{MAX_AUTODISCOVER_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def apple(request: Request) -> Response:
    try:
        address = request.query_params.get("emailaddress")
        if not address:
            raise AutoconfigError(400, "say which address: ?emailaddress=you@example.org")
        email = _address(address)
        settings = await _settings_for(request, [v.domain_of(email)])
    except AutoconfigError as error:
        return _answer(error)
    return Response(
        mobileconfig(settings, email), media_type=MOBILECONFIG,
        headers={"Content-Disposition":
                 f'attachment; filename="{settings.domain}.mobileconfig"'},
    )


def routes() -> list[BaseRoute]:
    return [
        *(Route(path, thunderbird, methods=["GET"]) for path in THUNDERBIRD_PATHS),
        Route(AUTODISCOVER_PATH, autodiscover, methods=["POST"]),
        Route(MOBILECONFIG_PATH, apple, methods=["GET"]),
    ]


class HostCheck:
    """Starlette's host check (ALLOWED_HOSTS), except on the autoconfig paths.

    Clients ask those at `autoconfig.<domain>`, `autodiscover.<domain>` and `<domain>` for every
    hosted domain, names ALLOWED_HOSTS cannot list in advance; these endpoints need no session
    and build no URL from the Host header, which is what the check protects. Autodiscover's
    path is also matched in any case here, as Outlook and Exchange do.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.checked = TrustedHostMiddleware(app, allowed_hosts=allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"].lower() == AUTODISCOVER_PATH and scope["path"] != AUTODISCOVER_PATH:
                scope["path"] = AUTODISCOVER_PATH
                scope["raw_path"] = AUTODISCOVER_PATH.encode()
            if scope["path"] in PUBLIC_PATHS:
                await self.app(scope, receive, send)
                return
        await self.checked(scope, receive, send)


async def download(store: Store, scope: DomainScope, domain_id: int) -> tuple[bytes, str]:
    """The admin's download (the original's `/virtual-domains/<pk>/autoconfig`): the
    Thunderbird document of a domain the admin sees, and its file name. NotFound otherwise."""
    async with store.read() as conn:
        settings = await load_client_settings(conn, scope, domain_id)
    return thunderbird_config(settings), "autoconfig.xml"
