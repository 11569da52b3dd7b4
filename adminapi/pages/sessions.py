"""Sessions of the web pages: a signed cookie, checked against the admin's row on every request.

The cookie holds a small JSON object (the admin's id, a binding to their password, the session
generation it was opened in, the CSRF token, the chosen language, messages waiting to be shown;
between the password and the second factor, the admin's id as "pending" instead, and the
WebAuthn challenge the browser was given)
and an HMAC-SHA256 of it made with a key derived from SECRET_KEY. Nothing in it is secret from
its holder; the signature makes it impossible to forge or alter.

What ends a session is kept server-side, in the admin's row: `session_generation`, which
logging out, a new password and deactivation increase (`dinomail.store.admins.end_sessions`).
A cookie of an older generation, or bound to another password hash, is no longer a login, even
if someone copied it before; otherwise a session lasts SESSION_LIFETIME_SECONDS at most.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dinomail.settings import LANGUAGES

COOKIE_NAME = "dinomail_session"
# A login lasts a working day at most, then the admin logs in again.
SESSION_LIFETIME_SECONDS = 12 * 3600
# Browsers keep about 4 KiB per cookie; a larger one would be dropped silently.
MAX_COOKIE_BYTES = 3800
# Messages waiting to be shown are few; more would only grow the cookie.
MAX_FLASHES = 5
# The second factor must follow the password within this time, or the password is asked again.
PENDING_LIFETIME_SECONDS = 10 * 60
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def derive_key(secret_key: str | bytes, purpose: str) -> bytes:
    """A key for one use, so a signature made for sessions is worth nothing anywhere else."""
    secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(secret, f"dinomail.pages.{purpose}".encode(), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """What one browser carries between requests."""

    csrf_token: str = field(default_factory=new_csrf_token)
    admin_id: int | None = None
    # HMAC of the admin's password hash when they logged in: a password change ends the session.
    password_binding: str = ""
    # The admin's session generation at login; a larger one in the database ends this session.
    generation: int = 0
    issued_at: int = field(default_factory=lambda: int(time.time()))
    language: str | None = None
    flashes: list[tuple[str, str]] = field(default_factory=list)
    # Half logged in: this admin gave their password and owes a second factor; nothing is
    # open to them but the second step (admin_id stays None until then).
    pending_admin_id: int | None = None
    # The last WebAuthn challenge given to this browser: an answer to any other is refused,
    # so a challenge serves only the session it was made for (and, server-side, only once).
    challenge: str = ""
    # Set when anything changed, so the cookie is sent again only then.
    modified: bool = False

    def flash(self, level: str, message: str) -> None:
        self.flashes = [*self.flashes, (level, message)][-MAX_FLASHES:]
        self.modified = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        shown, self.flashes = self.flashes, []
        if shown:
            self.modified = True
        return shown

    def log_in(self, admin_id: int, password_binding: str, generation: int) -> None:
        """Start a fresh session: a new CSRF token and lifetime, so nothing from before the
        login (a token planted by someone else) carries over."""
        self.admin_id = admin_id
        self.pending_admin_id = None
        self.challenge = ""
        self.password_binding = password_binding
        self.generation = generation
        self.csrf_token = new_csrf_token()
        self.issued_at = int(time.time())
        self.modified = True

    def log_in_pending(self, admin_id: int, password_binding: str, generation: int) -> None:
        """The password was right; the second factor is still owed (see `pending_admin_id`)."""
        self.log_in(admin_id, password_binding, generation)
        self.admin_id = None
        self.pending_admin_id = admin_id

    @property
    def pending_expired(self) -> bool:
        return time.time() - self.issued_at > PENDING_LIFETIME_SECONDS

    def choose_language(self, chosen: str | None) -> None:
        """Show the pages in `chosen` from now on, if it is one of theirs (else nothing)."""
        if chosen in LANGUAGES:
            self.language = chosen
            self.modified = True

    def log_out(self) -> None:
        self.admin_id = None
        self.pending_admin_id = None
        self.challenge = ""
        self.password_binding = ""
        self.generation = 0
        self.csrf_token = new_csrf_token()
        self.issued_at = int(time.time())
        self.modified = True

    def to_payload(self) -> dict[str, Any]:
        return {
            "a": self.admin_id, "b": self.password_binding, "g": self.generation,
            "c": self.csrf_token,
            "t": self.issued_at, "l": self.language, "f": self.flashes,
            "p": self.pending_admin_id, "w": self.challenge,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Session:
        admin_id = data.get("a")
        generation = data.get("g")
        flashes = data.get("f") or []
        pending = data.get("p")
        return cls(
            csrf_token=str(data["c"]),
            admin_id=admin_id if isinstance(admin_id, int) else None,
            password_binding=str(data.get("b") or ""),
            generation=generation if isinstance(generation, int) else -1,
            issued_at=int(data["t"]),
            language=data.get("l") if isinstance(data.get("l"), str) else None,
            flashes=[(str(level), str(text)) for level, text in flashes][-MAX_FLASHES:],
            pending_admin_id=pending if isinstance(pending, int) else None,
            challenge=str(data.get("w") or ""),
        )


class SessionCodec:
    """Signs sessions into cookie values and reads them back."""

    def __init__(self, secret_key: str | bytes) -> None:
        self._key = derive_key(secret_key, "session")

    def _signature(self, payload: str) -> str:
        return _b64encode(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def encode(self, session: Session) -> str:
        text = json.dumps(session.to_payload(), separators=(",", ":"), ensure_ascii=True)
        payload = _b64encode(text.encode("ascii"))
        return f"{payload}.{self._signature(payload)}"

    def decode(self, value: str, *, now: float | None = None) -> Session | None:
        """The session in a cookie value, or None if it is forged, damaged or expired."""
        payload, _, signature = value.partition(".")
        if not payload or not signature or not payload.isascii() or not signature.isascii():
            return None
        if not hmac.compare_digest(self._signature(payload), signature):
            return None
        try:
            session = Session.from_payload(json.loads(_b64decode(payload)))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        age = (time.time() if now is None else now) - session.issued_at
        if not 0 <= age <= SESSION_LIFETIME_SECONDS:
            return None
        return session

    def password_binding(self, admin_id: int, password_hash: str) -> str:
        message = f"{admin_id}:{password_hash}".encode()
        return _b64encode(hmac.new(self._key, message, hashlib.sha256).digest()[:16])


def is_loopback(request: Request) -> bool:
    return (request.url.hostname or "").lower() in LOOPBACK_HOSTS


def cookie_is_secure(request: Request, debug: bool) -> bool:
    """Secure (sent over HTTPS only) unless the page is plain HTTP and either DEBUG is on or the
    browser talks to a loopback name.

    Browsers drop Secure cookies set over plain http://127.0.0.1, which is how the quickstart
    (`make run`) serves the pages; over loopback the cookie never crosses a network. Elsewhere a
    session must not travel in clear, so a plain-HTTP site on a network name cannot keep a
    login, and its login page says why (see `insecure_transport`).
    """
    if request.url.scheme == "https":
        return True
    return not (debug or is_loopback(request))


def insecure_transport(request: Request, debug: bool) -> bool:
    """True when the session cookie will be Secure but the page came over plain HTTP."""
    return request.url.scheme != "https" and cookie_is_secure(request, debug)


def read_session(request: Request, codec: SessionCodec) -> tuple[Session, bool]:
    """The request's session and whether it came from a valid cookie (False: a new one)."""
    value = request.cookies.get(COOKIE_NAME)
    if value:
        session = codec.decode(value)
        if session is not None:
            return session, True
    return Session(modified=True), False


def write_session(
    response: Response, session: Session, codec: SessionCodec, *, secure: bool
) -> None:
    value = codec.encode(session)
    if len(value) > MAX_COOKIE_BYTES:
        # Only queued messages can grow it; drop them rather than lose the login.
        session.flashes = []
        value = codec.encode(session)
    response.set_cookie(
        COOKIE_NAME, value, max_age=SESSION_LIFETIME_SECONDS, path="/", secure=secure,
        httponly=True, samesite="lax",
    )
