"""Plain rows of the mail tables, as the store loads them for the lookup daemon.

These are the only shapes that cross from `dinomail.store` to `lookupd`: the snapshot is built
from them and updated with them, so neither side needs to know the other's internals.
Every string is already normalised (lowercase, domains in IDNA ASCII form).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class DomainRow:
    """A row of `core_virtualdomain`."""

    id: int
    name: str
    active: bool
    # The catch-all's destinations may send as the domain's addresses that are neither a
    # mailbox nor an alias (see `lookupd.resolve.resolve_senders`).
    catchall_senders: bool = False
    # The domain's mailboxes log in to IMAP, POP3, SMTP and ManageSieve with app passwords only
    # (see `lookupd.dovecot.verify`).
    require_app_passwords: bool = False


@dataclass(frozen=True, slots=True)
class AliasDomainRow:
    """A row of `dinomail_aliasdomain`: mail to `local@name` is mail to `local@<target>`."""

    id: int
    name: str
    target_domain_id: int
    active: bool


@dataclass(frozen=True, slots=True)
class MailboxRow:
    """A row of `core_virtualuser`. `quota` is in bytes; 0 or None means unlimited."""

    id: int
    domain_id: int
    email: str
    password: str
    quota: int | None
    active: bool


@dataclass(frozen=True, slots=True)
class AliasRow:
    """A row of `core_virtualalias`; several rows with one source are several destinations.

    A source of the form `@domain` is that domain's catch-all.
    """

    id: int
    domain_id: int
    source: str
    destination: str


@dataclass(frozen=True, slots=True)
class AppPasswordRow:
    """A row of `dinomail_apppassword`, as much as a login needs: the `{SCHEME}hash` (never a
    plaintext, which is not kept anywhere) and the protocols it opens, comma-separated."""

    id: int
    mailbox_id: int
    protocols: str
    password: str


@dataclass(frozen=True, slots=True)
class VacationRow:
    """A row of `dinomail_vacation`: a mailbox's vacation reply settings, of which the lookup
    daemon makes its Sieve script (`dinomail.sieve.vacation_script`). Its key is the mailbox's
    id. `starts` and `ends` are days, both included; None: no bound."""

    mailbox_id: int
    enabled: bool
    subject: str
    body: str
    starts: date | None
    ends: date | None
    interval_days: int


@dataclass(frozen=True, slots=True)
class MailData:
    """Every mail row at once: what a full load of the snapshot reads."""

    domains: list[DomainRow]
    alias_domains: list[AliasDomainRow]
    mailboxes: list[MailboxRow]
    aliases: list[AliasRow]
    app_passwords: list[AppPasswordRow] = field(default_factory=list)
    vacations: list[VacationRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MailChanges:
    """What changed since the last refresh: rows to insert or replace, and ids to drop.

    An id appears in `removed_*` when its row is gone (deleted); a changed row appears in the
    row list with its new values. The refresher builds this from the change log.
    """

    domains: list[DomainRow]
    removed_domains: list[int]
    alias_domains: list[AliasDomainRow]
    removed_alias_domains: list[int]
    mailboxes: list[MailboxRow]
    removed_mailboxes: list[int]
    aliases: list[AliasRow]
    removed_aliases: list[int]
    app_passwords: list[AppPasswordRow] = field(default_factory=list)
    removed_app_passwords: list[int] = field(default_factory=list)
    vacations: list[VacationRow] = field(default_factory=list)
    removed_vacations: list[int] = field(default_factory=list)  # mailbox ids

    def __len__(self) -> int:
        return sum(
            len(part)
            for part in (
                self.domains, self.removed_domains, self.alias_domains,
                self.removed_alias_domains, self.mailboxes, self.removed_mailboxes,
                self.aliases, self.removed_aliases, self.app_passwords,
                self.removed_app_passwords, self.vacations, self.removed_vacations,
            )
        )
