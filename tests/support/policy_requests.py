"""Postfix policy delegation requests as Postfix 3.7 sends them, and the mail data and limits
the policy tests decide them against."""

from __future__ import annotations

from dinomail.records import AliasDomainRow, AliasRow, DomainRow, MailboxRow, MailData
from lookupd.policy.tables import DomainLimits, PolicyTables, SendLimits
from lookupd.snapshot import Snapshot

# What Postfix 3.7 sends at RCPT TO of an authenticated submission, in its order [V].
RCPT_ATTRIBUTES = [
    ("request", "smtpd_access_policy"),
    ("protocol_state", "RCPT"),
    ("protocol_name", "ESMTP"),
    ("client_address", "192.0.2.7"),
    ("client_name", "laptop.example.net"),
    ("client_port", "52814"),
    ("reverse_client_name", "laptop.example.net"),
    ("server_address", "198.51.100.25"),
    ("server_port", "587"),
    ("helo_name", "[192.168.1.20]"),
    ("sender", "alice@example.org"),
    ("recipient", "friend@elsewhere.net"),
    ("recipient_count", "0"),
    ("queue_id", ""),
    ("instance", "1a2b.6745c2f1.8d3e0.0"),
    ("size", "1234"),
    ("etrn_domain", ""),
    ("stress", ""),
    ("sasl_method", "PLAIN"),
    ("sasl_username", "alice@example.org"),
    ("sasl_sender", ""),
    ("ccert_subject", ""),
    ("ccert_issuer", ""),
    ("ccert_fingerprint", ""),
    ("ccert_pubkey_fingerprint", ""),
    ("encryption_protocol", "TLSv1.3"),
    ("encryption_cipher", "TLS_AES_256_GCM_SHA384"),
    ("encryption_keysize", "256"),
    ("policy_context", ""),
    ("compatibility_level", "3.6"),
]


def encode(attributes: list[tuple[str, str]]) -> bytes:
    return b"".join(f"{name}={value}\n".encode() for name, value in attributes) + b"\n"


def request(**changes: str) -> dict[bytes, bytes]:
    """A parsed request: the RCPT attributes with `changes`, as the parser hands it on."""
    attributes = dict(RCPT_ATTRIBUTES)
    attributes.update(changes)
    return {name.encode(): value.encode() for name, value in attributes.items()}


def postfix_request(**changes: str) -> bytes:
    """A request with every attribute Postfix 3.7 sends, in its order."""
    attributes = dict(RCPT_ATTRIBUTES)
    attributes.update(changes)
    return encode(list(attributes.items()))


def snapshot() -> Snapshot:
    return Snapshot.build(MailData(
        domains=[DomainRow(1, "example.org", True), DomainRow(2, "other.org", True)],
        alias_domains=[AliasDomainRow(1, "example.net", 1, True)],
        mailboxes=[
            MailboxRow(1, 1, "alice@example.org", "{PLAIN}a", 1000, True),
            MailboxRow(2, 1, "bob@example.org", "{PLAIN}b", 1000, True),
            MailboxRow(3, 2, "carol@other.org", "{PLAIN}c", None, True),
        ],
        aliases=[
            AliasRow(1, 1, "info@example.org", "alice@example.org"),
            AliasRow(2, 1, "team@example.org", "alice@example.org"),
            AliasRow(3, 1, "team@example.org", "bob@example.org"),
        ],
    ))


# Limits of `snapshot()`'s data: two messages an hour per mailbox of example.org; alice is full.
TABLES = PolicyTables(
    domains={"example.org": DomainLimits(SendLimits(messages_per_hour=2), SendLimits(), "")},
    full_mailboxes={1: 1000},
)
