"""Listen addresses, as the `*_LISTEN` settings write them: `HOST:PORT`, `[v6]:PORT` or
`unix:/path`. One parser, used to validate the settings and to bind the listeners."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP host and port, or a unix socket path (then `host` is None)."""

    host: str | None = None
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """Parse a listen setting; raise ValueError saying what is wrong.

    Port 0 means "any free port" (tests use it; `Listener.address` tells which one was taken).
    """
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if not path:
            raise ValueError(f"{value!r}: a unix socket needs a path, as in unix:/run/x.sock")
        return ListenAddress(path=path)
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r}: must be HOST:PORT, [IPv6]:PORT or unix:/path")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise ValueError(f"{value!r}: an IPv6 address is written in brackets, as [::1]:10027")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: an IPv6 address is written in brackets, as [::1]:10027")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    return ListenAddress(host=host, port=int(port))
