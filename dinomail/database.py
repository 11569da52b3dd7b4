"""Database URLs and engines: SQLite (embedded default) and PostgreSQL.

Admins write the URLs they know (`sqlite:///path`, `postgresql://user:pw@host/db`); the async
drivers (aiosqlite, asyncpg) are chosen here, in one place.

A PostgreSQL URL may name several servers the way libpq does
(`postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write`): each new connection goes to
the first that answers and has the attributes asked for (`read-write` for the admin side,
`prefer-standby` or `any` for lookups), so a promoted standby takes over without a restart.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

Dialect = Literal["sqlite", "postgresql"]

_DRIVERS: dict[str, tuple[Dialect, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
}

# SQLite waits this long for another writer (the admin API and lookupd share the file).
SQLITE_BUSY_TIMEOUT_MS = 5000


class DatabaseURLError(ValueError):
    """The URL cannot name a database DinoMail supports."""


# `scheme://[userinfo@]host[:port],host[:port].../rest`: libpq's list of servers.
_MULTI_HOST = re.compile(
    r"^(?P<scheme>[\w+]+)://(?:(?P<userinfo>[^@/?]*)@)?(?P<hosts>[^/?]*,[^/?]*)(?P<rest>[/?].*)?$"
)
# libpq's default port, which a host of a list may leave out.
DEFAULT_PORT = 5432
# What a multi-host URL may ask of the server it connects to (libpq's, as asyncpg knows them).
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
# PostgreSQL's SQLSTATE for a write refused on a server in recovery (a standby).
READ_ONLY_SQL_TRANSACTION = "25006"


def _multi_host(url: str) -> URL | None:
    """A libpq multi-host URL as SQLAlchemy spells it (`?host=h1:p1&host=h2:p2`), else None.

    SQLAlchemy's URL parser reads `h1:5432,h2` as a host and a port and fails on the port."""
    match = _MULTI_HOST.match(url)
    if match is None:
        return None
    hosts = []
    for item in match["hosts"].split(","):
        host, port = _host_port(item)
        hosts.append(f"{host}:{port}")
    userinfo = f"{match['userinfo']}@" if match["userinfo"] is not None else ""
    rest = match["rest"] or ""
    parsed = make_url(f"{match['scheme']}://{userinfo}{'' if rest.startswith('/') else '/'}{rest}")
    return parsed.update_query_pairs([("host", host) for host in hosts], append=True)


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    bracketed = re.fullmatch(r"\[(?P<host>[^\]]+)\](?::(?P<port>\d*))?", item)
    if bracketed is not None:
        host, port = f"[{bracketed['host']}]", bracketed["port"]
    else:
        host, _, port = item.partition(":")
    if not host:
        raise DatabaseURLError(f"{item!r}: every server of a list needs a host name")
    if port and not port.isdigit():
        raise DatabaseURLError(f"{item!r}: the port must be a number")
    return host, int(port) if port else DEFAULT_PORT


def async_url(url: str) -> URL:
    """Parse an admin's URL and give the SQLAlchemy URL with the async driver."""
    try:
        parsed = _multi_host(url) or make_url(url)
    except ArgumentError:
        raise DatabaseURLError(
            f"{url!r} is not a database URL (try sqlite:///path or postgresql://user@host/db)"
        ) from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise DatabaseURLError(
            f"unsupported database {parsed.drivername!r} (use sqlite:// or postgresql://)"
        )
    dialect, drivername = driver
    if dialect == "sqlite" and not parsed.database:
        raise DatabaseURLError("a SQLite URL needs a file, as in sqlite:///dinomail.sqlite3")
    if dialect == "postgresql" and not parsed.database:
        raise DatabaseURLError("a PostgreSQL URL needs a database name, as in .../dinomail")
    attrs = parsed.query.get("target_session_attrs")
    if dialect == "postgresql" and attrs is not None and attrs not in SESSION_ATTRS:
        raise DatabaseURLError(
            f"target_session_attrs={attrs!r}: use one of {', '.join(SESSION_ATTRS)}"
        )
    return parsed.set(drivername=drivername)


def dialect_of(url: str) -> Dialect:
    return _DRIVERS[async_url(url).drivername][0]


def _configure_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the lookup daemon read while the admin API writes; foreign keys are off by
    # default in SQLite and the cascades of the schema depend on them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine(url: str, **options: object) -> AsyncEngine:
    """An async engine for the admin's URL, with the pragmas SQLite needs."""
    target = async_url(url)
    if target.drivername.startswith("sqlite"):
        engine = create_async_engine(target, **options)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    # A connection the server closed (a stopped primary) is found on checkout and replaced:
    # with several servers in the URL, by one to whichever now has the attributes asked for.
    options.setdefault("pool_pre_ping", True)
    engine = create_async_engine(target, **options)
    event.listen(engine.sync_engine, "handle_error", _unavailable_without_primary)
    return engine


def _unavailable_without_primary(context: ExceptionContext) -> OperationalError | None:
    """Raised as the OperationalError of an unavailable database (the API answers 503, the
    pages say so), not as a failure of the request itself:

    - a write refused because the server is in recovery: the connection was made to a primary
      that has since become a standby (or to any server). Treated as a lost connection, so the
      pool drops every connection it holds and the next request connects again, to the server
      that now takes writes;
    - a connection refused by asyncpg because every server of the URL answered and none as
      asked (`read-write` while all are standbys, in the middle of a failover).
    """
    original = context.original_exception
    cause = original.__cause__
    if getattr(original, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True
    elif not (cause is not None and type(cause).__name__ == "TargetServerAttributeNotMatched"):
        return None
    return OperationalError(
        context.statement, context.parameters, original,
        connection_invalidated=context.is_disconnect,
    )


def asyncpg_connect_args(url: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of `asyncpg.connect` for a PostgreSQL URL (several hosts
    included), for the connections made outside the pool (LISTEN)."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    _, kwargs = PGDialect_asyncpg().create_connect_args(async_url(url))
    return {**kwargs, **overrides}


def describe(url: str) -> str:
    """The servers and database of a URL, without user or password (for logs and messages)."""
    parsed = async_url(url)
    if parsed.drivername.startswith("sqlite"):
        return f"sqlite:///{parsed.database}"
    hosts = parsed.query.get("host")
    if isinstance(hosts, tuple) and len(hosts) > 1:
        servers = ",".join(hosts)
    else:
        servers = f"{hosts or parsed.host or ''}" + (f":{parsed.port}" if parsed.port else "")
    return f"postgresql://{servers}/{parsed.database}"
