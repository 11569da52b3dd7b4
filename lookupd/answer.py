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


class ByteReplies:
    """How a protocol on bytes says an outcome whose found value is its reply already: one
    not-found reply, and each failure's reply made once from its reason."""

    __slots__ = ("_failures", "_make", "_not_found")

    def __init__(self, not_found: bytes, failure: Callable[[bytes], bytes]) -> None:
        self._not_found = not_found
        self._make = failure
        self._failures: dict[Failure, bytes] = {}

    def __call__(self, outcome: bytes | Failure | None) -> bytes:
        if type(outcome) is bytes:
            return outcome
        if outcome is None:
            return self._not_found
        assert isinstance(outcome, Failure)
        return self.failure(outcome)

    def failure(self, failure: Failure) -> bytes:
        reply = self._failures.get(failure)
        if reply is None:  # failures are module constants: this table stays small
            reply = self._failures[failure] = self._make(failure.reason.encode("utf-8"))
        return reply


class Answers:
    """Answers the lookups of one protocol server from the current snapshot: `answer` applies
    the module's rules, times and counts."""

    __slots__ = ("_protocol", "_recorder", "_snapshot_source")

    def __init__(
        self,
        protocol: str,
        snapshot_source: SnapshotSource,
        recorder: LookupRecorder | None = None,
    ) -> None:
        self._protocol = protocol
        self._snapshot_source = snapshot_source
        self._recorder = recorder

    def answer(
        self,
        map_name: str,
        lookup: Callable[[Snapshot, K], V | Failure | None],
        key: K | None,
    ) -> V | Failure | None:
        """`lookup(snapshot, key)` on the current snapshot, under the module's rules."""
        started = perf_counter()
        outcome: V | Failure | None
        try:
            snapshot = self._snapshot_source()
            if snapshot is None:
                outcome = NOT_LOADED
            elif key is None:
                outcome = None
            else:
                outcome = lookup(snapshot, key)
                if outcome is None and not snapshot.complete:
                    outcome = INCOMPLETE
        except Exception:
            log.exception("%s lookup %s failed", self._protocol, map_name)
            outcome = INTERNAL
        recorder = self._recorder
        if recorder is not None:
            if outcome is None:
                result = "notfound"
            elif type(outcome) is Failure:
                result = "temp"
                if outcome.error is not None:
                    recorder.lookup_error(outcome.error)
            else:
                result = "ok"
            recorder.lookup(map_name, result, perf_counter() - started)
        return outcome

    def record(self, map_name: str, result: str, started: float) -> None:
        """Count an answer given without a lookup (an unknown map, a refused request)."""
        if self._recorder is not None:
            self._recorder.lookup(map_name, result, perf_counter() - started)
