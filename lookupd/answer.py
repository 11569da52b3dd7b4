"""One lookup answered from the snapshot, the same way for every protocol (socketmap, Dovecot
dict and HTTP, policy); each protocol only formats the outcome.

An outcome is the value found, `None` (not found) or a `Failure` (a temporary failure, whose
`reason` the protocol may show its client). The rules, written once here:
- no snapshot loaded yet → `NOT_LOADED`: the client retries, mail waits;
- a key that cannot be text (`None`: not UTF-8, or a NUL) → not found: no stored address can
  match it;
- an exception in the lookup → logged, counted (`lookup_errors`, reason `exception`),
  `INTERNAL`;
- not found in a snapshot read back from disk (`Snapshot.complete` false) → `INCOMPLETE`:
  what the file lacks may exist by now, and "not found" would bounce its mail;
- every answer is timed and counted by map and result (`ok`, `notfound`, `temp`); a failure
  that reveals a bug (an `error` label: an empty value, a reply too large) is counted as such.

A lookup may itself return a `Failure` (a protocol that renders its reply inside the lookup,
and finds it cannot be sent), so that it is counted as what it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import TypeVar

from lookupd.metrics import LookupRecorder
from lookupd.snapshot import Snapshot

log = logging.getLogger("dinomail.lookupd.answer")

A = TypeVar("A")
B = TypeVar("B")
K = TypeVar("K")
V = TypeVar("V")


class Failure:
    """A temporary failure: `reason` for the client, `error` the metric's label when the
    failure is a bug (None when it is the situation: nothing loaded, database away)."""

    __slots__ = ("error", "reason")

    def __init__(self, reason: str, error: str | None = None) -> None:
        self.reason = reason
        self.error = error

    def __repr__(self) -> str:
        return f"Failure({self.reason!r})"


NOT_LOADED = Failure("mail data not loaded yet")
INCOMPLETE = Failure("not in the saved mail data, database unreachable")
INTERNAL = Failure("internal error", "exception")

SnapshotSource = Callable[[], Snapshot | None]


def from_snapshot(
    snapshot: Snapshot | None, lookup: Callable[[Snapshot, K], V | Failure | None], key: K | None
) -> V | Failure | None:
    """The outcome of `lookup(snapshot, key)` under the rules above, untimed; exceptions pass."""
    if snapshot is None:
        return NOT_LOADED
    if key is None:
        return None
    outcome = lookup(snapshot, key)
    if outcome is None and not snapshot.complete:
        return INCOMPLETE
    return outcome


class Answers:
    """Times and counts the answers of one protocol server, and turns exceptions into
    `INTERNAL`."""

    __slots__ = ("_protocol", "_recorder", "_snapshot_source")

    def __init__(
        self,
        protocol: str,
        snapshot_source: SnapshotSource | None = None,
        recorder: LookupRecorder | None = None,
    ) -> None:
        self._protocol = protocol
        self._snapshot_source = snapshot_source or _no_snapshot
        self._recorder = recorder

    @property
    def snapshot_source(self) -> SnapshotSource:
        return self._snapshot_source

    def answer(
        self,
        map_name: str,
        lookup: Callable[[Snapshot, K], V | Failure | None],
        key: K | None,
    ) -> V | Failure | None:
        """`lookup(snapshot, key)` on the current snapshot, under the module's rules."""
        return self._timed(map_name, self._from_current, lookup, key)

    def call(
        self, map_name: str, compute: Callable[[K], V | Failure | None], argument: K
    ) -> V | Failure | None:
        """`compute(argument)`, timed and counted, an exception turned into `INTERNAL`: for an
        answer that needs more than the snapshot (the policy service's limits and counts)."""
        return self._timed(map_name, _apply, compute, argument)

    def _from_current(
        self, lookup: Callable[[Snapshot, K], V | Failure | None], key: K | None
    ) -> V | Failure | None:
        return from_snapshot(self._snapshot_source(), lookup, key)

    def _timed(
        self, map_name: str, compute: Callable[[A, B], V | Failure | None], first: A, second: B
    ) -> V | Failure | None:
        started = perf_counter()
        try:
            outcome = compute(first, second)
        except Exception:
            log.exception("%s lookup %s failed", self._protocol, map_name)
            outcome = INTERNAL
        if self._recorder is not None:
            self._count(map_name, outcome, started)
        return outcome

    def record(self, map_name: str, result: str, started: float) -> None:
        """Count an answer given without a lookup (an unknown map, a refused request)."""
        if self._recorder is not None:
            self._recorder.lookup(map_name, result, perf_counter() - started)

    def _count(self, map_name: str, outcome: object, started: float) -> None:
        recorder = self._recorder
        assert recorder is not None
        if outcome is None:
            result = "notfound"
        elif type(outcome) is Failure:
            result = "temp"
            if outcome.error is not None:
                recorder.lookup_error(outcome.error)
        else:
            result = "ok"
        recorder.lookup(map_name, result, perf_counter() - started)


def _apply(compute: Callable[[K], V], argument: K) -> V:
    return compute(argument)


def _no_snapshot() -> Snapshot | None:
    return None
