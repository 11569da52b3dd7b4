"""The servers bound to listen addresses (parsed by `dinomail.listen`).

Shared by every lookup protocol (socketmap, Dovecot dict, policy): each one hands its
`asyncio.Protocol` factory and a parsed address to `create_server`.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import pwd
import socket
import stat
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from dinomail.listen import ListenAddress
from dinomail.settings import DEFAULT_UNIX_SOCKET_GROUP
from dinomail.waiting import wait_for_event

log = logging.getLogger("dinomail.lookupd.listen")

# Enough for every Postfix process to connect at once after a restart (the kernel caps it at
# net.core.somaxconn).
DEFAULT_BACKLOG = 1024

# Postfix (group postfix) and Dovecot reach the sockets through their group.
DEFAULT_UNIX_MODE = 0o660


class Listener:
    """Listening sockets, accepting connections up to a limit, and the address they are bound to.

    Accepting is our own rather than asyncio's server, so that a listener at its connection
    limit simply stops accepting: new clients wait in the kernel's backlog (and are served as
    soon as a connection closes) while the open connections go on undisturbed.

    Closing it stops accepting and, for a unix socket, removes the socket file if it is still
    the one this listener created (a newer daemon may already have replaced it).
    """

    def __init__(
        self,
        sockets: list[socket.socket],
        address: ListenAddress,
        socket_file: tuple[int, int] | None,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        connections: ConnectionSet | None,
    ) -> None:
        self.sockets = sockets
        self.requested = address
        self._socket_file = socket_file
        self._factory = protocol_factory
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._serving = False
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._room_waiter: asyncio.Task[None] | None = None
        self._start_accepting()

    @property
    def address(self) -> ListenAddress:
        """The bound address (the real port when port 0 was asked for)."""
        if self.requested.is_unix:
            return self.requested
        for sock in self.sockets:
            if sock.fileno() >= 0:
                host, port = sock.getsockname()[:2]
                return ListenAddress(host=host, port=port)
        return self.requested

    # Accepting is driven by the listening sockets' readiness, as in asyncio's own server: every
    # connection waiting is taken at once, up to the limit; at the limit the sockets are no
    # longer watched until a connection closes.

    def _start_accepting(self) -> None:
        if self._serving or self._closed:
            return
        self._serving = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept_ready, sock)

    def _stop_accepting(self) -> None:
        if not self._serving:
            return
        self._serving = False
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())

    def _accept_ready(self, sock: socket.socket) -> None:
        connections = self._connections
        for _ in range(ACCEPT_BATCH):
            if connections is not None and len(connections) + len(self._pending) >= (
                connections.limit or 1 << 62
            ):
                self._stop_accepting()
                if self._room_waiter is None:
                    self._room_waiter = asyncio.ensure_future(self._wait_for_room())
                return
            try:
                client, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                # Out of descriptors (or a stranger error): the connections open go on;
                # accept again shortly.
                if error.errno in _OUT_OF_RESOURCES:
                    _log_out_of_resources(error)
                else:
                    log.error("cannot accept a connection on %s: %s", self.requested, error)
                self._stop_accepting()
                self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._start_accepting)
                return
            client.setblocking(False)
            task = asyncio.ensure_future(self._serve(client))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _wait_for_room(self) -> None:
        assert self._connections is not None
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._connections.wait_for_room()
        self._room_waiter = None
        self._start_accepting()

    async def _serve(self, client: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, client)
        except OSError:
            client.close()

    def close(self) -> None:
        """Stop accepting connections; the connections already open are left alone."""
        self._stop_accepting()
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._room_waiter is not None:
            self._room_waiter.cancel()
        for sock in self.sockets:
            sock.close()
        path = self.requested.path
        if path is not None and self._socket_file is not None:
            try:
                info = os.lstat(path)
            except OSError:
                return
            if (info.st_dev, info.st_ino) == self._socket_file:
                os.unlink(path)
            self._socket_file = None

    async def wait_closed(self) -> None:
        waiting = [*self._pending, *([self._room_waiter] if self._room_waiter else [])]
        await asyncio.gather(*waiting, return_exceptions=True)


# Accepting fails with these when the process or the system is out of descriptors or memory.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_RETRY_DELAY = 0.1
# Connections accepted in one go when several wait.
ACCEPT_BATCH = 128
_last_resource_warning = 0.0


def _log_out_of_resources(error: OSError) -> None:
    global _last_resource_warning
    now = time.monotonic()
    if now - _last_resource_warning >= 10.0:  # once in a while, not a thousand lines a second
        _last_resource_warning = now
        log.warning("cannot accept connections: %s (raise LimitNOFILE or lower the "
                    "*_MAX_CONNECTIONS settings)", error.strerror or error)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (markedly faster for many small requests)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


@dataclass(frozen=True)
class ListenerSharing:
    """How a worker process shares its listeners with the other workers (`lookupd.supervisor`).

    TCP: every worker binds its own socket with SO_REUSEPORT and the kernel spreads new
    connections over them; a worker that dies takes only its own socket away. Unix sockets
    cannot be shared that way: the supervisor binds each once and every worker accepts on the
    same descriptor (`inherited`, by path), which outlives any one worker.
    """

    reuse_port: bool = False
    inherited: Mapping[str, socket.socket] = field(default_factory=dict)


# Set once by a worker process before it starts its listeners; the protocol servers call
# `create_server` without knowing whether they run alone or as one worker of several.
# None: this process runs alone.
listener_sharing: ContextVar[ListenerSharing | None] = ContextVar(
    "listener_sharing", default=None
)
_ALONE = ListenerSharing()


def _sharing() -> ListenerSharing:
    return listener_sharing.get() or _ALONE


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    address: ListenAddress,
    *,
    connections: ConnectionSet | None = None,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int = DEFAULT_UNIX_MODE,
) -> Listener:
    """Listen on `address` and serve each connection with a new protocol; with `connections`,
    no more than its limit at once."""
    if address.path is None:
        sockets = await tcp_sockets(address, backlog)
        return Listener(sockets, address, None, protocol_factory, connections)
    inherited = _sharing().inherited.get(address.path)
    if inherited is not None:
        # The supervisor's socket: it, not this worker, removes the file at the end.
        return Listener([inherited], address, None, protocol_factory, connections)
    sock = bind_unix_socket(address.path, backlog, unix_mode)
    info = os.lstat(address.path)
    return Listener([sock], address, (info.st_dev, info.st_ino), protocol_factory, connections)


def bind_unix_socket(path: str, backlog: int = DEFAULT_BACKLOG,
                     mode: int = DEFAULT_UNIX_MODE) -> socket.socket:
    """A listening, non-blocking unix socket at `path` (a stale socket file is replaced)."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def server_sockets(address: ListenAddress) -> list[socket.socket] | None:
    """Listening sockets for a server that would bind by itself (uvicorn): TCP is bound here, so
    that a failure is an OSError saying why (uvicorn would exit the process) and a worker binds
    with SO_REUSEPORT; a unix socket is the supervisor's when it shares one, else None (the
    server binds it)."""
    if address.path is not None:
        inherited = _sharing().inherited.get(address.path)
        return None if inherited is None else [inherited]
    return await tcp_sockets(address, DEFAULT_BACKLOG)


