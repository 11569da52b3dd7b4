"""DNS questions for the checks: dnspython's async resolver, without a cache (a check must see
what DNS says now), each question asked once per run, and every failure turned into an outcome
instead of an exception."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.resolver
from dns.rdtypes.txtbase import TXTBase

from dinomail.dnscheck.model import ANSWER, ERROR, NODATA, NXDOMAIN, SERVFAIL, TIMEOUT, Query
from dinomail.errortext import first_line

DNS_PORT = 53
# A lost UDP packet is retried within the timeout after this long (as resolv.conf's default).
RETRY_AFTER = 2.0
# Large enough for a 4096-bit DKIM record without falling back to TCP; the DNS flag day value.
EDNS_PAYLOAD = 1232


def parse_nameserver(text: str) -> tuple[str, int]:
    """`192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`."""
    value = text.strip()
    port = ""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: write an IPv6 resolver with a port as [address]:port")
        port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host = value
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"{text!r}: a resolver is an IP address, optionally with :port") from None
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return address, int(port) if port else DNS_PORT


class Resolver:
    """Asks the configured resolvers (or the system's); one instance per check run."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 5.0) -> None:
        self._memo: dict[tuple[str, str], Query] = {}
        self._unusable: str | None = None
        try:
            if nameservers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(*parse_nameserver(item))
                    for item in nameservers
                ]
            else:
                resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as error:
            self._unusable = f"no DNS resolver configured ({error})"
            resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.cache = None
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, RETRY_AFTER)
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        self._resolver = resolver

    async def query(self, name: str, rdtype: str) -> Query:
        key = (name.lower().rstrip("."), rdtype)
        if key not in self._memo:
            self._memo[key] = await self._ask(key[0], rdtype)
        return self._memo[key]

    async def _ask(self, name: str, rdtype: str) -> Query:
        if self._unusable:
            return Query(name, rdtype, ERROR, error=self._unusable)
        try:
            qname = dns.name.from_text(name)
            answer = await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Query(name, rdtype, NXDOMAIN, error="no such name")
        except dns.resolver.NoAnswer:
            return Query(name, rdtype, NODATA, error=f"the name has no {rdtype} record")
        except dns.exception.Timeout:
            # dnspython's own text reads "Server … answered The DNS operation timed out".
            return Query(name, rdtype, TIMEOUT,
                         error=f"no answer within {self._resolver.lifetime:g} s")
        except dns.resolver.NoNameservers as error:
            return Query(name, rdtype, SERVFAIL, error=first_line(error, 300))
        except dns.exception.DNSException as error:
            return Query(name, rdtype, ERROR, error=first_line(error, 300))
        rdata = list(answer)
        canonical = answer.canonical_name.to_text(omit_final_dot=True)
        return Query(
            name, rdtype, ANSWER, records=[_as_text(item) for item in rdata], rdata=rdata,
            canonical_name=canonical if canonical.lower() != name else None,
        )


def _as_text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, TXTBase):
        # Verifiers join a record's character-strings with nothing between them (RFC 6376 3.6.2.2,
        # RFC 7208 3.3); so does every check here.
        return b"".join(rdata.strings).decode("utf-8", "backslashreplace")
    return rdata.to_text()
