"""The lookup daemon: the refresher and every protocol listener, on one event loop."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from dinomail.http_server import HttpServer
from dinomail.settings import Settings
from dinomail.store import Store
from lookupd.authblocks import BlockSync
from lookupd.authpolicy import AuthPolicy, AuthPolicyConfig
from lookupd.dovecot.auth import UserdbSettings
from lookupd.dovecot.dict import DictServer, start_dict_server
from lookupd.dovecot.verify import AppPasswordUse, PasswordVerifier
from lookupd.http import create_http_app
from lookupd.limits import connection_limits
from lookupd.listen import set_socket_permissions, socket_owner_ids
from lookupd.metrics import LookupdMetrics
from lookupd.policy import PolicyConfig, PolicyService, start_policy_service
from lookupd.quota import QuotaWriter
from lookupd.refresher import Refresher, SnapshotFile, SnapshotHolder
from lookupd.snapshot_file import database_name
from lookupd.socketmap import SocketmapServer, start_socketmap_server
from lookupd.vacations import VacationScripts

log = logging.getLogger("dinomail.lookupd")


@dataclass
class Lookupd:
    """A running lookup daemon: what tests and `serve` hold on to."""

    holder: SnapshotHolder
    metrics: LookupdMetrics
    refresher: Refresher
    socketmap: SocketmapServer
    http: HttpServer
    refresh_task: asyncio.Task[None]
    stop_event: asyncio.Event
    dovecot_dict: DictServer
    quota_writer: QuotaWriter
    quota_task: asyncio.Task[None]
    policy: PolicyService
    auth_policy: AuthPolicy
    block_sync: BlockSync
    block_task: asyncio.Task[None]
    vacations: VacationScripts
    vacation_task: asyncio.Task[None]
    app_password_use: AppPasswordUse
    app_password_task: asyncio.Task[None]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, stop following the database."""
        self.socketmap.close()
        self.dovecot_dict.close()
        await self.socketmap.wait_closed()
        await self.dovecot_dict.wait_closed()
        await self.policy.stop()  # its last counts are written before it returns
        await self.http.stop()
        # Only now: the quota writer's last flush must come after the last commit it accepted.
        self.stop_event.set()
        await self.quota_task
        await self.block_task  # removes this daemon's blocks from the table
        await self.vacation_task
        await self.app_password_task  # the last uses are written before it returns
        await self.refresh_task


async def start_lookupd(settings: Settings, store: Store) -> Lookupd:
    """Listen first, then load: until the first snapshot, clients get temporary failures
    (Postfix defers the mail) rather than refused connections."""
    metrics = LookupdMetrics()
    holder = SnapshotHolder()
    refresher = Refresher(
        store, holder, metrics,
        recipient_delimiter=settings.RECIPIENT_DELIMITER,
        poll_interval=settings.SQLITE_POLL_INTERVAL,
        full_resync_interval=settings.FULL_RESYNC_INTERVAL,
        snapshot_file=snapshot_file(settings),
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
    socketmap = await start_socketmap_server(
        settings.SOCKETMAP_LISTEN, lambda: holder.current, metrics=metrics,
        request_timeout=timeout, max_connections=limits["socketmap"],
    )
    userdb = UserdbSettings(
        home=settings.MAIL_HOME, uid=settings.MAIL_UID, gid=settings.MAIL_GID
    )
    quota_writer = QuotaWriter(
        store, flush_interval=settings.QUOTA_FLUSH_INTERVAL, metrics=metrics
    )
    if not settings.DICT_LISTEN:
        # The default socket lives in STATE_DIR, which `dinomail lookupd` alone never created.
        Path(settings.STATE_DIR).mkdir(mode=0o750, parents=True, exist_ok=True)
    vacations = VacationScripts(store, refresh_interval=settings.VACATION_REFRESH_INTERVAL)
    dovecot_dict = await start_dict_server(
        settings.dict_listen, lambda: holder.current, userdb=userdb,
        quota_writer=quota_writer, metrics=metrics,
        request_timeout=timeout, max_connections=limits["dict"], vacations=vacations,
    )
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
        metrics=metrics,
    )
    auth_policy = AuthPolicy(auth_policy_config(settings), metrics=metrics)
    block_sync = BlockSync(
        store, auth_policy, interval=settings.AUTH_POLICY_SYNC_INTERVAL, metrics=metrics
    )
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
            verifier=PasswordVerifier(store, app_password_use),
        ),
        settings.LOOKUPD_HTTP_LISTEN,
    )
    await http.start()
    stop_event = asyncio.Event()
    refresh_task = asyncio.create_task(refresher.run(stop_event))
    quota_task = asyncio.create_task(quota_writer.run(stop_event))
    block_task = asyncio.create_task(block_sync.run(stop_event))
    vacation_task = asyncio.create_task(vacations.run(stop_event))
    app_password_task = asyncio.create_task(app_password_use.run(stop_event))
    log.info("socketmap listening on %s", socketmap.address)
    log.info("Dovecot dict listening on %s", dovecot_dict.address)
    log.info("policy listening on %s", policy.address)
    log.info("lookupd HTTP listening on %s", settings.LOOKUPD_HTTP_LISTEN)
    return Lookupd(
        holder, metrics, refresher, socketmap, http, refresh_task, stop_event,
        dovecot_dict, quota_writer, quota_task, policy, auth_policy, block_sync, block_task,
        vacations, vacation_task, app_password_use, app_password_task,
    )


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
