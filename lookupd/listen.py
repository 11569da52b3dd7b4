"""The servers bound to listen addresses (parsed by `dinomail.listen`).

Shared by every lookup protocol (socketmap, Dovecot dict, policy): each one hands its
`asyncio.Protocol` factory and a parsed address to `create_server`.
"""

from __future__ import annotations

import asyncio
import errno
import grp
import os
import pwd
import socket
import stat
from collections.abc import Callable
from typing import Protocol

from dinomail.listen import ListenAddress
from dinomail.settings import DEFAULT_UNIX_SOCKET_GROUP
from dinomail.waiting import wait_for_event

# Enough for every Postfix process to connect at once after a restart (the kernel caps it at
# net.core.somaxconn).
DEFAULT_BACKLOG = 1024

# Postfix (group postfix) and Dovecot reach the sockets through their group.
DEFAULT_UNIX_MODE = 0o660


class Listener:
    """A listening server and the address it is bound to.

    Closing it stops accepting and, for a unix socket, removes the socket file if it is still
    the one this listener created (a newer daemon may already have replaced it).
    """

    def __init__(
        self,
        server: asyncio.AbstractServer,
        address: ListenAddress,
        socket_file: tuple[int, int] | None,
    ) -> None:
        self.server = server
        self.requested = address
        self._socket_file = socket_file

    @property
    def address(self) -> ListenAddress:
        """The bound address (the real port when port 0 was asked for)."""
        if self.requested.is_unix:
            return self.requested
        sockets = self.server.sockets or ()
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            return ListenAddress(host=host, port=port)
        return self.requested

    def close(self) -> None:
        """Stop accepting connections; the connections already open are left alone."""
        self.server.close()
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
        await self.server.wait_closed()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (markedly faster for many small requests)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    address: ListenAddress,
    *,
    backlog: int = DEFAULT_BACKLOG,
    unix_mode: int = DEFAULT_UNIX_MODE,
) -> Listener:
    """Listen on `address` and serve each connection with a new protocol."""
    loop = asyncio.get_running_loop()
    if address.path is None:
        server = await loop.create_server(
            protocol_factory, address.host, address.port, backlog=backlog, reuse_address=True
        )
        return Listener(server, address, None)
    _remove_stale_socket(address.path)
    server = await loop.create_unix_server(protocol_factory, address.path, backlog=backlog)
    os.chmod(address.path, unix_mode)
    info = os.lstat(address.path)
    return Listener(server, address, (info.st_dev, info.st_ino))


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

    def __init__(self) -> None:
        self._open: set[Connection] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: Connection) -> None:
        self._open.add(connection)
        self._drained.clear()

    def discard(self, connection: Connection) -> None:
        self._open.discard(connection)
        if not self._open:
            self._drained.set()

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
