"""Who is calling: API keys (`ApiKey user:key`, `Bearer key`, or tastypie's
`?username=…&api_key=…`) and, for `/api/apikey/` only, HTTP Basic credentials.

Basic credentials are checked with Argon2 (slow on purpose), so they are accepted only where a
key is obtained, and refused (403 `two_factor_required`) for an admin with a second factor;
every other request carries a key, checked with one indexed SHA-256 lookup.
A key in the query string is accepted, as tastypie's ApiKeyAuthentication did, unless the
API_KEY_IN_QUERY setting is off; URLs end up in access logs, so DinoMail's logs redact it
(`adminapi.logredact`). A header, when present, wins over the query string, as in tastypie.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from math import ceil
from typing import Any

from starlette.requests import Request

from adminapi.api.errors import ApiError, invalid
from adminapi.loginlimit import LoginRateLimiter, client_address
from dinomail import validation as v
from dinomail.store import Scope, Store, admins, apikeys, twofactor

# Query parameters that carry a key: tastypie's pair, and OAuth's habit (always refused).
QUERY_USERNAME = "username"
QUERY_KEY = "api_key"
QUERY_TOKEN = "access_token"
KEY_CHALLENGE = 'ApiKey realm="dinomail", Bearer realm="dinomail"'
BASIC_CHALLENGE = 'Basic realm="dinomail", charset="UTF-8"'
# Longer than any key DinoMail makes (40 characters); a longer value cannot be one.
MAX_KEY_LENGTH = 128


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated admin, what they may see, and the key they used (None for Basic)."""

    account: dict[str, Any]
    scope: Scope
    key: dict[str, Any] | None

    @property
    def admin_id(self) -> int:
        return int(self.account["id"])

    @property
    def username(self) -> str:
        return str(self.account["username"])

    @property
    def is_superadmin(self) -> bool:
        return bool(self.account["is_superadmin"])

    @property
    def read_only(self) -> bool:
        """A read-only key, or a read-only admin whatever their key."""
        return bool(self.key and self.key["read_only"]) or bool(self.account.get("read_only"))

    @property
    def actor(self) -> str:
        """Who the audit log names: the admin, and the key when one was used."""
        if self.key is None:
            return f"admin:{self.username}"
        return f"apikey:{self.key['prefix']}({self.username})"


def unauthenticated(message: str, *, basic: bool = False) -> ApiError:
    challenge = BASIC_CHALLENGE if basic else KEY_CHALLENGE
    return ApiError(
        401, message, code="unauthenticated", headers={"WWW-Authenticate": challenge}
    )


def _query_credentials(request: Request) -> tuple[str, str] | None:
    """(username, key) from tastypie's query parameters, None when the URL carries none.

    Refused with a 400 when the API_KEY_IN_QUERY setting is off, and `access_token` always:
    the original never took it, so only a misconfigured client sends it.
    """
    params = request.query_params
    if QUERY_TOKEN in params:
        raise invalid(QUERY_TOKEN, "credentials are not accepted in access_token; send the header "
                      "Authorization: ApiKey <username>:<key>")
    if QUERY_KEY not in params:
        return None
    if not request.app.state.settings.API_KEY_IN_QUERY:
        raise invalid(
            QUERY_KEY,
            "API keys are not accepted in the URL here (API_KEY_IN_QUERY is off); send the "
            "header Authorization: ApiKey <username>:<key>",
        )
    username, secret = params.get(QUERY_USERNAME, ""), params[QUERY_KEY]
    if not username or not secret:
        raise unauthenticated("the URL must carry both username and api_key")
    return username, secret


def _scheme_and_value(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "").strip()
    scheme, _, value = header.partition(" ")
    return scheme.lower(), value.strip()


def _parse_key(scheme: str, value: str) -> tuple[str | None, str] | None:
    """(username or None, secret) from an ApiKey or Bearer header; None if neither."""
    if scheme == "apikey":
        username, sep, secret = value.partition(":")
        if not sep or not username or not secret:
            raise unauthenticated("the ApiKey header must read ApiKey <username>:<key>")
        return username, secret
    if scheme == "bearer":
        if not value:
            raise unauthenticated("the Bearer header carries no key")
        return None, value
    return None


