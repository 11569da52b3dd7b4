"""The mail data the socketmap tests answer from: a catch-all that owns its senders, an IDNA
domain, an alias domain, and an alias list whose reply is too long for Postfix."""

from __future__ import annotations

from dinomail.records import AliasDomainRow, AliasRow, DomainRow, MailboxRow, MailData
from lookupd.socketmap import MAX_REPLY_BYTES


def mail_data() -> MailData:
    return MailData(
        domains=[
            # The catch-all of example.com owns its unknown addresses as a sender too.
            DomainRow(1, "example.com", True, catchall_senders=True),
            DomainRow(2, "xn--bcher-kva.example", True),
            DomainRow(3, "big.example", True),
        ],
        alias_domains=[AliasDomainRow(1, "example.org", 1, True)],
        mailboxes=[
            MailboxRow(1, 1, "alice@example.com", "{PLAIN}a", None, True),
            MailboxRow(2, 1, "bob@example.com", "{PLAIN}b", None, True),
        ],
        aliases=[
            AliasRow(1, 1, "info@example.com", "alice@example.com"),
            AliasRow(2, 1, "info@example.com", "bob@example.net"),
            AliasRow(3, 1, "@example.com", "alice@example.com"),
            # A list so long that its reply exceeds what Postfix accepts.
            *(
                AliasRow(100 + n, 3, "everyone@big.example", f"member{n:06}@elsewhere.example")
                for n in range(MAX_REPLY_BYTES // 25)
            ),
        ],
    )
