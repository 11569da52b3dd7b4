"""Reading a request's JSON body: size limit, content type, syntax, and text that SQL can store."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from adminapi.api.errors import ApiError, invalid
from dinomail.errortext import first_line

# Far above any real object (a DKIM key is ~1 KiB); a larger body is refused before it is parsed.
MAX_BODY_BYTES = 64 * 1024


def _too_large() -> ApiError:
    return ApiError(
        413, f"the request body is larger than {MAX_BODY_BYTES} bytes", code="too_large"
    )


def is_json(content_type: str) -> bool:
    """`application/json`, with any parameters (`; charset=UTF-8`) and in any case."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json"


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise invalid(None, "the Content-Length header is not a number")
        if int(declared) > MAX_BODY_BYTES:
            raise _too_large()
    chunks: list[bytes] = []
    size = 0
    # Counted while streaming too: a chunked body has no Content-Length to trust.
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it (413 if too large)."""
    body = await read_body(request)
    if not is_json(request.headers.get("content-type", "")):
        raise invalid(None, "send the body as JSON, with the header Content-Type: application/json")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise invalid(None, "the body is not valid UTF-8") from None
    except (ValueError, RecursionError) as error:
        raise invalid(None, f"the body is not valid JSON ({first_line(error, 200)})") from None
    if not isinstance(data, dict):
        raise invalid(None, "the body must be a JSON object, as in {\"name\": \"example.org\"}")
    return data