async def caller_from_key(store: Store, username: str | None, secret: str) -> Caller | None:
    if len(secret) > MAX_KEY_LENGTH or not secret.isascii():
        return None
    async with store.read() as conn:
        found = await apikeys.authenticate(conn, secret, username=username)
        if found is None:
            return None
        key, account = found
        scope = await admins.scope_of(conn, account)
        # The key's last use may have been recorded; that is bookkeeping, not a change to the
        # mail data, so it is committed here rather than through a write that wakes lookupd.
        await conn.commit()
    return Caller(account=account, scope=scope, key=key)


async def caller_from_basic(store: Store, value: str, request: Request) -> Caller | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthenticated("the Basic credentials are not valid base64 of user:password",
                              basic=True) from None
    username, sep, password = decoded.partition(":")
    if not sep:
        raise unauthenticated("the Basic credentials must be user:password", basic=True)
    try:
        username = v.normalize_username(username)
    except v.ValidationError:
        return None
    if "\x00" in password:
        return None
    # The same failed-login limits as the login page (adminapi.loginlimit).
    limiter: LoginRateLimiter = request.app.state.login_limiter
    address = client_address(request)
    wait = limiter.retry_after(username, address)
    if wait > 0:
        raise ApiError(429, "too many failed logins; try again later", code="too_many_logins",
                       headers={"Retry-After": str(ceil(wait))})
    async with store.read() as conn:
        account = await admins.authenticate(conn, username, password)
        if account is None:
            limiter.failed(username, address)
            return None
        scope = await admins.scope_of(conn, account)
        second_factor = await twofactor.is_enabled(conn, account["id"])
        await conn.commit()  # last_login
    if second_factor:
        # A password alone must not mint a key for an admin who logs in with two factors.
        # (Their count in the limiter is left as it is: this is not a full login.)
        raise ApiError(
            403, "this admin logs in with two-factor authentication, so a password alone "
            "cannot obtain or manage API keys; create a key on the API keys page of the web "
            "pages (after the second factor) and send it: Authorization: ApiKey "
            "<username>:<key>", code="two_factor_required",
        )
    limiter.succeeded(username)
    return Caller(account=account, scope=scope, key=None)


async def authenticate(request: Request, *, allow_basic: bool = False) -> Caller:
    """The caller of `request`, or a 401 (or a 400 for credentials the URL may not carry)."""
    store: Store = request.app.state.store
    scheme, value = _scheme_and_value(request)
    in_query = _query_credentials(request)
    if not scheme and in_query is not None:
        caller = await caller_from_key(store, *in_query)
        if caller is None:
            raise unauthenticated(
                "this API key is not valid (wrong, revoked, or not this user's)"
            )
        return caller
    if scheme == "basic":
        if not allow_basic:
            raise unauthenticated(
                "Basic credentials are accepted only by /api/apikey/; send an API key: "
                "Authorization: ApiKey <username>:<key>"
            )
        caller = await caller_from_basic(store, value, request)
        if caller is None:
            raise unauthenticated("wrong username or password", basic=True)
        return caller
    parsed = _parse_key(scheme, value)
    if parsed is None:
        raise unauthenticated(
            "authentication required: Authorization: ApiKey <username>:<key> (or Bearer <key>)"
            + ("; or Basic credentials to get a key" if allow_basic else ""),
            basic=allow_basic,
        )
    caller = await caller_from_key(store, *parsed)
    if caller is None:
        raise unauthenticated("this API key is not valid (wrong, revoked, or not this user's)")
    return caller


def require_write(caller: Caller) -> None:
    if caller.read_only:
        if caller.account.get("read_only"):
            raise ApiError(403, "this admin is read-only", code="read_only")
        raise ApiError(403, "this API key is read-only", code="read_only")


def require_superadmin(caller: Caller) -> None:
    if not caller.is_superadmin:
        raise ApiError(403, "only a superadmin may do this", code="forbidden")
