"""An installation with every kind of object an export carries, filled through the store.

On top of `mail_data` (domains, mailboxes, aliases, an alias domain, a catch-all, inactive
objects, an IDNA domain): domain settings and limits, a DKIM key pair, mail client settings,
domain and mailbox sending limits, a SHA512-CRYPT mailbox, a superadmin and a domain admin with
API keys (one of them revoked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from dinomail import dkim, totp
from dinomail.passwords import hash_password
from dinomail.settings import LANGUAGES
from dinomail.store import (
    EVERYTHING,
    Store,
    admins,
    apikeys,
    apppasswords,
    dns,
    domains,
    forwarding,
    mailboxes,
    ownerlogin,
    policy,
    selfservice,
    twofactor,
    vacation,
)
from dinomail.store.common import now
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


# The second factors, preferences and mailbox settings that export format version 2 added.
APP_PASSWORD_MAILBOX = "alice@example.org"


@dataclass
class Extras:
    totp_secret: str
    # When the TOTP was confirmed: codes of that time step or earlier are spent.
    totp_confirmed_at: float
    recovery_codes: list[str]
    app_password: str
    # Alice's own authenticator app (the `/me/` login's), confirmed at `totp_confirmed_at` too.
    owner_totp_secret: str
    # Its recovery codes, made when it was confirmed; the first one used.
    owner_recovery_codes: list[str]


async def fill_extras(store: Store, filled: Filled) -> Extras:
    """On top of `fill_everything`: root with a language, a confirmed TOTP, recovery codes (one
    used) and two passkeys (one used); tenant with a TOTP still waiting for its first code;
    example.org requiring app passwords, with external forwarding off and its DKIM key rotated
    twice (dm202612, Ed25519, and dm202701, RSA, retiring; dm202702 current); alice with a vacation
    reply, two app passwords (one used) and her own confirmed authenticator app with its recovery
    codes (one used); bob forwarding
    to two hosted addresses and an authenticator app still waiting for its first code."""
    ids = filled.ids
    confirmed_at = time.time() - 3600
    app_password = apppasswords.new_secret()
    app_hash = await apppasswords.hash_secret(app_password)
    async with store.write() as conn:
        root = await admins.get_by_username(conn, "root")
        tenant = await admins.get_by_username(conn, "tenant")
        await admins.set_language(conn, "test", root["id"], "fr", LANGUAGES)
        secret = await twofactor.start_totp(conn, root["id"])
        await twofactor.confirm_totp(conn, "test", root["id"],
                                     totp.code_at(secret, totp.time_step(confirmed_at)),
                                     at=confirmed_at)
        codes = await twofactor.new_recovery_codes(conn, "test", root["id"])
        assert await twofactor.use_recovery_code(conn, "test", root["id"], codes[0])
        key = await twofactor.add_passkey(
            conn, "test", root["id"], name="YubiKey", credential_id="Y3JlZGVudGlhbC0x",
            public_key="pQECAyYgASFYIGNvc2Uta2V5LTE", sign_count=0)
        await twofactor.passkey_used(conn, key["id"], 41)
        await twofactor.add_passkey(
            conn, "test", root["id"], name="Laptop", credential_id="Y3JlZGVudGlhbC0y",
            public_key="pQECAyYgASFYIGNvc2Uta2V5LTI", sign_count=3)
        await twofactor.start_totp(conn, tenant["id"])

        example = ids["example.org"]
        await domains.update(conn, "test", EVERYTHING, example, {"require_app_passwords": True})
        await forwarding.put(conn, "test", EVERYTHING, ids["bob@example.org"],
                             {"destinations": ["alice@example.org", "dan@dormant.org"],
                              "keep_copy": True})
        await selfservice.put(conn, "test", EVERYTHING, example,
                              {"external_forwarding": False})
        await dns.save_dkim_key(conn, "test", EVERYTHING, example, "dm202701",
                                dkim.generate_key(dkim.RSA, dkim.DEFAULT_RSA_BITS))
        await dns.save_dkim_key(conn, "test", EVERYTHING, example, "dm202702",
                                dkim.generate_key(dkim.ED25519, dkim.ED25519_KEY_BITS))
        alice = ids[APP_PASSWORD_MAILBOX]
        await vacation.put(conn, "test", EVERYTHING, alice, {
            "enabled": True, "subject": "Away « en congé »", "body": "Back on Monday.\nAlice",
            "starts": "2026-12-20", "ends": "2027-01-04", "interval_days": 3})
        phone = await apppasswords.create(conn, "test", EVERYTHING, alice, name="phone",
                                          protocols=["smtp", "imap"], password_hash=app_hash)
        await apppasswords.create(conn, "test", EVERYTHING, alice, name="old laptop",
                                  protocols=["pop3", "sieve"], password_hash=app_hash)
        await apppasswords.record_use(conn, {phone["id"]: now() - timedelta(days=2)})
        owner_secret = await ownerlogin.start_totp(conn, EVERYTHING, alice)
        owner_codes = await ownerlogin.confirm_totp(
            conn, "test", EVERYTHING, alice,
            totp.code_at(owner_secret, totp.time_step(confirmed_at)), at=confirmed_at)
        assert await ownerlogin.check_code(conn, "test", alice, owner_codes[0])
        await ownerlogin.start_totp(conn, EVERYTHING, ids["bob@example.org"])
    return Extras(secret, confirmed_at, codes, app_password, owner_secret, owner_codes)
