"""The mailbox owners' pages under `/me/`: their own session, apart from the admins'.

A mailbox owner's session is a cookie of its own (`dinomail_me`, path `/me`), signed with a key
derived for this use only: an admin's session cookie is no mailbox session and the other way
round, since neither signature verifies with the other's key, and neither cookie is read where
the other is. Admin pages and the API never look at this cookie, so a mailbox owner reaches none
of them; these pages never look at the admin's, so an admin reaches none of these without
logging in as a mailbox.

The cookie holds the mailbox id (in `Session.admin_id`), a binding to the mailbox's password
hash (a new password, by the owner or an admin, ends every other session of the mailbox) and
the mailbox's session generation at login (`dinomail.store.ownerlogin`: logging out and a new
password increase it, so a copied cookie stops working). A mailbox with an authenticator app is
only "pending" (`Session.pending_admin_id`) between its password and a code of the app. Each
request checks again that the mailbox may log in (active, its domain active, self-service on
for its domain and in the SELF_SERVICE setting).

Otherwise the pages are the admin pages' (`adminapi.pages.web`): templates, languages, CSRF on
every POST, security headers.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from adminapi.api.errors import ApiError
from adminapi.pages.sessions import (
    SESSION_LIFETIME_SECONDS,
    Session,
    SessionCodec,
    cookie_is_secure,
    derive_key,
)
from adminapi.pages.web import SECURITY_HEADERS, Page, read_posted_form, run_view
from dinomail.selfservice import Owner
from dinomail.store import ownerlogin, selfservice

COOKIE_NAME = "dinomail_me"
COOKIE_PATH = "/me"
ROUTE_PREFIX = "me:"



class OwnerCodec(SessionCodec):
    """Signs owners' sessions with their own key, so no admin cookie is ever one of them."""

    def __init__(self, secret_key: str | bytes) -> None:
        self._key = derive_key(secret_key, "owner-session")


def owner_codec(request: Request) -> OwnerCodec:
    """The application's codec, made on first use (without a SECRET_KEY, with a key of this
    process, as the admin sessions)."""
    state = request.app.state
    codec: OwnerCodec | None = getattr(state, "owner_codec", None)
    if codec is None:
        codec = OwnerCodec(state.settings.SECRET_KEY or secrets.token_bytes(32))
        state.owner_codec = codec
    return codec




class OwnerPage(Page):
    """A request to one of the owners' pages."""

    def __init__(self, request: Request, session: Session) -> None:
        super().__init__(request, session)
        self.owner: Owner | None = None
        self.codec = owner_codec(request)

    @property
    def me(self) -> Owner:
        assert self.owner is not None, "a view for logged-in mailbox owners only"
        return self.owner

    def url(self, name: str, /, **params: Any) -> str:
        return str(self.request.app.url_path_for(ROUTE_PREFIX + name, **params))

    def admin_url(self, name: str, /, **params: Any) -> str:
        return super().url(name, **params)

    def render(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return super().render(template, status=status, owner=self.owner, **context)

    def error(self, status: int, title: str, message: str) -> HTMLResponse:
        return self.render("me_error.html", status=status, code=status, title=title,
                           message=message)

    def binding(self, password_hash: str) -> str:
        return self.codec.password_binding(self.me.mailbox_id, password_hash)


OwnerView = Callable[[OwnerPage], Awaitable[Response]]


def read_owner_session(request: Request, codec: OwnerCodec) -> Session:
    value = request.cookies.get(COOKIE_NAME)
    if value:
        session = codec.decode(value)
        if session is not None:
            return session
    return Session(modified=True)


async def load_owner(page: OwnerPage) -> Owner | None:
    """The session's mailbox, if it may still log in with the password it logged in with."""
    mailbox_id = page.session.admin_id
    if mailbox_id is None:
        return None
    return await _valid_owner(page, mailbox_id)


async def _valid_owner(page: OwnerPage, mailbox_id: int) -> Owner | None:
    """The mailbox, if it may log in and this session is still one of its own: opened with its
    current password, and not ended since (its session generation)."""
    async with page.store.read() as conn:
        record = await selfservice.owner_record(conn, mailbox_id,
                                                enabled=page.settings.SELF_SERVICE)
        generation = await ownerlogin.session_generation(conn, mailbox_id)
    if record is None or generation != page.session.generation:
        return None
    binding = page.codec.password_binding(mailbox_id, record["password"])
    if not hmac.compare_digest(binding, page.session.password_binding):
        return None
    return Owner(record["id"], record["email"], record["domain_id"])


async def load_pending_owner(page: OwnerPage) -> Owner | None:
    """The mailbox that gave its password and owes a code of its app (`me_login_code`), if the
    code still may follow: within a few minutes, the password and the session unchanged."""
    mailbox_id = page.session.pending_admin_id
    if mailbox_id is None or page.session.pending_expired:
        return None
    return await _valid_owner(page, mailbox_id)


def _finish(page: OwnerPage, response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if page.session.modified:
        response.set_cookie(
            COOKIE_NAME, page.codec.encode(page.session), max_age=SESSION_LIFETIME_SECONDS,
            path=COOKIE_PATH, httponly=True, samesite="lax",
            secure=cookie_is_secure(page.request, page.settings.DEBUG),
        )
    return response


async def _answer(page: OwnerPage, view: OwnerView, public: bool) -> Response:
    _ = page._
    if not page.settings.SELF_SERVICE:
        # Off everywhere: the pages do not exist.
        page.session.modified = False
        return page.error(404, _("Not found"), _("There is nothing here, or nothing you may see."))
    if page.session.admin_id is not None:
        page.owner = await load_owner(page)
        if page.owner is None:
            page.session.log_out()
    if page.owner is None and not public:
        return page.redirect(page.url("me_login"))
    if page.request.method == "POST" and (refused := await read_posted_form(page)) is not None:
        return refused
    return await run_view(page, view)


def owner_endpoint(
    view: OwnerView, *, public: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of an owner's view; `public` views are shown without a login."""

    async def endpoint(request: Request) -> Response:
        codec = owner_codec(request)
        page = OwnerPage(request, read_owner_session(request, codec))
        try:
            response = await _answer(page, view, public)
        except ApiError as error:
            response = page.error(error.status, page._("Bad request"), error.message)
        return _finish(page, response)

    endpoint.__name__ = view.__name__
    return endpoint
