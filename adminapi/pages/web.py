"""What every page shares: the session, the logged-in admin, CSRF checks, rendering, and the
headers that keep the pages from being framed, sniffed or cached.

A page is an `async def view(page: Page) -> Response` wrapped by `page_endpoint`, which does the
rest: reads the session cookie, sends anyone not logged in to the login page, checks the CSRF
token of every POST before the view runs, turns "not found" and "forbidden" into pages, and
writes the session back when it changed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adminapi.api.auth import Caller
from adminapi.api.errors import ApiError
from adminapi.api.serialize import MAX_ID
from adminapi.loginlimit import LoginRateLimiter
from adminapi.pages.forms import BadForm, Form, FormData, read_form
from adminapi.pages.i18n import LANGUAGE_NAMES, Formats, choose_language, translations_for
from adminapi.pages.icons import icon
from adminapi.pages.refusals import translate_refusal
from adminapi.pages.sessions import (
    Session,
    SessionCodec,
    cookie_is_secure,
    read_session,
    write_session,
)
from dinomail import __version__
from dinomail.settings import LANGUAGES, Settings
from dinomail.store import Forbidden, NotFound, Scope, Store, StoreError, admins, twofactor
from dinomail.validation import ValidationError, display_domain

log = logging.getLogger("dinomail.pages")
T = TypeVar("T")

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
CSRF_FIELD = "csrf_token"
# Route names of the pages are kept apart from the API's (both have an `aliasdomain_list`).
ROUTE_PREFIX = "pages:"

# No inline script or style anywhere, no third-party origin: everything comes from DinoMail.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show data of the admin's domains (and, once, an API key): never keep them in a cache.
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class PagesState:
    """Built once per application: signing keys, counters and template environments."""

    codec: SessionCodec
    limiter: LoginRateLimiter
    environments: dict[str, Environment]
    static_version: str


def _static_version() -> str:
    """A digest of the static files, added to their URLs so a new release is never hidden by a
    browser's cached copy of the old stylesheet."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def make_environment(language: str) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(("html", "xml")),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # The i18n extension adds this method to the environment at run time; jinja2's types
    # cannot say so.
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        translations_for(language), newstyle=True
    )
    environment.globals["icon"] = icon
    environment.filters["idn"] = display_domain
    environment.filters["address"] = display_address
    return environment


