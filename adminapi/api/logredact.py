"""Keeping API keys that travel in URLs (`?username=…&api_key=…`) out of every log.

Tastypie's clients put their key in the query string, and an access log writes whole URLs. A
filter on the loggers that see URLs (uvicorn's access and error logs) and on the handlers of the
root logger replaces the value of `api_key` and `access_token` with `[redacted]` in a record's
message and in its arguments, so the record keeps its shape (uvicorn's access formatter unpacks
its arguments) and only the secret goes.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
# The parameter names as they may appear in a raw query string, percent-encoded or not.
_SECRET_PARAMETER = re.compile(
    r"(?i)((?:^|[?&;\s])(?:api(?:_|%5f)key|access(?:_|%5f)token)(?:=|%3d))[^&;#\s\"']*"
)
# Loggers that write request lines: records logged there never reach the root logger's
# handlers when uvicorn's own logging configuration is used (it does not propagate them).
URL_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    return _SECRET_PARAMETER.sub(rf"\1{REDACTED}", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1")).encode("latin-1")
    return value


class RedactQueryKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(value) for value in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        return True


_FILTER = RedactQueryKeys()


def install() -> None:
    """Add the filter where URLs are logged; calling it again adds nothing."""
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in URL_LOGGERS]
    targets += logging.getLogger().handlers
    for target in targets:
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
