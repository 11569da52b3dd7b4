"""A real DNS server for the tests: dnsmasq on a loopback port, answering from records the test
gives, plus zones whose server never answers (queries for them time out).

dnsmasq answers the `local` zones itself (a name it has no record for is NXDOMAIN) and forwards
the `silent` zones to a UDP socket that reads nothing and answers nothing. Nothing leaves the
loopback interface: there is no other upstream.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.resolver
import pytest

DNSMASQ_PATHS = ("/usr/sbin/dnsmasq", "dnsmasq")
START_TIMEOUT = 10.0


def find_dnsmasq() -> str | None:
    for candidate in DNSMASQ_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


# --- records, as dnsmasq configuration lines ------------------------------------------------------


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def txt(name: str, *strings: str) -> str:
    """A TXT record of one or more character-strings (each at most 255 bytes)."""
    assert all(len(part.encode()) <= 255 for part in strings), "split long TXT data"
    return f"txt-record={name},{','.join(_quoted(part) for part in strings)}"


def mx(name: str, host: str, preference: int = 10) -> str:
    return f"mx-host={name},{host},{preference}"


def address(name: str, ip: str) -> str:
    return f"host-record={name},{ip}"


def cname(name: str, target: str) -> str:
    return f"cname={name},{target}"


def srv(name: str, target: str, port: int) -> str:
    return f"srv-host={name},{target},{port}"


# --- the server -----------------------------------------------------------------------------------


def _free_udp_and_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port for the DNS server")


class DnsServer:
    def __init__(
        self, records: Sequence[str], *, local: Sequence[str], silent: Sequence[str] = ()
    ) -> None:
        self.records = list(records)
        self.local = list(local)
        self.silent = list(silent)
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._blackhole: socket.socket | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def nameserver(self) -> str:
        """The server as a DNS_RESOLVERS entry."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_dnsmasq()
        if binary is None:
            pytest.fail("dnsmasq is not installed (apt install dnsmasq-base)")
        self._blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._blackhole.bind(("127.0.0.1", 0))
        blackhole_port = self._blackhole.getsockname()[1]
        self.port = _free_udp_and_tcp_port()
        self._folder = tempfile.TemporaryDirectory(prefix="dinomail-dns-")
        config = Path(self._folder.name) / "dnsmasq.conf"
        lines = [
            "no-resolv", "no-hosts", "listen-address=127.0.0.1", "bind-interfaces",
            f"port={self.port}", "cache-size=0", "no-negcache",
            *(f"local=/{zone}/" for zone in self.local),
            *(f"server=/{zone}/127.0.0.1#{blackhole_port}" for zone in self.silent),
            *self.records,
        ]
        config.write_text("\n".join(lines) + "\n")
        self._process = subprocess.Popen(
            [binary, "--keep-in-foreground", f"--conf-file={config}", "--pid-file=",
             f"--user={getpass.getuser()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        assert self._process is not None
        probe = dns.message.make_query(f"probe.{self.local[0]}", "TXT")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                _, stderr = self._process.communicate()
                self.stop()
                raise RuntimeError(f"dnsmasq did not start: {stderr.strip()}")
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("dnsmasq did not answer in time")

    def stop(self) -> None:
        if self._process is not None:
            process, self._process = self._process, None
            process.terminate()
            try:
                process.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
        if self._blackhole is not None:
            self._blackhole.close()
            self._blackhole = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


@contextmanager
def running_dns(
    records: Sequence[str], *, local: Sequence[str], silent: Sequence[str] = ()
) -> Iterator[DnsServer]:
    server = DnsServer(records, local=local, silent=silent)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unused_nameserver() -> str:
    """A loopback resolver address where nothing listens: for tests that must never send a DNS
    question off the machine, whatever they trigger."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{udp.getsockname()[1]}"


def txt_lookup(server: DnsServer) -> Callable[..., bytes | None]:
    """A `dnsfunc` for dkimpy: the TXT record of a name, its strings joined, asked of
    `server` alone; None for a name with none (as dkimpy's own lookup answers)."""
    host, port = server.nameserver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [host], int(port)

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(text, "TXT", lifetime=timeout, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        return b"".join(next(iter(answer)).strings)

    return lookup