def display_address(address: str) -> str:
    """An address with its domain in Unicode, as people write it (`eve@bücher.example`)."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{display_domain(domain)}" if at else address


def build_state(settings: Settings, limiter: LoginRateLimiter | None = None) -> PagesState:
    # Without a SECRET_KEY (tests, or an app built by hand) sessions are signed with a key of
    # this process: they end when it stops. `dinomail serve` always provides one.
    secret = settings.SECRET_KEY or secrets.token_bytes(32)
    return PagesState(
        codec=SessionCodec(secret),
        # The application's, shared with the API's Basic credentials.
        limiter=limiter or LoginRateLimiter(),
        environments={language: make_environment(language) for language in LANGUAGES},
        static_version=_static_version(),
    )


class Page:
    """One request to a page, with what its view needs to answer it."""

    def __init__(self, request: Request, session: Session) -> None:
        self.request = request
        self.state: PagesState = request.app.state.pages
        self.settings: Settings = request.app.state.settings
        self.store: Store = request.app.state.store
        self.session = session
        self.language = choose_language(request, session.language, self.settings.LANGUAGE_CODE)
        translations = translations_for(self.language)
        self._ = translations.gettext
        self.ngettext = translations.ngettext
        self.formats = Formats(self.language, self.settings.TIME_ZONE)
        self.caller: Caller | None = None
        self.form_data = FormData(())

    # --- who is asking ---------------------------------------------------------------------------

    @property
    def admin(self) -> Caller:
        assert self.caller is not None, "a view for logged-in admins only"
        return self.caller

    @property
    def scope(self) -> Scope:
        return self.admin.scope

    @property
    def is_superadmin(self) -> bool:
        return self.caller is not None and self.caller.is_superadmin

    # --- answering -------------------------------------------------------------------------------

    def url(self, name: str, /, **params: Any) -> str:
        return str(self.request.app.url_path_for(ROUTE_PREFIX + name, **params))

    def url_with(self, name: str, query: dict[str, Any] | None = None, /, **params: Any) -> str:
        kept = {key: value for key, value in (query or {}).items() if value not in (None, "")}
        return self.url(name, **params) + (f"?{urlencode(kept)}" if kept else "")

    def path_id(self, name: str = "pk") -> int:
        """An object id from the URL; ids beyond the tables' 32 bits name nothing."""
        value = int(self.request.path_params[name])
        if not 0 < value <= MAX_ID:
            raise NotFound("no such object", code="not_found")
        return value

    def static(self, path: str) -> str:
        return f"/static/{path}?v={self.state.static_version}"

    def flash(self, level: str, message: str) -> None:
        self.session.flash(level, message)

    def refusal(self, error: StoreError | ValidationError) -> str:
        return translate_refusal(error, self._, self.formats.size)

    def refuse_into(self, form: Form, error: StoreError | ValidationError,
                    fields: dict[str, str] | None = None) -> None:
        """Put a store refusal under the field it names (`fields` maps the store's names to the
        form's where they differ)."""
        name = (fields or {}).get(error.field or "", error.field)
        form.add_error(name, self.refusal(error))

    async def save(
        self, form: Form, write: Callable[[AsyncConnection], Awaitable[T]],
        fields: dict[str, str] | None = None,
    ) -> T | None:
        """Run one store action in a write transaction of its own. A refusal goes under its
        field of `form`, which is then not valid, and gives None; one that forbids the whole
        page (no field) is the 403 page."""
        try:
            async with self.store.write() as conn:
                return await write(conn)
        except (StoreError, ValidationError) as error:
            if isinstance(error, Forbidden) and error.field is None:
                raise
            self.refuse_into(form, error, fields)
            return None

    async def submit(
        self, form: Form, show: Callable[[int], Awaitable[Response]],
        posted: Callable[[], Awaitable[dict[str, Any]]],
        write: Callable[[AsyncConnection, dict[str, Any]], Awaitable[T]],
        fields: dict[str, str] | None = None,
    ) -> T | Response:
        """The flow of a create or edit form: `show` it (with a status) on a GET; on a POST read
        its `posted` values, show it again with a 400 while it has errors or the store refuses
        `write`, else give what the store wrote (the view then says so and redirects)."""
        if self.request.method == "GET":
            return await show(200)
        values = await posted()
        if not form.valid:
            return await show(400)
        saved = await self.save(form, lambda conn: write(conn, values), fields)
        if saved is None:
            return await show(400)
        return saved

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        environment = self.state.environments[self.language]
        values = {
            "page": self,
            "caller": self.caller,
            "csrf_token": self.session.csrf_token,
            "csrf_field": CSRF_FIELD,
            "flashes": self.session.pop_flashes(),
            "language": self.language,
            "languages": [(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
            "site_name": self.settings.DINOMAIL_NAME,
            "version": __version__,
            "formats": self.formats,
            "current_path": self.request.url.path,
            **context,
        }
        html = environment.get_template(template).render(values)
        return HTMLResponse(html, status_code=status)

    def redirect(self, url: str) -> RedirectResponse:
        # 303: after a POST, the browser follows with a GET (a refresh does not post again).
        return RedirectResponse(url, status_code=303)

    def error(self, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("error.html", status=status, code=status, title=title,
                           message=message)


View = Callable[[Page], Awaitable[Response]]
P = TypeVar("P", bound=Page)


def local_path(target: str | None, fallback: str = "/") -> str:
    """`target` if it is a path on this site, else `fallback`: a login link must not send the
    admin elsewhere (`//evil.example`, `https://…`, `/\\evil.example` all count as elsewhere)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return fallback
    if any(ord(char) < 32 or char == "\\" for char in target):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


async def _session_account(page: Page, admin_id: int) -> dict[str, Any] | None:
    """The admin a session names, if the session still holds: the admin is there, active,
    with the same password as when they logged in, and no logout or other end of their
    sessions since (the session generation)."""
    async with page.store.read() as conn:
        try:
            account = await admins.get(conn, admin_id)
            stored_hash = await admins.password_hash(conn, admin_id)
            generation = await admins.session_generation(conn, admin_id)
        except NotFound:
            return None
    binding = page.state.codec.password_binding(admin_id, stored_hash)
    if (
        not account["is_active"]
        or generation != page.session.generation
        or not hmac.compare_digest(binding, page.session.password_binding)
    ):
        return None
    return account


async def load_caller(page: Page) -> Caller | None:
    """The admin of the session, checked again on every request (`_session_account`)."""
    admin_id = page.session.admin_id
    if admin_id is None:
        return None
    account = await _session_account(page, admin_id)
    if account is None:
        return None
    scope = Scope() if account["is_superadmin"] else Scope(frozenset(account["domain_ids"]))
    return Caller(account=account, scope=scope, key=None)


async def load_pending(page: Page) -> dict[str, Any] | None:
    """The admin who gave their password and owes a second factor, if they still may give it
    (the same checks as a login, and not too long after the password)."""
    admin_id = page.session.pending_admin_id
    if admin_id is None or page.session.pending_expired:
        return None
    return await _session_account(page, admin_id)


async def must_enrol(page: Page) -> bool:
    """Whether TWO_FACTOR_REQUIRED asks the logged-in admin for a second factor they lack."""
    required = page.settings.TWO_FACTOR_REQUIRED
    if not twofactor.must_use(page.admin.account, required):
        return False
    async with page.store.read() as conn:
        return await twofactor.must_enrol(conn, page.admin.account, required)


def _same_origin(request: Request) -> bool:
    """A POST whose Origin header names another site is refused whatever its token (browsers
    send Origin with every POST; its absence, from older clients, is left to the token)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def csrf_ok(page: Page) -> bool:
    sent = page.form_data.get(CSRF_FIELD)
    expected = page.session.csrf_token
    return (
        bool(sent) and sent.isascii()
        and hmac.compare_digest(sent.encode(), expected.encode())
        and _same_origin(page.request)
    )


def csrf_failure(page: Page) -> HTMLResponse:
    _ = page._
    return page.error(
        403, _("Request refused"),
        _("This form was sent without a valid security token, so nothing was changed. Reload "
          "the page and send the form again. Cookies must be enabled for this site."),
    )


# What a read-only admin may still post: their own session, language and account (keys they make
# are read-only too, since the admin is).
READ_ONLY_MAY_POST = ("/logout", "/language", "/account", "/api-keys")


def read_only_refused(page: Page) -> bool:
    """A change posted by a read-only admin, refused whatever the page."""
    path = page.request.url.path
    return (page.caller is not None and page.caller.read_only
            and not any(path == allowed or path.startswith(allowed)
                        for allowed in READ_ONLY_MAY_POST))


def _login_redirect(page: Page) -> Response:
    request = page.request
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    query = {"next": target} if request.method == "GET" and target != "/" else {}
    return page.redirect(page.url_with("login", query))


def _finish(page: Page, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if page.session.modified:
        write_session(
            response, page.session, page.state.codec,
            secure=cookie_is_secure(page.request, page.settings.DEBUG),
        )
    return response


async def _answer(page: Page, view: View, public: bool, enrolment: bool) -> Response:
    _ = page._
    if not public or page.session.admin_id is not None:
        page.caller = await load_caller(page)
        if page.caller is None and page.session.admin_id is not None:
            page.session.log_out()
        if page.caller is None and not public:
            return _login_redirect(page)
    if page.caller is not None and not (public or enrolment) and await must_enrol(page):
        # Nothing else until a second factor is set up (TWO_FACTOR_REQUIRED).
        return page.redirect(page.url("two_factor"))
    if page.request.method == "POST":
        if (refused := await read_posted_form(page)) is not None:
            return refused
        if read_only_refused(page):
            return page.error(403, _("Not allowed"), _(
                "Your account is read-only: it can look at everything in its domains, but "
                "change nothing."))
    return await run_view(page, view)


async def read_posted_form(page: Page) -> Response | None:
    """Read a POST's form into `page.form_data`; the error page when it is no form of ours or
    its CSRF token is wrong."""
    try:
        page.form_data = await read_form(page.request)
    except BadForm:
        return page.error(400, page._("Bad request"),
                          page._("This request is not a form of DinoMail."))
    if not csrf_ok(page):
        return csrf_failure(page)
    return None


async def run_view(page: P, view: Callable[[P], Awaitable[Response]]) -> Response:
    """The view's answer, with the store's "not found" and "forbidden" as their pages (a tenant
    learns nothing more from one than from the other)."""
    try:
        return await view(page)
    except NotFound:
        return page.error(404, page._("Not found"),
                          page._("There is nothing here, or nothing you may see."))
    except Forbidden as error:
        return page.error(403, page._("Not allowed"), page.refusal(error))


def login_again(page: Page, login_route: str) -> Response:
    """Back to the login page when a half login (password done) waited too long for its
    second step."""
    page.flash("warning", page._("Log in again: the second step must follow the password "
                                 "within a few minutes."))
    return page.redirect(page.url(login_route))


async def logged_out(page: Page, login_route: str,
                     end_sessions: Callable[[AsyncConnection], Awaitable[object]]) -> Response:
    """Log out: server-side first (`end_sessions`: a copy of this cookie taken before, or the
    account's other browsers, are over too; the cookie alone could not say so), then in this
    browser, and back to the login page."""
    async with page.store.write() as conn:
        await end_sessions(conn)
    page.session.log_out()
    page.flash("success", page._("You are logged out."))
    return page.redirect(page.url(login_route))


def page_endpoint(
    view: View, *, public: bool = False, enrolment: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of a view; `public` views are shown without a login, and
    `enrolment` ones also to an admin who must set up a second factor first."""

    async def endpoint(request: Request) -> Response:
        session, _ = read_session(request, request.app.state.pages.codec)
        page = Page(request, session)
        try:
            response = await _answer(page, view, public, enrolment)
        except ApiError as error:
            # The only ones raised here come from reading the body (too large, bad length).
            response = page.error(error.status, page._("Bad request"), error.message)
        return _finish(page, response)

    endpoint.__name__ = view.__name__
    return endpoint


# --- pages for errors raised outside a view (no such URL, database down) -------------------------


def error_page(request: Request, status: int, kind: str) -> Response:
    """An error page in the admin's language, for requests no view answered."""
    state: PagesState | None = getattr(request.app.state, "pages", None)
    if state is None:
        return HTMLResponse(f"<h1>{status}</h1>", status_code=status)
    session, _ = read_session(request, state.codec)
    page = Page(request, session)
    _ = page._
    titles = {
        "not_found": (_("Not found"), _("There is nothing here, or nothing you may see.")),
        "method": (_("Not allowed"), _("This page cannot be used that way.")),
        "unavailable": (_("Database unavailable"),
                        _("The database is not answering. Try again in a moment.")),
        "internal": (_("Internal error"),
                     _("Something went wrong on the server; it has been logged.")),
    }
    title, message = titles[kind]
    # A fresh session made here would carry no data worth a cookie.
    page.session.modified = False
    try:
        response: Response = page.error(status, title, message)
    except Exception:
        log.exception("cannot render the error page")
        response = HTMLResponse(f"<h1>{status}</h1>", status_code=status)
    return _finish(page, response)