async def tcp_sockets(address: ListenAddress, backlog: int) -> list[socket.socket]:
    """One listening socket per address the host resolves to (as asyncio's create_server);
    with SO_REUSEPORT when this process is one worker of several (`listener_sharing`)."""
    reuse_port = _sharing().reuse_port
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        address.host or None, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def socket_owner_ids(owner: str, group: str) -> tuple[int, int]:
    """The uid and gid for the unix sockets' owner and group settings (-1: leave as bound).

    Resolved before any listener binds, so an unknown name stops the daemon before it listens.
    """
    uid = _account_id(owner, pwd.getpwnam, "user") if owner else -1
    gid = _account_id(group, grp.getgrnam, "group") if group else _default_group()
    return uid, gid


def _default_group() -> int:
    """The installed daemons' group when it exists and this process may give it (root, or a
    member): then `make run` as root on a mail server still lets Dovecot in. Else -1."""
    try:
        gid = grp.getgrnam(DEFAULT_UNIX_SOCKET_GROUP).gr_gid
    except KeyError:
        return -1
    if os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups():
        return gid
    return -1


def set_socket_permissions(path: str, ids: tuple[int, int], mode: int) -> None:
    """Give a bound unix socket its owner, group and mode, right after binding.

    Dovecot's mail processes reach the dict socket only through its group (a root:root socket
    made by a daemon run as root would refuse their quota_clone). Raises OSError naming it.
    """
    try:
        if ids != (-1, -1):
            os.chown(path, *ids)
        os.chmod(path, mode)
    except OSError as error:
        raise OSError(error.errno, f"{path}: cannot give it owner and group {ids} and mode "
                      f"{mode:04o}: {error.strerror}") from None


