"""Free loopback ports for the servers the tests start.

A port is free when we look and taken when the server binds it; in between, another process may
take it. Two things make that unlikely: ports come from below Linux's ephemeral range
(32768-60999), which the kernel hands to every outgoing connection (the other test worker's
database and HTTP clients among them), and each pytest-xdist worker takes its own slice, handed
out in turn, so a port one test just gave back is not the next one's.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

FIRST_PORT, LAST_PORT = 10_000, 32_000


def _slice() -> range:
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (LAST_PORT - FIRST_PORT) // workers
    start = FIRST_PORT + (worker % workers) * size
    return range(start, start + size)


_PORTS = _slice()
_turn = itertools.count(random.randrange(len(_PORTS)))


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_turn) % len(_PORTS)]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {host} in {_PORTS}")
