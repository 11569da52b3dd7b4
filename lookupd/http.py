"""The lookup daemon's HTTP listener (`LOOKUPD_HTTP_LISTEN`): `/metrics` and `/healthz`, and the
endpoints Dovecot calls over HTTP.

Dovecot's Lua driver (`conf/dovecot/dinomail-auth.lua`) asks:
- `GET /dovecot/passdb/<login>` and `GET /dovecot/userdb/<login>` → 200 with the same flat JSON
  object the dict proxy answers (`lookupd.dovecot.auth`), 404 when no mailbox has that name, 503
  while no snapshot is loaded or when the lookup failed (Lua answers "internal failure", never
  "unknown user");
- `GET /dovecot/users` → a JSON array of every mailbox's address (`doveadm user '*'`);
- `POST /dovecot/verify` (form fields `user`, `password`, `service`) → 200 with
  `{"result": "ok" | "mismatch", "fields": {...}}`, 404 for an unknown login, 503 when it cannot
  be told: the main password or an app password allowed for the service (`lookupd.dovecot.verify`).
`?dovecot=2.4` on the userdb lookup names the quota as Dovecot 2.4 does (`quota_storage_size`).
Dovecot's auth policy (`auth_policy_server_url`) posts to `/dovecot/auth-policy` (see
`lookupd.authpolicy`, which has its own key, AUTH_POLICY_API_KEY).

These answers hold password hashes. They are given only to clients on the loopback interface or
a unix socket, unless `DOVECOT_HTTP_SECRET` is set: then to any client sending
`Authorization: Bearer <secret>`, and to no other (loopback included), so that a Dovecot on
another machine can use them over a private network. `/metrics` and `/healthz` stay open.

Every request body, on every path, is bounded (`lookupd.httpbody`: 16 KiB, however framed).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lookupd.answer import Answers, Failure
from lookupd.authpolicy import AuthPolicy, auth_policy_route, is_local
from lookupd.dovecot.auth import UserdbSettings, iter_users, lookup_passdb, lookup_userdb
from lookupd.dovecot.verify import PasswordVerifier
from lookupd.httpbody import BodyLimit
from lookupd.metrics import LookupdMetrics
from lookupd.refresher import SnapshotHolder
from lookupd.snapshot import Snapshot

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
DOVECOT_HTTP_PROTOCOL = "dovecot_http"
DOVECOT_HTTP_MAPS = ("passdb", "userdb", "users", "verify")
# Longest accepted value of a verify form field (a password is at most 1024 characters, each
# up to 4 UTF-8 bytes).
MAX_VERIFY_FIELD = 4096
# Addresses per chunk of `/dovecot/users`: a million are sent without stalling other requests.
USERS_CHUNK = 2000

log = logging.getLogger("dinomail.lookupd.http")


def create_http_app(
    holder: SnapshotHolder,
    metrics: LookupdMetrics,
    *,
    userdb: UserdbSettings | None = None,
    dovecot_secret: str = "",
    auth_policy: AuthPolicy | None = None,
    auth_policy_api_key: str = "",
    verifier: PasswordVerifier | None = None,
) -> Starlette:
    userdb = userdb or UserdbSettings()
    recorder = metrics.recorder(DOVECOT_HTTP_PROTOCOL, DOVECOT_HTTP_MAPS)
    expected_authorization = f"Bearer {dovecot_secret}".encode() if dovecot_secret else b""

    def allowed(request: Request) -> bool:
        if not expected_authorization:
            return is_local(request)
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        return hmac.compare_digest(given, expected_authorization)

    answers = Answers(DOVECOT_HTTP_PROTOCOL, lambda: holder.current, recorder)

    def dovecot_lookup(
        kind: str, lookup: Callable[[Snapshot, str, Request], dict[str, Any] | None]
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not allowed(request):
                return JSONResponse({"error": "forbidden"}, status_code=403)
            fields = answers.answer(
                kind, lambda snapshot, login: lookup(snapshot, login, request),
                request.path_params["login"],
            )
            if fields is None:
                return JSONResponse({"error": "no such user"}, status_code=404)
            if isinstance(fields, Failure):
                return _unavailable(fields)
            return JSONResponse(fields, headers={"Cache-Control": "no-store"})

        return endpoint

    async def dovecot_users(request: Request) -> Response:
        if not allowed(request):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        emails = answers.answer("users", _all_users, "")
        if isinstance(emails, Failure):
            return _unavailable(emails)
        return StreamingResponse(_json_array(emails or []), media_type="application/json")

    async def dovecot_verify(request: Request) -> Response:
        if not allowed(request):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        started = time.perf_counter()
        snapshot = holder.current
        if snapshot is None or verifier is None:
            recorder.lookup("verify", "temp", time.perf_counter() - started)
            return JSONResponse({"error": "mail data not loaded yet"}, status_code=503)
        form = _verify_form(await request.body())
        if form is None:
            # Not text a stored address or password could be: a wrong password, as Dovecot says.
            recorder.lookup("verify", "notfound", time.perf_counter() - started)
            return JSONResponse({"result": "mismatch", "fields": {}},
                                headers={"Cache-Control": "no-store"})
        try:
            verdict = await verifier.verify(snapshot, form["user"], form["password"],
                                            form["service"])
        except Exception:
            log.exception("Dovecot password check failed")
            recorder.lookup("verify", "temp", time.perf_counter() - started)
            recorder.lookup_error("exception")
            return JSONResponse({"error": "internal error"}, status_code=503)
        elapsed = time.perf_counter() - started
        if verdict.result == "temp":
            recorder.lookup("verify", "temp", elapsed)
            return JSONResponse({"error": "cannot check this password now"}, status_code=503)
        if verdict.result == "unknown":
            recorder.lookup("verify", "notfound", elapsed)
            return JSONResponse({"error": "no such user"}, status_code=404)
        recorder.lookup("verify", "ok", elapsed)
        return JSONResponse({"result": verdict.result, "fields": verdict.fields},
                            headers={"Cache-Control": "no-store"})

    async def healthz(request: Request) -> JSONResponse:
        # 503 until the first snapshot: a load balancer must not send traffic that would only
        # get temporary failures.
        if holder.current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        # "stale": answering from the snapshot saved on disk, the database not reached yet.
        return JSONResponse({
            "status": "stale" if holder.stale else "ok",
            "snapshot_age_seconds": round(metrics.current_snapshot_age(), 3),
        })

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)

    def passdb_lookup(snapshot: Snapshot, login: str, request: Request) -> dict[str, Any] | None:
        return lookup_passdb(snapshot, login)

    def userdb_lookup(snapshot: Snapshot, login: str, request: Request) -> dict[str, Any] | None:
        dovecot24 = request.query_params.get("dovecot") == "2.4"
        return lookup_userdb(snapshot, login, userdb, dovecot24=dovecot24)

    return Starlette(middleware=[Middleware(BodyLimit)], exception_handlers={
        HTTPException: _json_error,
    }, routes=[
        Route("/healthz", healthz),
        Route("/metrics", prometheus),
        Route("/dovecot/passdb/{login:path}", dovecot_lookup("passdb", passdb_lookup)),
        Route("/dovecot/userdb/{login:path}", dovecot_lookup("userdb", userdb_lookup)),
        Route("/dovecot/users", dovecot_users),
        Route("/dovecot/verify", dovecot_verify, methods=["POST"]),
        # Dovecot's auth_policy_server_url (brute-force protection, lookupd.authpolicy).
        *([auth_policy_route(auth_policy, auth_policy_api_key)] if auth_policy else []),
    ])


def _verify_form(body: bytes) -> dict[str, str] | None:
    """The `user`, `password` and `service` of a verify request; None when one is missing,
    repeated, too long, or not UTF-8 without NUL."""
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for name in ("user", "password", "service"):
        values = fields.get(name)
        if values is None or len(values) != 1:
            return None
        value = values[0]
        if len(value) > MAX_VERIFY_FIELD or "\0" in value:
            return None
        form[name] = value
    return form


def _all_users(snapshot: Snapshot, _: str) -> list[str]:
    return list(iter_users(snapshot))


def _unavailable(failure: Failure) -> Response:
    # Dovecot's Lua driver answers "internal failure", never "unknown user".
    return JSONResponse({"error": failure.reason}, status_code=503)


async def _json_error(request: Request, error: Exception) -> Response:
    """404, 405, ... as JSON, like every other answer of this listener."""
    assert isinstance(error, HTTPException)
    return JSONResponse({"error": error.detail}, status_code=error.status_code,
                        headers=error.headers)


async def _json_array(items: list[str]) -> AsyncIterator[bytes]:
    """`items` as one JSON array, sent in chunks."""
    yield b"["
    for start in range(0, len(items), USERS_CHUNK):
        chunk = json.dumps(items[start:start + USERS_CHUNK], ensure_ascii=False)[1:-1]
        yield (b"," if start else b"") + chunk.encode("utf-8")
        await asyncio.sleep(0)  # let lookups on other connections through
    yield b"]"
