"""The lookup daemon: the refresher and every protocol listener, on one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinomail.http_server import HttpServer
from dinomail.listen import parse_listen
from dinomail.settings import Settings
from dinomail.store import Store
from lookupd.authblocks import BlockSync
from lookupd.authpolicy import AuthPolicy, AuthPolicyConfig
from lookupd.dovecot.auth import UserdbSettings
from lookupd.dovecot.dict import DictServer, start_dict_server
from lookupd.dovecot.verify import AppPasswordUse, PasswordVerifier
from lookupd.http import create_http_app
from lookupd.limits import connection_limits
from lookupd.listen import (
    ProtocolServer,
    server_sockets,
    set_socket_permissions,
    socket_owner_ids,
)
from lookupd.metrics import LookupdMetrics
from lookupd.policy import PolicyConfig, PolicyService, start_policy_service
from lookupd.policy.tables import PolicyTablesLoader
from lookupd.quota import QuotaWriter
from lookupd.recipient_access import RecipientAccess
from lookupd.refresher import Refresher, SnapshotFile, SnapshotHolder
from lookupd.snapshot_file import database_name
from lookupd.socketmap import SocketmapServer, start_socketmap_server
from lookupd.vacations import VacationScripts

log = logging.getLogger("dinomail.lookupd")


@dataclass(kw_only=True)
class Lookupd:
    """A running lookup daemon: what tests and `serve` hold on to."""

    holder: SnapshotHolder
    metrics: LookupdMetrics
    refresher: Refresher
    socketmap: SocketmapServer
    dovecot_dict: DictServer
    policy: PolicyService
    http: HttpServer
    quota_writer: QuotaWriter
    auth_policy: AuthPolicy
    block_sync: BlockSync
    vacations: VacationScripts
    app_password_use: AppPasswordUse
    # Undoes the start, in reverse: what `stop` runs.
    exit_stack: AsyncExitStack

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, stop following the database."""
        await self.exit_stack.aclose()


async def start_lookupd(settings: Settings, store: Store) -> Lookupd:
    """Listen first, then load: until the first snapshot, clients get temporary failures
    (Postfix defers the mail) rather than refused connections.

    Each step that starts something registers how to undo it, so that a step failing half way
    (a listener that cannot bind) closes what the earlier ones opened before the error goes up.
    """
    async with AsyncExitStack() as stack:
        daemon = await _start(settings, store, stack)
        daemon.exit_stack = stack.pop_all()
        return daemon


