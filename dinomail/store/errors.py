"""What a store call can refuse, beside `dinomail.validation.ValidationError`."""

from __future__ import annotations

from collections.abc import Mapping

from dinomail.errortext import first_line


class StoreError(Exception):
    """Base of the store's refusals.

    `code` is the refusal's stable name (the API returns it, the pages translate by it) and
    `params` the values its sentence is made of; `message` is the English sentence, free to be
    reworded. `field` names the input at fault when there is one.
    """

    def __init__(
        self, message: str, field: str | None = None, *,
        code: str = "", params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.params: dict[str, object] = dict(params or {})


class NotFound(StoreError):
    """No such object, or not one the caller may see (the two look alike on purpose)."""


class Conflict(StoreError):
    """The object would duplicate one that exists (a unique name or address)."""


class LimitExceeded(StoreError):
    """A domain limit (mailboxes, aliases, quota) forbids the write."""


class Forbidden(StoreError):
    """The caller may see the object but not do this to it (e.g. outside their domains)."""


class Unavailable(Exception):
    """The database cannot be used now: down, unreachable, busy, or not answering in time.

    Not a refusal: nothing the caller sent is at fault and the same request may succeed later,
    so it is no `StoreError` (forms do not show it as an input error). `Store.read`/`write`
    raise it for every outage; `as_unavailable` tells one from any other failure.
    """

    code = "database_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# SQLSTATE classes that mean "try again" rather than "this statement is wrong" (PostgreSQL
# appendix A): connection exception, transaction rollback (serialization, deadlock),
# insufficient resources, object not in prerequisite state (a lock not available),
# operator intervention (shutdown), system error.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "55", "57", "58")


def as_unavailable(error: BaseException) -> Unavailable | None:
    """`error` as an outage of the database, or None when the statement or its data are at
    fault (a bug, a refused row) or the error is not the database's. The one place that tells
    them apart: the store raises what this returns, and code that reaches the database without
    the store (migrations, the lookup daemon's own writers) asks it too."""
    from sqlalchemy import exc

    if isinstance(error, Unavailable):
        return error
    if isinstance(error, exc.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
        transient = error.connection_invalidated or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
        # A server's SQLSTATE outside those classes blames the statement or its data, whatever
        # class the driver wraps it in (asyncpg's adapter gives most a bare DBAPIError).
        if not transient and (sqlstate or isinstance(
            error, exc.IntegrityError | exc.DataError | exc.ProgrammingError
            | exc.NotSupportedError
        )):
            return None
        return Unavailable(f"cannot use the database: {first_line(error)}")
    if isinstance(error, exc.TimeoutError | OSError | TimeoutError):
        detail = getattr(error, "strerror", None) or first_line(error)
        return Unavailable(f"cannot reach the database: {detail}")
    if type(error).__module__.startswith("asyncpg"):
        # asyncpg's errors met outside a statement (while connecting), not wrapped by SQLAlchemy.
        return Unavailable(f"cannot use the database: {first_line(error)}")
    return None
