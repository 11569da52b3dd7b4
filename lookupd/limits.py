"""How many connections each lookup listener may hold, within the process's descriptor limit.

Every connection is a file descriptor, and so is everything else the daemon needs: the HTTP
listener's clients (`/healthz`, `/metrics`, Dovecot's HTTP lookups), the database connections,
the log, the snapshot file. Once the descriptors are gone, `accept` and `open` fail everywhere at
once ("Too many open files"); so the listeners' limits together leave `reserved` descriptors
for the rest, and a flood of idle socketmap connections waits in the backlog instead of taking
the health check and the dict down with it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("dinomail.lookupd.limits")

# Below this, no listener is left without a few connections whatever the descriptor limit.
MIN_CONNECTIONS = 8


def open_files_limit() -> int:
    """The process's descriptor limit (`LimitNOFILE=` in the systemd unit, `ulimit -n`)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limits(
    wanted: dict[str, int], *, reserved: int, open_files: int | None = None
) -> dict[str, int]:
    """The limits to apply: `wanted` when they fit with `reserved` descriptors under the
    process's limit, otherwise each lowered in proportion (and a warning logged)."""
    limit = open_files_limit() if open_files is None else open_files
    total = sum(wanted.values())
    available = limit - reserved
    if total <= available:
        return dict(wanted)
    available = max(available, MIN_CONNECTIONS * len(wanted))
    lowered = {
        name: max(MIN_CONNECTIONS, count * available // total) for name, count in wanted.items()
    }
    log.warning(
        "the process may open %d files; to keep %d for HTTP, the database and logs, the "
        "connection limits are lowered to %s (raise LimitNOFILE to keep %s)",
        limit, reserved, _shown(lowered), _shown(wanted),
    )
    return lowered


def _shown(limits: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in limits.items())