def _account_id(name: str, lookup: Callable[[str], object], kind: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        entry = lookup(name)
    except KeyError:
        raise OSError(errno.EINVAL, f"no {kind} named {name!r} on this system") from None
    return int(getattr(entry, "pw_uid" if kind == "user" else "gr_gid"))


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a daemon that died; refuse to touch anything else.

    A socket somebody still accepts on belongs to a running daemon: taking it over would leave
    that daemon listening on a name nobody can reach, so that is an error too.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"{path}: another process is listening on it")


class Connection(Protocol):
    """What `ConnectionSet` needs of a protocol instance to shut it down."""

    def shutdown(self) -> None:
        """Close once the request being received (if any) has been answered."""

    def abort(self) -> None:
        """Close now, dropping unsent data."""


class ConnectionSet:
    """The open connections of one server, for a graceful shutdown.

    Requests are answered synchronously, so between two events of the loop no answer is half
    computed; what shutdown waits for is a request half received and replies not yet flushed.
    """

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit  # the most connections open at once; 0: no limit
        self._open: set[Connection] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self._room = asyncio.Event()
        self._room.set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._open)

    @property
    def full(self) -> bool:
        return bool(self.limit) and len(self._open) >= self.limit

    async def wait_for_room(self) -> None:
        """Return when fewer than `limit` connections are open."""
        while self.full:
            self._room.clear()
            await self._room.wait()

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        self._drained.clear()

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)
        if not self._open:
            self._drained.set()
        if not self.full:
            self._room.set()

    def shutdown(self) -> None:
        """Ask every connection to close when it is between requests."""
        self.closing = True
        for connection in list(self._open):
            connection.shutdown()

    async def wait_drained(self, timeout: float) -> None:
        """Wait for the connections to close; abort those still open after `timeout` seconds."""
        if not await wait_for_event(self._drained, timeout):
            for connection in list(self._open):
                connection.abort()
            # Aborted transports report connection_lost on the next loop iterations.
            await wait_for_event(self._drained, 1.0)


# How long a stopping server waits for its connections to finish before aborting them.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


class ProtocolServer:
    """A listening protocol server (socketmap, Dovecot dict, policy) and its connections."""

    def __init__(self, listener: Listener, connections: ConnectionSet) -> None:
        self.listener = listener
        self.connections = connections

    @property
    def address(self) -> ListenAddress:
        return self.listener.address

    def close(self) -> None:
        """Stop accepting, and close each connection once it is quiet between requests."""
        self.listener.close()
        self.connections.shutdown()

    async def wait_closed(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Wait for the connections to finish; abort those still open after `timeout`."""
        await self.connections.wait_drained(timeout)
        await self.listener.wait_closed()
