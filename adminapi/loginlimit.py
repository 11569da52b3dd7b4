"""Limits on failed admin logins, per account and per client address, kept in memory.

One limiter per application (`app.state.login_limiter`) for every way an admin password is
checked: the login page and HTTP Basic on `/api/apikey/` share its counts, so guessing through
one is not a way around the lockout of the other. A new way to log in must use it too:
`retry_after` before checking the password (refusing with `Retry-After` when it is not 0),
`failed` or `succeeded` after.

In memory is enough because the pages and the API are served by one process (`dinomail serve` or
`dinomail adminapi`); the counters start again empty after a restart, which an attacker cannot
cause from outside. Were several processes to serve the pages behind one address, each would
count on its own, and the limits below would be multiplied by their number.

Each limit counts failures in a sliding window. Past the limit, logins for that account or from
that address are refused without looking at the password until the oldest failure leaves the
window, so guessing costs an attacker the window's time, not our CPU (Argon2 is slow on purpose).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

# An admin mistyping their password 5 times in 15 minutes is rare; an attacker gets 20 guesses
# an hour per account.
MAX_FAILURES_PER_ACCOUNT = 5
# Several admins behind one office address may each mistype; a single address still gets at most
# 80 guesses an hour, whatever account names it tries.
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60
# Bounds the memory an attacker can make us use by inventing account names: the least recently
# failed entries are forgotten first.
MAX_TRACKED_KEYS = 10_000


class FailureCounter:
    """Failure times per key within a sliding window."""

    def __init__(
        self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        cutoff = self._clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        times = self._recent(key)
        if times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[-self.limit] + self.window - self._clock())

    def fail(self, key: str) -> None:
        times = self._recent(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(self._clock())
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)


class LoginRateLimiter:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = FailureCounter(MAX_FAILURES_PER_ACCOUNT, WINDOW_SECONDS, clock=clock)
        self.addresses = FailureCounter(MAX_FAILURES_PER_ADDRESS, WINDOW_SECONDS, clock=clock)

    def retry_after(self, username: str, address: str) -> float:
        """Seconds before this login may be tried; 0 when it may be tried now."""
        return max(
            self.accounts.retry_after(username.lower()), self.addresses.retry_after(address)
        )

    def failed(self, username: str, address: str) -> None:
        self.accounts.fail(username.lower())
        self.addresses.fail(address)

    def succeeded(self, username: str) -> None:
        # The address keeps its count: one right password must not wipe a guessing record.
        self.accounts.reset(username.lower())


def client_address(request: Request) -> str:
    """Who is guessing: the peer address of the connection (a proxy in front should be the only
    peer, and then every client shares its limit; see README "Security")."""
    return request.client.host if request.client else "unknown"
