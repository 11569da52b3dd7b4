"""The vacation Sieve scripts Dovecot reads over the dict protocol (dict `sieve`).

Pigeonhole's dict script storage (`sieve_before = dict:proxy:<socket>:sieve;name=vacation`)
asks, for the user it delivers to, `priv/sieve/name/vacation` → the script's id, then
`priv/sieve/data/<id>` → its text; a new id makes it compile the script again. The id is a hash
of the text, so a changed reply is never run from an old compiled copy.

The scripts of every enabled vacation are made here from the database every
VACATION_REFRESH_INTERVAL seconds (enabled vacations are few, and a delivery must not wait on
the database): a change reaches Dovecot within that time. While the database is unreachable the
last scripts keep being served; before the first load, Dovecot gets a temporary failure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from dinomail.sieve import script_id, vacation_script
from dinomail.store import Store
from dinomail.store import vacation as store_vacation
from dinomail.waiting import wait_for_event
from lookupd.batchwrite import one_line

log = logging.getLogger("dinomail.lookupd.vacations")

SCRIPT_NAME = "vacation"
DEFAULT_REFRESH_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Script:
    id: str
    text: str


class VacationScripts:
    def __init__(self, store: Store, *, refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        self.store = store
        self.refresh_interval = refresh_interval
        # None until the first load: "not known yet" must not read as "no vacation".
        self._scripts: dict[str, Script] | None = None

    @property
    def loaded(self) -> bool:
        return self._scripts is not None

    def script(self, email: str) -> Script | None:
        """The script of the mailbox `email` (stored form), or None; only once `loaded`."""
        assert self._scripts is not None
        return self._scripts.get(email)

    async def load(self) -> None:
        async with self.store.read() as conn:
            rows = await store_vacation.enabled_for_delivery(conn)
        scripts = {}
        for email, settings, addresses in rows:
            text = vacation_script(settings, [email, *addresses])
            scripts[email] = Script(script_id(text), text)
        self._scripts = scripts

    async def run(self, stop: asyncio.Event) -> None:
        """Load now, then every interval until `stop` is set."""
        failed = False
        while not stop.is_set():
            try:
                await self.load()
                if failed:
                    log.info("vacation scripts loaded again")
                failed = False
            except Exception as error:  # the daemon must outlive any failure here
                if not failed:
                    log.warning("could not load the vacation scripts, keeping the last ones: %s",
                                one_line(error))
                failed = True
            await wait_for_event(stop, self.refresh_interval)
