"""The in-memory view of the mail data that every lookup is answered from.

A `Snapshot` is built whole from a full load (`Snapshot.build`) and then kept current with
`apply`, which mutates it in place. `apply` never awaits, so on the daemon's single event loop no
lookup can run between two rows of one batch: readers see a batch entirely or not at all. A batch
costs time in proportion to its own size, never to the number of rows held, which is why there is
no copy-on-write here.

The snapshot stores rows, not answers. Whether a row counts (its mailbox and its domain active)
is checked at lookup time, so that switching a domain off does not rewrite its million mailboxes;
the address rules (extensions, catch-alls, alias domains, sender owners) are in `lookupd.resolve`.

Rows are the `dinomail.records` objects themselves, kept as they arrive: slotted, and filed under
keys that reuse their own strings, they are the cheapest form Python offers (copying them into
tuples would cost as much again while the load's rows are freed). Two million of them make a
full garbage collection take about a third of a second, so whoever swaps a new snapshot in should
then call `gc.freeze()` (see `Snapshot.build`).

Indexes:
- by id, so that a removal or an update finds the keys the old row was filed under;
- by lowercase key (domain name, email, alias source), for lookups.
An alias source maps to its single row, or, when several rows share the source (several
destinations), to a dict of those rows by id: one row per source is the common case, and a dict
keeps both the order of destinations and O(1) updates of a long list.
App passwords (their hashes and protocols) are filed by id and by mailbox id: a login reads them
here, never from the database, so it works through an outage and a revoked one stops working
as soon as its removal is applied.
Vacation settings are filed by mailbox id. A vacation script names the mailbox's other
addresses, the sources of the aliases leading to it: rather than a second index of every alias
by destination (as large as the aliases themselves, for the few mailboxes away), the aliases
leading to a mailbox with an enabled vacation are kept aside (`_vacation_sources`), rebuilt
with one walk over the aliases when the set of such mailboxes changes, and kept current by
each alias change in between.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import idna

from dinomail.records import (
    AliasDomainRow,
    AliasRow,
    AppPasswordRow,
    DomainRow,
    MailboxRow,
    MailChanges,
    MailData,
    VacationRow,
)

# What an alias source maps to: its one row, or its rows by id.
AliasEntry = AliasRow | dict[int, AliasRow]
# Every snapshot state gets its own number (see `Snapshot.generation`).
_generations = itertools.count(1)


@lru_cache(maxsize=4096)
def _idna_ascii(name: str) -> str | None:
    # Bounded: lookup keys come from clients, and converting is the slow part worth caching.
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except ValueError:  # idna.IDNAError and UnicodeError are ValueErrors
        return None


def domain_key(name: str) -> str | None:
    """The lookup form of a domain: lowercase, Unicode names in IDNA ASCII; None if invalid.

    This is the form the store saves (`dinomail.validation.normalize_domain`), so a client may
    ask in either form. ASCII names are only lowercased: they are compared, not validated.
    """
    key = name.lower()
    if key.isascii():
        return key
    return _idna_ascii(key)


def _stored_domain(name: str) -> str:
    # Rows arrive normalised; one edited by hand in SQL may not be, and costs little to fix here.
    key = domain_key(name) or name.lower()
    return name if key == name else key


def _stored_address(address: str) -> str:
    """The lookup form of a stored address or `@domain` source."""
    key = address.lower()
    if not key.isascii():
        local, at, domain = key.rpartition("@")
        if at:
            key = f"{local}@{domain_key(domain) or domain}"
    # Reusing the row's own string as the dict key keeps one copy of each address in memory.
    return address if key == address else key


class Snapshot:
    """Domains, alias domains, mailboxes, aliases, app passwords and vacations, indexed."""

    __slots__ = (
        "_alias_by_id",
        "_alias_domain_by_id",
        "_alias_domain_by_name",
        "_aliases_by_source",
        "_app_password_by_id",
        "_app_passwords_by_mailbox",
        "_domain_by_id",
        "_domain_by_name",
        "_mailbox_by_email",
        "_mailbox_by_id",
        "_vacation_by_mailbox",
        "_vacation_sources",
        "complete",
        "generation",
        "recipient_delimiter",
    )

    def __init__(self, *, recipient_delimiter: str = "+", complete: bool = True) -> None:
        # Every character is a delimiter, as in Postfix's `recipient_delimiter`; empty: none.
        self.recipient_delimiter = recipient_delimiter
        # False for data read back from disk while the database is unreachable: what it holds
        # is still true enough to answer, but what it lacks may exist by now, so a miss is
        # "unknown" (a temporary failure), never "not found".
        self.complete = complete
        self._domain_by_id: dict[int, DomainRow] = {}
        self._domain_by_name: dict[str, DomainRow] = {}
        self._alias_domain_by_id: dict[int, AliasDomainRow] = {}
        self._alias_domain_by_name: dict[str, AliasDomainRow] = {}
        self._mailbox_by_id: dict[int, MailboxRow] = {}
        self._mailbox_by_email: dict[str, MailboxRow] = {}
        self._alias_by_id: dict[int, AliasRow] = {}
        self._aliases_by_source: dict[str, AliasEntry] = {}
        self._app_password_by_id: dict[int, AppPasswordRow] = {}
        # Mailbox id → its app passwords by id (a dict keeps their order and O(1) removals).
        self._app_passwords_by_mailbox: dict[int, dict[int, AppPasswordRow]] = {}
        self._vacation_by_mailbox: dict[int, VacationRow] = {}
        # Stored address of each mailbox with an enabled vacation → the aliases leading to it
        # (catch-alls aside), by id; None: to be rebuilt before it is next read.
        self._vacation_sources: dict[str, dict[int, AliasRow]] | None = None
        # Changes with every batch applied, unique across snapshots: what a cache of answers
        # made from this state is valid for (`lookupd.vacations`).
        self.generation = next(_generations)

    @classmethod
    def build(
        cls, data: MailData, *, recipient_delimiter: str = "+", complete: bool = True
    ) -> Snapshot:
        """A new snapshot holding exactly `data` (a full load).

        The rows are kept, not copied. Once the new snapshot is swapped in (and the old one
        dropped), `gc.collect(); gc.freeze()` takes its rows out of the collector's sight, so that
        no later collection stalls the event loop walking them; they are still freed as usual
        when a later snapshot replaces this one.
        """
        snapshot = cls(recipient_delimiter=recipient_delimiter, complete=complete)
        snapshot._put_domains(data.domains)
        snapshot._put_alias_domains(data.alias_domains)
        snapshot._put_mailboxes(data.mailboxes)
        snapshot._put_aliases(data.aliases)
        snapshot._put_app_passwords(data.app_passwords)
        snapshot._put_vacations(data.vacations)
        return snapshot

    def apply(self, changes: MailChanges) -> None:
        """Apply one batch of changes in place, synchronously.

        Removals go first, then inserts and updates; so an id listed both as removed and as a
        row ends up present, which is the state of a database the rows were read from after the
        removal. The indexes never refer to each other by key, only by id (a mailbox's
        `domain_id`), so the batch may remove a domain before or after its mailboxes and
        aliases: rows of a missing domain are simply not answered.
        """
        for domain_id in changes.removed_domains:
            self._remove_domain(domain_id)
        for alias_domain_id in changes.removed_alias_domains:
            self._remove_alias_domain(alias_domain_id)
        for mailbox_id in changes.removed_mailboxes:
            self._remove_mailbox(mailbox_id)
        for alias_id in changes.removed_aliases:
            self._remove_alias(alias_id)
        for app_password_id in changes.removed_app_passwords:
            self._remove_app_password(app_password_id)
        for mailbox_id in changes.removed_vacations:
            self._remove_vacation(mailbox_id)
        self._put_domains(changes.domains)
        self._put_alias_domains(changes.alias_domains)
        self._put_mailboxes(changes.mailboxes)
        self._put_aliases(changes.aliases)
        self._put_app_passwords(changes.app_passwords)
        self._put_vacations(changes.vacations)
        self.generation = next(_generations)

    # --- reads, used by lookupd.resolve ----------------------------------------------------------
    # Names and addresses are asked in lookup form: lowercase, domains in IDNA ASCII.

    def domain(self, name: str) -> DomainRow | None:
        """The domain row named `name`, active or not."""
        return self._domain_by_name.get(name)

    def domain_by_id(self, domain_id: int) -> DomainRow | None:
        return self._domain_by_id.get(domain_id)

    def is_domain_active(self, domain_id: int) -> bool:
        """Whether the domain exists and is active: the test every mailbox and alias passes."""
        domain = self._domain_by_id.get(domain_id)
        return domain is not None and domain.active

    def alias_domain(self, name: str) -> AliasDomainRow | None:
        """The alias domain row named `name`, active or not."""
        return self._alias_domain_by_name.get(name)

    def has_mailbox(self, email: str) -> bool:
        """Whether `email` is an active mailbox in an active domain."""
        row = self._mailbox_by_email.get(email)
        return row is not None and row.active and self.is_domain_active(row.domain_id)

    def mailbox_exists(self, email: str) -> bool:
        """Whether a mailbox with this address exists, active or not."""
        return email in self._mailbox_by_email

    def mailbox(self, email: str) -> MailboxRow | None:
        """The mailbox row with this address, active or not."""
        return self._mailbox_by_email.get(email)

    def destinations(self, source: str) -> list[str]:
        """The destinations of alias `source` (`@domain`: the catch-all), in load order.

        Only rows in an active domain count; duplicate rows give one destination.
        """
        entry = self._aliases_by_source.get(source)
        if entry is None:
            return []
        if type(entry) is AliasRow:
            return [entry.destination] if self.is_domain_active(entry.domain_id) else []
        assert isinstance(entry, dict)
        found = {
            row.destination: None for row in entry.values() if self.is_domain_active(row.domain_id)
        }
        return list(found)

    def app_passwords(self, mailbox_id: int) -> list[AppPasswordRow]:
        """The app passwords of the mailbox with this id, oldest first (by id)."""
        filed = self._app_passwords_by_mailbox.get(mailbox_id)
        return sorted(filed.values(), key=_by_id) if filed else []

    def vacation(self, mailbox_id: int) -> VacationRow | None:
        """The vacation settings of the mailbox with this id, enabled or not."""
        return self._vacation_by_mailbox.get(mailbox_id)

    def aliases_leading_to(self, email: str) -> list[str]:
        """The sources of the aliases whose destination is `email` (catch-alls aside), in the
        order of their ids; only for a mailbox with an enabled vacation (else empty)."""
        if self._vacation_sources is None:
            self._vacation_sources = self._find_vacation_sources()
        filed = self._vacation_sources.get(email)
        return [row.source for row in sorted(filed.values(), key=_by_id)] if filed else []

    def alias_domains_of(self, domain_id: int) -> list[str]:
        """The names of the active alias domains of the domain with this id, sorted."""
        return sorted(
            row.name for row in self._alias_domain_by_id.values()
            if row.target_domain_id == domain_id and row.active
        )

    def mailbox_emails(self) -> list[str]:
        """Every mailbox's address, copied: safe to walk across awaits while changes apply."""
        return list(self._mailbox_by_email)

    def rows(self) -> MailData:
        """Every row held, in new lists (the rows themselves are immutable and shared): safe to
        hand to another thread while changes go on applying here (`lookupd.snapshot_file`)."""
        return MailData(
            domains=list(self._domain_by_id.values()),
            alias_domains=list(self._alias_domain_by_id.values()),
            mailboxes=list(self._mailbox_by_id.values()),
            aliases=list(self._alias_by_id.values()),
            app_passwords=list(self._app_password_by_id.values()),
            vacations=list(self._vacation_by_mailbox.values()),
        )

    def row_counts(self) -> dict[str, int]:
        """Rows held, by kind (for the snapshot rows metric)."""
        return {
            "domains": len(self._domain_by_id),
            "alias_domains": len(self._alias_domain_by_id),
            "mailboxes": len(self._mailbox_by_id),
            "aliases": len(self._alias_by_id),
            "app_passwords": len(self._app_password_by_id),
            "vacations": len(self._vacation_by_mailbox),
        }

    # --- writes ----------------------------------------------------------------------------------
    #
    # A key is dropped only when it still points at the row being replaced: within one batch,
    # another row may already have taken that key (two mailboxes swapping emails, say), and
    # its entry must survive whatever order the batch lists them in.

    def _put_domains(self, rows: Iterable[DomainRow]) -> None:
        by_id = self._domain_by_id
        by_name = self._domain_by_name
        for row in rows:
            old = by_id.get(row.id)
            if old is not None:
                _drop_key(by_name, _stored_domain(old.name), old)
            by_id[row.id] = row
            by_name[_stored_domain(row.name)] = row

    def _remove_domain(self, domain_id: int) -> None:
        old = self._domain_by_id.pop(domain_id, None)
        if old is not None:
            _drop_key(self._domain_by_name, _stored_domain(old.name), old)

    def _put_alias_domains(self, rows: Iterable[AliasDomainRow]) -> None:
        by_id = self._alias_domain_by_id
        by_name = self._alias_domain_by_name
        for row in rows:
            old = by_id.get(row.id)
            if old is not None:
                _drop_key(by_name, _stored_domain(old.name), old)
            by_id[row.id] = row
            by_name[_stored_domain(row.name)] = row

    def _remove_alias_domain(self, alias_domain_id: int) -> None:
        old = self._alias_domain_by_id.pop(alias_domain_id, None)
        if old is not None:
            _drop_key(self._alias_domain_by_name, _stored_domain(old.name), old)

    def _put_mailboxes(self, rows: Iterable[MailboxRow]) -> None:
        by_id = self._mailbox_by_id
        by_email = self._mailbox_by_email
        for row in rows:
            old = by_id.get(row.id)
            if old is not None:
                _drop_key(by_email, _stored_address(old.email), old)
            by_id[row.id] = row
            by_email[_stored_address(row.email)] = row
            if (old is None or old.email != row.email) and row.id in self._vacation_by_mailbox:
                self._vacation_sources = None  # an address away is new or renamed

    def _remove_mailbox(self, mailbox_id: int) -> None:
        old = self._mailbox_by_id.pop(mailbox_id, None)
        if old is not None:
            _drop_key(self._mailbox_by_email, _stored_address(old.email), old)
            if mailbox_id in self._vacation_by_mailbox:
                self._vacation_sources = None

    def _put_aliases(self, rows: Iterable[AliasRow]) -> None:
        by_id = self._alias_by_id
        by_source = self._aliases_by_source
        for row in rows:
            old = by_id.get(row.id)
            if old is not None:
                self._unfile_alias(old)
            by_id[row.id] = row
            source = _stored_address(row.source)
            filed = by_source.get(source)
            if filed is None:
                by_source[source] = row
            elif type(filed) is AliasRow:
                by_source[source] = {filed.id: filed, row.id: row}
            else:
                assert isinstance(filed, dict)
                filed[row.id] = row
            if self._vacation_sources and not row.source.startswith("@"):
                leading = self._vacation_sources.get(_stored_address(row.destination))
                if leading is not None:
                    leading[row.id] = row

    def _remove_alias(self, alias_id: int) -> None:
        old = self._alias_by_id.pop(alias_id, None)
        if old is not None:
            self._unfile_alias(old)

    def _unfile_alias(self, old: AliasRow) -> None:
        """Take `old` out of the source index (its id index entry is the caller's business)."""
        if self._vacation_sources:
            leading = self._vacation_sources.get(_stored_address(old.destination))
            if leading is not None and leading.get(old.id) is old:
                del leading[old.id]
        source = _stored_address(old.source)
        filed = self._aliases_by_source.get(source)
        if filed is None:
            return
        if type(filed) is AliasRow:
            if filed is old:
                del self._aliases_by_source[source]
            return
        assert isinstance(filed, dict)
        if filed.get(old.id) is old:
            del filed[old.id]
        if len(filed) == 1:
            (self._aliases_by_source[source],) = filed.values()  # back to the compact form
        elif not filed:
            del self._aliases_by_source[source]

    def _put_app_passwords(self, rows: Iterable[AppPasswordRow]) -> None:
        by_id = self._app_password_by_id
        by_mailbox = self._app_passwords_by_mailbox
        for row in rows:
            old = by_id.get(row.id)
            if old is not None:
                self._unfile_app_password(old)
            by_id[row.id] = row
            by_mailbox.setdefault(row.mailbox_id, {})[row.id] = row

    def _remove_app_password(self, app_password_id: int) -> None:
        old = self._app_password_by_id.pop(app_password_id, None)
        if old is not None:
            self._unfile_app_password(old)

    def _unfile_app_password(self, old: AppPasswordRow) -> None:
        filed = self._app_passwords_by_mailbox.get(old.mailbox_id)
        if filed is None:
            return
        if filed.get(old.id) is old:
            del filed[old.id]
        if not filed:
            del self._app_passwords_by_mailbox[old.mailbox_id]

    def _put_vacations(self, rows: Iterable[VacationRow]) -> None:
        by_mailbox = self._vacation_by_mailbox
        for row in rows:
            old = by_mailbox.get(row.mailbox_id)
            by_mailbox[row.mailbox_id] = row
            if (old is not None and old.enabled) != row.enabled:
                self._vacation_sources = None  # a mailbox away more, or one less

    def _remove_vacation(self, mailbox_id: int) -> None:
        old = self._vacation_by_mailbox.pop(mailbox_id, None)
        if old is not None and old.enabled:
            self._vacation_sources = None

    def _find_vacation_sources(self) -> dict[str, dict[int, AliasRow]]:
        """The aliases leading to each mailbox with an enabled vacation: one walk over all the
        aliases (about a tenth of a second at a million), and only when those mailboxes
        changed; none at all while no vacation is enabled."""
        found: dict[str, dict[int, AliasRow]] = {}
        for mailbox_id, vacation in self._vacation_by_mailbox.items():
            mailbox = self._mailbox_by_id.get(mailbox_id)
            if vacation.enabled and mailbox is not None:
                found[_stored_address(mailbox.email)] = {}
        if found:
            for row in self._alias_by_id.values():
                leading = found.get(_stored_address(row.destination))
                if leading is not None and not row.source.startswith("@"):
                    leading[row.id] = row
        return found


def _by_id(row: AppPasswordRow | AliasRow) -> int:
    return row.id


def _drop_key(index: dict[str, Any], key: str, old: object) -> None:
    if index.get(key) is old:
        del index[key]
