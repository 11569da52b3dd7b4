"""Every refusal of the API as one JSON shape: `{"error": "...", "field": ..., "code": "..."}`.

`error` is a sentence for a person, `field` names the input at fault (or is null), `code` is a
stable word for programs (for the store's refusals, the store's own code, such as
`mailbox_exists`). The store's and the validators' exceptions map onto statuses here, in
one table, so every endpoint answers the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dinomail.store.errors import Conflict, Forbidden, NotFound, StoreError, Unavailable
from dinomail.validation import ValidationError

log = logging.getLogger("dinomail.adminapi")

# Seconds a client should wait before retrying when the database does not answer.
RETRY_AFTER_UNAVAILABLE = 5


class ApiError(Exception):
    """A refusal decided by the API itself (authentication, input shape, permissions)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.headers = dict(headers or {})


def invalid(field: str | None, message: str) -> ApiError:
    return ApiError(400, message, code="invalid", field=field)


def not_found(what: str = "object") -> ApiError:
    return ApiError(404, f"{what} not found", code="not_found")


def forbidden(message: str, field: str | None = None) -> ApiError:
    return ApiError(403, message, code="forbidden", field=field)


def error_response(
    status: int,
    message: str,
    *,
    code: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": message, "field": field, "code": code}, status_code=status, headers=headers
    )


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.message, code=exc.code, field=exc.field, headers=exc.headers
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return error_response(400, exc.message, code=exc.code, field=exc.field)


def status_of(exc: StoreError) -> int:
    """The status of a store refusal; its code is the store's own."""
    if isinstance(exc, NotFound):
        # With a field, the object at fault is one the request body refers to (a domain URI):
        # the input is wrong, the URL is not.
        return 400 if exc.field else 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Forbidden):
        return 403
    # LimitExceeded among them: the request is well formed but asks for more than the domain
    # allows; the admin must change the request (or the limit), exactly as for invalid input.
    return 400


async def store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    return error_response(
        status_of(exc), exc.message, code=exc.code or "invalid", field=exc.field
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in the same shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: "no such endpoint", 405: "method not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    return error_response(
        exc.status_code,
        message,
        code=codes.get(exc.status_code, "error"),
        headers=exc.headers,
    )


async def database_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database unavailable: %s", exc)
    return error_response(
        503,
        "the database is not answering; try again shortly",
        code="unavailable",
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the client (it may hold data of other domains).
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error", code="internal")


EXCEPTION_HANDLERS = {
    ApiError: api_error,
    ValidationError: validation_error,
    StoreError: store_error,
    HTTPException: http_error,
    Unavailable: database_unavailable,
    Exception: internal_error,
}
