"""Request bodies on the lookup daemon's HTTP listener: one size limit, however the body is
framed, and JSON parsed with a nesting limit.

Size. Dovecot's requests are small (an auth policy body is a handful of short strings, the
lookups have none). `BodyLimit` wraps the whole application: a `Content-Length` above
MAX_BODY_BYTES is answered 413 before anything is read; a body without one (chunked) is counted
as it arrives, and reading stops with a 413 as soon as it passes the limit. The 413 closes the
connection (the rest of the body is never read). The application then gets the body whole, so
no endpoint can read more than the limit, whichever it is.

Depth. Python's json module recurses once per nesting level: 16 KB of `[` was a
RecursionError (a 500). `load_json` refuses nesting deeper than MAX_JSON_DEPTH before parsing,
with a linear scan that does not recurse; Dovecot's bodies nest two levels at most (`a/b=v`
attributes become `{"a": {"b": "v"}}`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 8

# A JSON string (escapes included), and the brackets outside strings.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class BodyLimit:
    """ASGI middleware: bodies above `max_bytes` get 413 and are not read further."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client is gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps(
            {"error": f"request body larger than {self.max_bytes} bytes"}
        ).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        })
        await send({"type": "http.response.body", "body": body})


def _has_body(scope: Scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The server has checked it is a number; a huge one is simply too large.
            return int(value) if value.isdigit() and len(value) <= 18 else MAX_BODY_BYTES * 2
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole body once, then what the server sends next
    (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class JSONBodyError(ValueError):
    """The body is not JSON of the expected shape (answered 400)."""


def load_json(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in `data` (UTF-8, as RFC 8259 asks between systems); JSONBodyError if it
    is not JSON, or nests deeper than `max_depth` (checked first, without recursion)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONBodyError("not UTF-8") from None
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONBodyError(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, too many digits
        raise JSONBodyError(f"not JSON: {str(error)[:100]}") from None


def load_json_object(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    value = load_json(data, max_depth)
    if not isinstance(value, dict):
        raise JSONBodyError("not a JSON object")
    return value
