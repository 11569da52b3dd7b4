"""systemd's readiness and watchdog notifications (`Type=notify`, `WatchdogSec=`), without a
dependency: one datagram to the unix socket systemd names in $NOTIFY_SOCKET (sd_notify(3)).

Outside systemd (no $NOTIFY_SOCKET) every call does nothing. The watchdog pings come from the
event loop itself, so a loop that stops turning stops them, and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from dinomail.waiting import wait_for_event

log = logging.getLogger("dinomail.sdnotify")


def notify(message: str) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not run by systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as error:
        log.warning("cannot notify systemd (%s): %s", address.lstrip("\0"), error)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between two watchdog pings (half of $WATCHDOG_USEC), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. the one that started us)
    return int(usec) / 1_000_000 / 2


async def keep_watchdog_fed(stop: asyncio.Event) -> None:
    """Ping systemd's watchdog until `stop` is set (returns at once without a watchdog)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while not stop.is_set():
        notify("WATCHDOG=1")
        await wait_for_event(stop, interval)
