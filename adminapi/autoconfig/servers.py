"""Which servers a domain's mail clients are told to use: hosts from the domain (as in the
original: `imap.<domain>` and `smtp.<domain>` by default, POP3 only when a POP address is set),
ports and TLS modes from its client settings (implicit TLS first, STARTTLS as the
alternative)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dinomail import validation as v
from dinomail.store import dns as dns_store
from dinomail.store import domains
from dinomail.store.errors import NotFound
from dinomail.store.scope import EVERYTHING, Scope

SSL = "SSL"  # implicit TLS, Thunderbird's name for it
STARTTLS = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Server:
    protocol: str  # imap, pop3, smtp
    host: str
    port: int
    socket_type: str  # SSL or STARTTLS


@dataclass(frozen=True, slots=True)
class ClientSettings:
    domain: str
    display_name: str
    short_name: str
    # In order of preference: every IMAP offer, then every POP3 offer.
    incoming: tuple[Server, ...]
    outgoing: tuple[Server, ...]

    def first(self, protocol: str) -> Server | None:
        return next(
            (server for server in (*self.incoming, *self.outgoing)
             if server.protocol == protocol), None,
        )


def imap_host(domain: Mapping[str, Any]) -> str:
    return domain["imap_address"] or f"imap.{domain['name']}"


def smtp_host(domain: Mapping[str, Any]) -> str:
    return domain["smtp_address"] or f"smtp.{domain['name']}"


def pop3_host(domain: Mapping[str, Any]) -> str:
    """Empty when the domain offers no POP3 (the original's rule: only with a POP address)."""
    return str(domain["pop_address"] or "")


def _offers(protocol: str, host: str, config: Mapping[str, Any]) -> list[Server]:
    offers = []
    for mode, socket_type in (("ssl", SSL), ("starttls", STARTTLS)):
        port = config[f"{protocol}_{mode}_port"]
        if port:
            offers.append(Server(protocol, host, int(port), socket_type))
    return offers


def client_settings(domain: Mapping[str, Any], config: Mapping[str, Any]) -> ClientSettings:
    name = domain["name"]
    incoming = _offers("imap", imap_host(domain), config)
    if pop3_host(domain):
        incoming += _offers("pop3", pop3_host(domain), config)
    display = domain["display_name"] or v.display_domain(name)
    return ClientSettings(
        domain=name,
        display_name=display,
        short_name=domain["short_display_name"] or display,
        incoming=tuple(incoming),
        outgoing=tuple(_offers("smtp", smtp_host(domain), config)),
    )


async def load_client_settings(
    conn: AsyncConnection, scope: Scope, domain_id: int
) -> ClientSettings:
    """A visible domain's settings, active or not (the admin's download)."""
    domain = await domains.get(conn, scope, domain_id)
    config = (await dns_store.client_configs(conn, [domain_id]))[domain_id]
    return client_settings(domain, config)


async def public_client_settings(conn: AsyncConnection, name: str) -> ClientSettings | None:
    """The settings of an active mail domain, for anyone who asks; None if there is no such
    domain (alias domains and inactive domains included: their users cannot log in there)."""
    try:
        domain = await domains.get_by_name(conn, EVERYTHING, name)
    except (NotFound, v.ValidationError):
        return None
    if not domain["active"]:
        return None
    config = (await dns_store.client_configs(conn, [domain["id"]]))[domain["id"]]
    return client_settings(domain, config)