async def _start(settings: Settings, store: Store, stack: AsyncExitStack) -> Lookupd:
    metrics = LookupdMetrics()
    holder = SnapshotHolder()
    refresher = Refresher(
        store, holder, metrics,
        recipient_delimiter=settings.RECIPIENT_DELIMITER,
        poll_interval=settings.SQLITE_POLL_INTERVAL,
        standby_poll_interval=settings.LOOKUPD_POLL_INTERVAL,
        full_resync_interval=settings.FULL_RESYNC_INTERVAL,
        snapshot_file=snapshot_file(settings),
        follow_url=settings.lookupd_database_url,
    )
    # A write through the store of this process is seen at once, even on SQLite.
    store.on_write(refresher.wake)
    socket_ids = socket_owner_ids(settings.UNIX_SOCKET_OWNER, settings.UNIX_SOCKET_GROUP)
    limits = connection_limits(
        {
            "socketmap": settings.SOCKETMAP_MAX_CONNECTIONS,
            "policy": settings.POLICY_MAX_CONNECTIONS,
            "dict": settings.DICT_MAX_CONNECTIONS,
        },
        reserved=settings.LOOKUPD_RESERVED_FILES,
    )
    timeout = settings.LOOKUPD_REQUEST_TIMEOUT
    userdb = UserdbSettings(
        home=settings.MAIL_HOME, uid=settings.MAIL_UID, gid=settings.MAIL_GID
    )
    quota_writer = QuotaWriter(
        store, flush_interval=settings.QUOTA_FLUSH_INTERVAL, metrics=metrics
    )
    auth_policy = AuthPolicy(auth_policy_config(settings), metrics=metrics)
    block_sync = BlockSync(
        store, auth_policy, interval=settings.AUTH_POLICY_SYNC_INTERVAL, metrics=metrics
    )
    # Undone last: the quota writer's last flush must come after the last commit the dict
    # listener accepted, and the refresher goes on until every listener has stopped.
    background = _BackgroundTasks()
    stack.push_async_callback(background.stop)
    # Both lookup listeners stop accepting at once, then drain together.
    listeners: list[ProtocolServer] = []
    stack.push_async_callback(_stop_listeners, listeners)

    # The full mailboxes and sending limits: the policy service keeps them loaded, and the
    # socketmap's recipient_access answers from the same load.
    policy_tables = PolicyTablesLoader(
        store, interval=settings.POLICY_REFRESH_INTERVAL, metrics=metrics
    )
    with _naming(settings.SOCKETMAP_LISTEN):
        socketmap = await start_socketmap_server(
            settings.SOCKETMAP_LISTEN, lambda: holder.current, metrics=metrics,
            request_timeout=timeout, max_connections=limits["socketmap"],
            recipient_access=RecipientAccess(
                lambda: policy_tables.current, check_quota=settings.POLICY_CHECK_QUOTA,
                quota_reply=settings.POLICY_QUOTA_REPLY, metrics=metrics,
            ),
        )
    listeners.append(socketmap)
    vacations = VacationScripts(lambda: holder.current)
    if not settings.DICT_LISTEN:
        # The default socket lives in STATE_DIR, which `dinomail lookupd` alone never created.
        Path(settings.STATE_DIR).mkdir(mode=0o750, parents=True, exist_ok=True)
    with _naming(settings.dict_listen):
        dovecot_dict = await start_dict_server(
            settings.dict_listen, lambda: holder.current, userdb=userdb,
            quota_writer=quota_writer, metrics=metrics,
            request_timeout=timeout, max_connections=limits["dict"], vacations=vacations,
        )
    listeners.append(dovecot_dict)
    with _naming(settings.POLICY_LISTEN):
        policy = await start_policy_service(
            settings.POLICY_LISTEN, store, lambda: holder.current,
            config=PolicyConfig(
                check_quota=settings.POLICY_CHECK_QUOTA,
                quota_reply=settings.POLICY_QUOTA_REPLY,
                rate_limit_reply=settings.POLICY_RATE_LIMIT_REPLY,
            ),
            refresh_interval=settings.POLICY_REFRESH_INTERVAL,
            flush_interval=settings.POLICY_FLUSH_INTERVAL,
            sync_interval=settings.POLICY_SYNC_INTERVAL,
            request_timeout=timeout, max_connections=limits["policy"],
            metrics=metrics, tables=policy_tables,
        )
    stack.push_async_callback(policy.stop)  # its last counts are written before it returns
    for server in (socketmap, dovecot_dict, policy):
        if server.address.path is not None:
            set_socket_permissions(server.address.path, socket_ids, settings.unix_socket_mode)
    app_password_use = AppPasswordUse(
        store, flush_interval=settings.APP_PASSWORD_FLUSH_INTERVAL
    )
    http = HttpServer(
        create_http_app(
            holder, metrics, userdb=userdb, dovecot_secret=settings.DOVECOT_HTTP_SECRET,
            auth_policy=auth_policy, auth_policy_api_key=settings.AUTH_POLICY_API_KEY,
            verifier=PasswordVerifier(app_password_use),
        ),
        settings.LOOKUPD_HTTP_LISTEN,
    )
    with _naming(settings.LOOKUPD_HTTP_LISTEN):
        await http.start(await server_sockets(parse_listen(settings.LOOKUPD_HTTP_LISTEN)))
    stack.push_async_callback(http.stop)
    # The app-password writer's last flush writes the last uses before it returns.
    background.start(
        quota_writer.run, block_sync.run, app_password_use.run, refresher.run,
        metrics.keep_flushed,
    )
    log.info("socketmap listening on %s", socketmap.address)
    log.info("Dovecot dict listening on %s", dovecot_dict.address)
    log.info("policy listening on %s", policy.address)
    log.info("lookupd HTTP listening on %s", settings.LOOKUPD_HTTP_LISTEN)
    return Lookupd(
        holder=holder, metrics=metrics, refresher=refresher, socketmap=socketmap,
        dovecot_dict=dovecot_dict, policy=policy, http=http, quota_writer=quota_writer,
        auth_policy=auth_policy, block_sync=block_sync, vacations=vacations,
        app_password_use=app_password_use, exit_stack=stack,
    )


class _BackgroundTasks:
    """The tasks that follow the database (refresher, quota writer, block sync), each running
    until one shared event is set."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, *runs: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        self._tasks = [asyncio.create_task(run(self._stop)) for run in runs]

    async def stop(self) -> None:
        self._stop.set()
        # In order: the block sync removes this daemon's blocks from the table on its way out.
        for task in self._tasks:
            await task


@contextmanager
def _naming(listen: str) -> Iterator[None]:
    """A listener that cannot bind says which one it is (the kernel's error does not)."""
    try:
        yield
    except OSError as error:
        message = error.strerror or str(error)
        if listen.removeprefix("unix:") in message:
            raise
        raise OSError(error.errno, f"{listen}: {message}") from None


async def _stop_listeners(listeners: list[ProtocolServer]) -> None:
    for server in listeners:
        server.close()
    for server in listeners:
        await server.wait_closed()


def snapshot_file(settings: Settings) -> SnapshotFile | None:
    path = settings.lookupd_snapshot_path
    if path is None:
        return None
    return SnapshotFile(
        path, database_name(settings.DATABASE_URL), interval=settings.LOOKUPD_SNAPSHOT_INTERVAL
    )


def auth_policy_config(settings: Settings) -> AuthPolicyConfig:
    return AuthPolicyConfig(
        window=settings.AUTH_POLICY_WINDOW,
        ip_tarpit_after=settings.AUTH_POLICY_IP_TARPIT_AFTER,
        ip_block_after=settings.AUTH_POLICY_IP_BLOCK_AFTER,
        login_tarpit_after=settings.AUTH_POLICY_LOGIN_TARPIT_AFTER,
        login_block_after=settings.AUTH_POLICY_LOGIN_BLOCK_AFTER,
        tarpit_seconds=settings.AUTH_POLICY_TARPIT_SECONDS,
        max_tarpit=settings.AUTH_POLICY_MAX_TARPIT,
        allow_networks=settings.AUTH_POLICY_ALLOW_NETWORKS,
    )
