"""One worker process of `dinomail lookupd` with LOOKUPD_WORKERS > 1 (see `lookupd.supervisor`).

Started by the supervisor as `python -m lookupd.worker INDEX SUPERVISOR_PID`; it reads its
settings and the unix sockets it shares (path → inherited descriptor) as one JSON document on
stdin (the database URL stays out of argv and the environment), runs the whole lookup daemon with
its TCP listeners bound with SO_REUSEPORT, and says on stdout `READY` once it listens, or
`ERROR <one line>` when it cannot start; then a byte every HEARTBEAT_INTERVAL from its event
loop. SIGTERM stops it gracefully, as the single daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import fields
from typing import Any

from dinomail.settings import Settings
from dinomail.waiting import wait_for_event
from lookupd.listen import ListenerSharing, event_loop_factory, listener_sharing

log = logging.getLogger("dinomail.lookupd.worker")

READY = "READY"
ERROR = "ERROR"
# After READY, a byte every HEARTBEAT_INTERVAL seconds (see `lookupd.supervisor`).
HEARTBEAT_INTERVAL = 2.0
_PR_SET_PDEATHSIG = 1


def settings_to_json(settings: Settings) -> dict[str, Any]:
    return {spec.name: getattr(settings, spec.name) for spec in fields(Settings)}


def settings_from_json(data: dict[str, Any]) -> Settings:
    # JSON has no tuples: the list settings come back as lists.
    values: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value for name, value in data.items()
    }
    return Settings(**values)


def _die_with_supervisor(supervisor: int) -> None:
    """Stop (SIGTERM) when the supervisor dies, even killed with SIGKILL: no orphan worker
    keeps a share of the listeners that nobody supervises."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return  # not Linux: the supervisor's own stop still reaches the workers
    if os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _say(line: str) -> None:
    os.write(_channel, (line + "\n").encode())


async def _beat(stop: asyncio.Event) -> None:
    """Tell the supervisor, from the event loop, that the loop turns (`HEARTBEAT_INTERVAL`): a
    worker whose loop is stuck stops beating and is replaced, as systemd's watchdog replaces a
    single daemon."""
    os.set_blocking(_channel, False)  # a supervisor slow to read must not stop the loop
    while not await wait_for_event(stop, HEARTBEAT_INTERVAL):
        try:
            os.write(_channel, b".")
        except BlockingIOError:
            continue  # the supervisor reads late: the next beat will do
        except OSError:
            return  # the supervisor is gone (its death sends us SIGTERM)


# The pipe to the supervisor: stdout as the worker starts; stdout itself then goes to the log,
# so that nothing a library prints is taken for a message.
_channel = -1


async def _serve(settings: Settings, sharing: ListenerSharing) -> int:
    from dinomail.store import Store
    from lookupd.daemon import start_lookupd

    listener_sharing.set(sharing)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    store = Store(settings.DATABASE_URL)
    try:
        try:
            daemon = await start_lookupd(settings, store)
        except OSError as error:  # what it opened is closed again: say why, once
            _say(f"{ERROR} cannot listen: {error.strerror or error}")
            return 1
        try:
            _say(READY)
            beating = asyncio.create_task(_beat(stop))
            await stop.wait()
            log.info("stopping")
            await beating
        finally:
            await daemon.stop()
    finally:
        await store.close()
    return 0


def main(argv: list[str]) -> int:
    global _channel
    index, supervisor = int(argv[0]), int(argv[1])
    _channel = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Ctrl-C reaches the whole process group: the supervisor alone decides, and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_supervisor(supervisor)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(name)s %(levelname)s worker {index}: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    request = json.loads(sys.stdin.read())
    settings = settings_from_json(request["settings"])
    inherited = {
        path: socket.socket(fileno=fd) for path, fd in request["unix_sockets"].items()
    }
    for sock in inherited.values():
        sock.setblocking(False)
    sharing = ListenerSharing(reuse_port=True, inherited=inherited)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(_serve(settings, sharing))
    except Exception as error:  # a one-line reason for the supervisor, the details in the log
        log.exception("worker %d failed", index)
        with contextlib.suppress(OSError):
            _say(f"{ERROR} {type(error).__name__}: {error}".splitlines()[0])
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
