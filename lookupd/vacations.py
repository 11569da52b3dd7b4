"""The vacation Sieve scripts Dovecot reads over the dict protocol (dict `sieve`).

Pigeonhole's dict script storage (`sieve_before = dict:proxy:<socket>:sieve;name=vacation`)
asks, for the user it delivers to, `priv/sieve/name/vacation` → the script's id, then
`priv/sieve/data/<id>` → its text; a new id makes it compile the script again. The id is a hash
of the text, so a changed reply is never run from an old compiled copy.

The scripts are made from the snapshot, which holds the vacation settings (followed through the
change log like every mail row, migration 0018_apppassword_changelog) and the aliases and alias
domains that name the mailbox's other addresses: a change reaches deliveries as soon as the
change log brings it, and while the database is unreachable the snapshot's scripts keep being
served; before the first load, Dovecot gets a temporary failure. The text does not depend on
the day (the first and last days are tested by the script itself, with `currentdate`), so a
script made once is good until the snapshot changes: they are cached for one snapshot state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dinomail.records import VacationRow
from dinomail.sieve import script_id, vacation_script
from dinomail.store.vacation import MAX_OTHER_ADDRESSES
from lookupd.snapshot import Snapshot

SCRIPT_NAME = "vacation"


@dataclass(frozen=True, slots=True)
class Script:
    id: str
    text: str


class VacationScripts:
    def __init__(self, snapshot_source: Callable[[], Snapshot | None]) -> None:
        self.snapshot_source = snapshot_source
        # The scripts made for one snapshot state (`Snapshot.generation`), by address.
        self._generation = 0
        self._scripts: dict[str, Script] = {}

    @property
    def loaded(self) -> bool:
        """Whether there is a snapshot to answer from ("not known yet" is not "no vacation")."""
        return self.snapshot_source() is not None

    def script(self, email: str) -> Script | None:
        """The script of the mailbox `email` (stored form), or None; only once `loaded`."""
        snapshot = self.snapshot_source()
        assert snapshot is not None
        if snapshot.generation != self._generation:
            self._generation = snapshot.generation
            self._scripts = {}
        found = self._scripts.get(email)
        if found is None:
            found = _make(snapshot, email)
            # Only scripts are kept (at most one per mailbox away): telling that a mailbox has
            # none takes two dict lookups, and caching that for every mailbox delivered to
            # would grow with them.
            if found is not None:
                self._scripts[email] = found
        return found


def _make(snapshot: Snapshot, email: str) -> Script | None:
    mailbox = snapshot.mailbox(email)
    vacation = None if mailbox is None else snapshot.vacation(mailbox.id)
    if mailbox is None or vacation is None or not vacation.enabled:
        return None
    # The mailbox's other addresses: Pigeonhole only answers mail naming one of the user's.
    local = email.rpartition("@")[0]
    addresses = [
        *snapshot.aliases_leading_to(email),
        *(f"{local}@{name}" for name in snapshot.alias_domains_of(mailbox.domain_id)),
    ]
    text = vacation_script(_settings(vacation), [email, *addresses[:MAX_OTHER_ADDRESSES]])
    return Script(script_id(text), text)


def _settings(row: VacationRow) -> dict[str, object]:
    return {
        "subject": row.subject, "body": row.body, "starts": row.starts, "ends": row.ends,
        "interval_days": row.interval_days,
    }
