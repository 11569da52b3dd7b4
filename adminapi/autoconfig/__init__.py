"""Mail client autoconfiguration: Thunderbird autoconfig, Microsoft Autodiscover, Apple
`.mobileconfig`.

- `servers`: which hosts, ports and TLS modes a domain's clients get;
- `documents`: the XML and plist documents (and reading the Autodiscover request);
- `endpoints`: the public routes, the host check that lets them through, and `download` for
  the admin pages.
"""

from adminapi.autoconfig.documents import autodiscover_response, mobileconfig, thunderbird_config
from adminapi.autoconfig.endpoints import PUBLIC_PATHS, HostCheck, download, routes
from adminapi.autoconfig.servers import ClientSettings, client_settings, load_client_settings

__all__ = [
    "PUBLIC_PATHS",
    "ClientSettings",
    "HostCheck",
    "autodiscover_response",
    "client_settings",
    "download",
    "load_client_settings",
    "mobileconfig",
    "routes",
    "thunderbird_config",
]
