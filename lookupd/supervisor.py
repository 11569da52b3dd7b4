"""`dinomail lookupd` with LOOKUPD_WORKERS > 1: one supervising process and N workers.

One event loop answers on one core. With N workers, each a whole lookup daemon in its own process
(`lookupd.worker`: its own snapshot, following the same change log), the lookups spread over N
cores:

- TCP listeners: every worker binds its own socket with SO_REUSEPORT; the kernel spreads new
  connections over the workers that listen. A worker that dies takes its own socket (and only
  the connections it held) away: new connections go to the others until it is back.
- Unix sockets: bound once, here, and inherited by every worker, which all accept on it; the
  socket outlives any one worker, so its path always answers.
- Metrics: the workers keep them in a private directory (prometheus-client's multiprocess mode,
  `lookupd.metrics`); whichever worker answers `/metrics` gives the sum of all.

The supervisor holds no data and answers nothing: it starts the workers, tells systemd READY once
every one listens, kills a worker whose event loop stops beating (HEARTBEAT_TIMEOUT: what
systemd's watchdog does for a single daemon), starts again a worker that died (after a pause
that doubles while it keeps dying, up to RESTART_MAX_DELAY), and on SIGTERM stops them all
gracefully. A worker that cannot start at all (a listener that cannot bind) stops the start:
the others are stopped again and the one-line reason is the command's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from dinomail.listen import parse_listen
from dinomail.settings import Settings
from dinomail.waiting import wait_for_event
from lookupd.listen import bind_unix_socket, set_socket_permissions, socket_owner_ids
from lookupd.metrics import MULTIPROC_DIR_ENV
from lookupd.worker import ERROR, HEARTBEAT_INTERVAL, READY, settings_to_json

log = logging.getLogger("dinomail.lookupd.supervisor")

# How long a worker may take to listen (it does not wait for its first snapshot).
START_TIMEOUT = 60.0
# A worker that ran this long before dying is started again at once (after RESTART_DELAY);
# one that dies sooner waits twice as long as last time, up to RESTART_MAX_DELAY.
RESTART_DELAY = 0.5
RESTART_MAX_DELAY = 30.0
STABLE_AFTER = 30.0
# A worker silent this long (its event loop stuck: no heartbeat) is killed and started again.
HEARTBEAT_TIMEOUT = 10 * HEARTBEAT_INTERVAL
# Each worker drains its connections (5 s at most) and writes its last counts; under systemd's
# TimeoutStopSec (30 s in systemd/dinomail-lookupd.service).
STOP_TIMEOUT = 20.0
SYSTEMD_ENV = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})
# uvicorn gives its own unix sockets this mode; the HTTP listener keeps it with workers.
HTTP_UNIX_MODE = 0o666


class WorkerStartError(Exception):
    """A worker could not start; `str()` is its one-line reason."""


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0
    heartbeat: asyncio.Task[None] | None = None


@dataclass
class _UnixSocket:
    sock: socket.socket
    path: str
    inode: tuple[int, int]

    def close(self) -> None:
        """Close it, and remove its file unless another daemon has replaced it since."""
        self.sock.close()
        try:
            info = os.lstat(self.path)
        except OSError:
            return
        if (info.st_dev, info.st_ino) == self.inode:
            os.unlink(self.path)


@dataclass
class Workers:
    """The running workers and what they share; `stop()` ends them all."""

    settings: Settings
    metrics_dir: str
    unix_sockets: list[_UnixSocket]
    workers: list[_Worker] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process and w.process.returncode is None]

    async def _spawn(self, worker: _Worker) -> None:
        """Start `worker` and wait until it listens; raise WorkerStartError if it cannot."""
        # systemd hears from the supervisor alone (NotifyAccess=main).
        env = {name: value for name, value in os.environ.items() if name not in SYSTEMD_ENV}
        env[MULTIPROC_DIR_ENV] = self.metrics_dir
        fds = {unix.path: unix.sock.fileno() for unix in self.unix_sockets}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lookupd.worker", str(worker.index), str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env=env, pass_fds=tuple(fds.values()),
        )
        worker.process = process
        worker.started = time.monotonic()
        assert process.stdin is not None and process.stdout is not None
        request = {"settings": settings_to_json(self.settings), "unix_sockets": fds}
        process.stdin.write(json.dumps(request).encode())
        with contextlib.suppress(ConnectionError):  # it died at once: its status says why
            await process.stdin.drain()
        process.stdin.close()
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise WorkerStartError(f"worker {worker.index} did not listen within "
                                   f"{START_TIMEOUT:g} s") from None
        answer = line.decode(errors="replace").strip()
        if answer != READY:
            await process.wait()
            reason = answer.removeprefix(ERROR).strip()
            raise WorkerStartError(reason or f"worker {worker.index} exited at start "
                                   f"({_exit_status(process.returncode)})")
        log.info("worker %d listening (pid %d)", worker.index, process.pid)
        worker.heartbeat = asyncio.create_task(_follow_heartbeat(worker.index, process))

    async def _watch(self, worker: _Worker) -> None:
        """Start `worker` again whenever it dies, until the stop."""
        while True:
            assert worker.process is not None
            status = await worker.process.wait()
            if self._stopping.is_set():
                return
            _forget_gauges(worker.process.pid, self.metrics_dir)
            lived = time.monotonic() - worker.started
            worker.quick_deaths = 0 if lived >= STABLE_AFTER else worker.quick_deaths + 1
            delay = min(RESTART_MAX_DELAY, RESTART_DELAY * 2 ** max(0, worker.quick_deaths - 1))
            log.warning("worker %d (pid %d) %s after %.1f s; starting it again in %.1f s",
                        worker.index, worker.process.pid, _exit_status(status), lived, delay)
            if await wait_for_event(self._stopping, delay):
                return
            try:
                await self._spawn(worker)
            except (WorkerStartError, OSError) as error:
                if self._stopping.is_set():
                    return  # stopped while it started
                log.error("worker %d cannot start: %s", worker.index, error)
                if worker.process.returncode is None:
                    await worker.process.wait()

    async def stop(self) -> None:
        """SIGTERM every worker, wait for each to finish gracefully (SIGKILL after
        STOP_TIMEOUT), then close the shared sockets and remove the metrics directory."""
        self._stopping.set()
        for worker in self.workers:
            if worker.heartbeat is not None:
                worker.heartbeat.cancel()
        try:
            await _stop_processes([w.process for w in self.workers if w.process is not None])
            await asyncio.gather(*self._watchers, return_exceptions=True)
        finally:
            for unix in self.unix_sockets:
                unix.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


async def start_workers(settings: Settings) -> Workers:
    """Bind the unix sockets, start LOOKUPD_WORKERS workers and wait until all listen.

    Raises WorkerStartError (the first worker's one-line reason) when one cannot start, after
    stopping the others and closing what was opened.
    """
    metrics_dir = tempfile.mkdtemp(prefix="dinomail-lookupd-metrics-")
    workers = Workers(settings, metrics_dir, [])
    try:
        workers.unix_sockets.extend(_bind_unix_sockets(settings))
        workers.workers.extend(_Worker(index) for index in range(settings.LOOKUPD_WORKERS))
        starts = [asyncio.ensure_future(workers._spawn(w)) for w in workers.workers]
        try:
            await asyncio.gather(*starts)
        finally:
            for start in starts:  # the first failure leaves the others to finish starting
                await asyncio.gather(start, return_exceptions=True)
    except BaseException:
        await workers.stop()
        raise
    workers._watchers.extend(asyncio.create_task(workers._watch(w)) for w in workers.workers)
    log.info("%d lookupd workers listening (pids %s)", len(workers.workers),
             " ".join(map(str, workers.pids)))
    return workers


def _bind_unix_sockets(settings: Settings) -> list[_UnixSocket]:
    """The unix sockets of the listen settings, bound once for every worker to accept on."""
    if not settings.DICT_LISTEN:
        Path(settings.STATE_DIR).mkdir(mode=0o750, parents=True, exist_ok=True)
    ids = socket_owner_ids(settings.UNIX_SOCKET_OWNER, settings.UNIX_SOCKET_GROUP)
    listens = {
        settings.SOCKETMAP_LISTEN: settings.unix_socket_mode,
        settings.POLICY_LISTEN: settings.unix_socket_mode,
        settings.dict_listen: settings.unix_socket_mode,
        settings.LOOKUPD_HTTP_LISTEN: HTTP_UNIX_MODE,
    }
    bound: list[_UnixSocket] = []
    try:
        for listen, mode in listens.items():
            path = parse_listen(listen).path
            if path is None:
                continue
            sock = bind_unix_socket(path, mode=mode)
            info = os.lstat(path)
            bound.append(_UnixSocket(sock, path, (info.st_dev, info.st_ino)))
            sock.set_inheritable(True)
            if mode != HTTP_UNIX_MODE:
                set_socket_permissions(path, ids, mode)
    except BaseException:
        for unix in bound:
            unix.close()
        raise
    return bound


async def _follow_heartbeat(index: int, process: asyncio.subprocess.Process) -> None:
    """Kill the worker if its event loop stops beating (the watcher starts it again)."""
    assert process.stdout is not None
    while True:
        try:
            async with asyncio.timeout(HEARTBEAT_TIMEOUT):
                beat = await process.stdout.read(64)
        except TimeoutError:
            if process.returncode is None:
                log.error("worker %d (pid %d) has not answered for %g s: killing it", index,
                          process.pid, HEARTBEAT_TIMEOUT)
                process.kill()
            return
        if not beat:
            return  # it exits


async def _stop_processes(processes: list[asyncio.subprocess.Process]) -> None:
    running = [p for p in processes if p.returncode is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    waits = [asyncio.ensure_future(p.wait()) for p in running]
    if not waits:
        return
    _, late = await asyncio.wait(waits, timeout=STOP_TIMEOUT)
    for process in running:
        if process.returncode is None:
            log.error("worker pid %d did not stop within %g s: killed", process.pid,
                      STOP_TIMEOUT)
            process.kill()
    await asyncio.gather(*late)


def _forget_gauges(pid: int, metrics_dir: str) -> None:
    """A dead worker's gauges (connections, rows, blocked clients …) describe nothing any more;
    its counters stay, so that no count goes backwards."""
    mark_process_dead(pid, metrics_dir)  # the live* modes
    for path in Path(metrics_dir).glob(f"gauge_*_{pid}.db"):
        path.unlink(missing_ok=True)


def _exit_status(status: int | None) -> str:
    if status is None:
        return "is running"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
