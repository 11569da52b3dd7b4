"""The sliding windows of the sending limits: how counts kept in time buckets add up to "the
last hour" and "the last day". The lookup daemon decides with this math and the admin API shows
its figures with it, so what an admin reads is what the daemon compares with the limits.

"Per hour" and "per day" are the last 3600 s and 86400 s before a moment. Counts are kept in
buckets, 10 minutes long for the hour window and one hour long for the day window; the bucket
that straddles the window's old edge counts in proportion to the part of it inside the window
(as if its sends were spread evenly over it). The error is thus at most one bucket's worth of
sends at the old edge, and there is no doubling at the turn of the hour that fixed windows allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

HOUR = 3600
DAY = 86400
# The bucket length each window is counted in.
BUCKET_SECONDS = {HOUR: 600, DAY: 3600}
WINDOW_OF_BUCKET = {size: window for window, size in BUCKET_SECONDS.items()}


class Bucket(Protocol):
    """What a stored count row offers (`dinomail.store.policy.SendCount`)."""

    @property
    def bucket_seconds(self) -> int: ...
    @property
    def bucket_start(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def recipients(self) -> int: ...


def bucket_start(second: int, size: int) -> int:
    """The start of the bucket of `size` seconds that holds `second`."""
    return second - second % size


def bucket_weight(size: int, start: int, window: int, now: float) -> float:
    """The share of a bucket that counts in the `window` seconds before `now`: 1 inside, 0
    outside, in proportion at the old edge; 0 for buckets of another window's size."""
    if size != BUCKET_SECONDS[window]:
        return 0.0
    edge = now - window
    end = start + size
    if end <= edge:
        return 0.0
    return 1.0 if start >= edge else (end - edge) / size


def window_totals(rows: Iterable[Bucket], window: int, now: float) -> tuple[float, float]:
    """(messages, recipients) of `rows` in the `window` seconds before `now`."""
    messages = recipients = 0.0
    for row in rows:
        weight = bucket_weight(row.bucket_seconds, row.bucket_start, window, now)
        if weight:
            messages += weight * row.messages
            recipients += weight * row.recipients
    return messages, recipients


def oldest_bucket(now: float) -> int:
    """The start of the oldest bucket any window can still reach at `now`."""
    return int(now) - DAY - BUCKET_SECONDS[DAY]
