"""An installation with every kind of object an export carries, filled through the store.

On top of `mail_data` (domains, mailboxes, aliases, an alias domain, a catch-all, inactive
objects, an IDNA domain): domain settings and limits, a DKIM key pair, mail client settings,
domain and mailbox sending limits, a SHA512-CRYPT mailbox, a superadmin and a domain admin with
API keys (one of them revoked).
"""

from __future__ import annotations

from dataclasses import dataclass

from dinomail import dkim
from dinomail.passwords import hash_password
from dinomail.store import EVERYTHING, Store, admins, apikeys, dns, domains, mailboxes, policy
from tests.support.adminapi import PASSWORD
from tests.support.mail_data import fill_mail_data

CRYPT_PASSWORD = "frank's password"


@dataclass
class Filled:
    ids: dict[str, int]
    root_key: str
    tenant_key: str
    revoked_key: str


async def fill_everything(store: Store) -> Filled:
    ids = await fill_mail_data(store)
    async with store.write() as conn:
        example = ids["example.org"]
        await domains.update(conn, "test", EVERYTHING, example, {
            "display_name": "Example Org", "short_display_name": "Example",
            "imap_address": "imap.example.org", "max_mailboxes": 10, "max_aliases": 20,
            "max_quota_per_mailbox": 2_000_000, "total_quota": 10_000_000,
            "default_quota": 500_000,
        })
        await dns.save_dkim_key(conn, "test", EVERYTHING, example, "dm202612",
                                dkim.generate_key(dkim.ED25519, dkim.ED25519_KEY_BITS))
        await dns.update_client_config(conn, "test", EVERYTHING, example,
                                       {"mx_host": "mx.example.org", "pop3_ssl_port": 0})
        await policy.set_domain_limits(conn, "test", EVERYTHING, example, {
            "mailbox_messages_per_hour": 100, "domain_recipients_per_day": 5000,
            "reply": "DEFER_IF_PERMIT 4.7.1 slow down",
        })
        frank = await mailboxes.create(
            conn, "test", EVERYTHING, {"email": "frank@example.org", "quota": None},
            password_hash=hash_password(CRYPT_PASSWORD, "SHA512-CRYPT"),
        )
        ids["frank@example.org"] = frank["id"]
        await policy.set_mailbox_limits(conn, "test", EVERYTHING, frank["id"],
                                        {"messages_per_day": 50, "recipients_per_hour": 0})
        root = await admins.create(conn, "test", username="root", password=PASSWORD,
                                   email="root@example.org", is_superadmin=True)
        tenant = await admins.create(
            conn, "test", username="tenant", password=PASSWORD,
            domain_ids=[example, ids["xn--bcher-kva.example"]],
        )
        _, root_key = await apikeys.create(conn, "test", root["id"], name="backup")
        _, tenant_key = await apikeys.create(conn, "test", tenant["id"], read_only=True)
        revoked, revoked_key = await apikeys.create(conn, "test", tenant["id"], name="old")
        await apikeys.revoke(conn, "test", tenant["id"], revoked["id"])
    return Filled(ids, root_key, tenant_key, revoked_key)
