"""Prometheus metrics of the lookup daemon.

Each daemon owns one `CollectorRegistry` (never the process-wide default), so tests and a
`dinomail serve` that runs several services in one process can hold several daemons side by side.
The HTTP `/metrics` endpoint serves `LookupdMetrics.exposition()`.

Lookups are counted on the hot path, so protocols take a `LookupRecorder` once per server: its
label children are bound up front, and recording a lookup is a dict hit and two increments.

With several workers (`LOOKUPD_WORKERS`, `lookupd.supervisor`) each worker process is started
with PROMETHEUS_MULTIPROC_DIR set (a private directory of the supervisor): prometheus-client then
keeps every value in a file there, and whichever worker answers `/metrics` adds up all of them
(`exposition`). Counters and histograms are summed over every worker that ever ran (a restart
loses no counts); connections are summed over live workers; rows are given per worker (`pid`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from dinomail.waiting import wait_for_event

# Answers as protocols report them; every protocol maps its own replies onto these.
LOOKUP_RESULTS = ("ok", "notfound", "temp", "perm")

# Map label for names a client made up: label values must not be client-controlled.
UNKNOWN_MAP = "unknown"

# A lookup is a few dict hits: microseconds; the upper buckets catch a stalled event loop.
LOOKUP_BUCKETS = (
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
)
# A change batch takes milliseconds; a full load of a million rows, tens of seconds.
REFRESH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

REFRESH_KINDS = ("full", "incremental")
# How the refresher learns of changes: told by the primary (LISTEN/NOTIFY), or by reading the
# change log every few hundred milliseconds (SQLite, a PostgreSQL standby).
FOLLOW_MODES = ("listen", "poll")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# With several workers, how stale a worker's lookup counts may be on `/metrics` (seconds).
FLUSH_INTERVAL = 1.0
SNAPSHOT_AGE = "dinomail_lookupd_snapshot_age_seconds"
SNAPSHOT_AGE_HELP = (
    "Seconds since the snapshot was last known to match the database (since start while none "
    "has loaded); with several workers, the oldest worker's."
)
# With workers: when each worker's snapshot last matched the database, on the system-wide
# monotonic clock (CLOCK_MONOTONIC, the same in every process), so that any worker can tell
# the oldest one's age. Internal: `/metrics` shows the age computed from it, not it.
_SNAPSHOT_CURRENT_SINCE = "dinomail_lookupd_worker_snapshot_current_since"


def multiprocess_dir() -> str | None:
    """The directory the workers' metrics are kept in, or None when this daemon runs alone."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


class LookupRecorder:
    """The metrics of one protocol, label children bound once.

    A lookup costs a few microseconds; prometheus-client's own `inc` and `observe` (a lock, a
    loop over the buckets) cost about as much again, once per lookup. So a lookup is counted
    here in plain integers (a dict hit, a bisect) and `flush` hands the counts over to the
    registry's metrics before anyone reads them (`LookupdMetrics` flushes on every collection
    of its registry, and every FLUSH_INTERVAL with several workers).
    """

    __slots__ = (
        "_bucket_counts", "_client_errors", "_counters", "_counts", "_errors", "_latency",
        "_metrics", "_protocol", "_pushed", "_pushed_buckets", "_pushed_sum", "_sum",
        "connections",
    )

    def __init__(self, metrics: LookupdMetrics, protocol: str, maps: Iterable[str]) -> None:
        self._metrics = metrics
        self._counters = {
            (name, result): metrics.lookups.labels(protocol, name, result)
            for name in (*maps, UNKNOWN_MAP)
            for result in LOOKUP_RESULTS
        }
        # Only ever increased, on the event loop's thread; `flush` adds what is new since
        # the last flush, so a flush from another thread (a test reading the registry) loses
        # nothing.
        self._counts = dict.fromkeys(self._counters, 0)
        self._pushed = dict.fromkeys(self._counters, 0)
        self._bucket_counts = [0] * (len(LOOKUP_BUCKETS) + 1)  # the last one: +Inf
        self._pushed_buckets = [0] * (len(LOOKUP_BUCKETS) + 1)
        self._sum = 0.0
        self._pushed_sum = 0.0
        self._latency = metrics.lookup_seconds.labels(protocol)
        self.connections = metrics.open_connections.labels(protocol)
        self._errors: dict[str, Counter] = {}
        self._client_errors: dict[str, Counter] = {}
        self._protocol = protocol
        metrics.add_recorder(self)

    def lookup(self, map_name: str, result: str, seconds: float) -> None:
        counts = self._counts
        key = (map_name, result)
        if key in counts:
            counts[key] += 1
        else:
            counts[(UNKNOWN_MAP, result)] += 1
        # Prometheus buckets count the values at most their bound: the first bound >= seconds.
        self._bucket_counts[bisect_left(LOOKUP_BUCKETS, seconds)] += 1
        self._sum += seconds

    def flush(self) -> None:
        """Add the lookups counted since the last flush to the registry's metrics."""
        for key, count in list(self._counts.items()):
            new = count - self._pushed[key]
            if new:
                self._counters[key].inc(new)
                self._pushed[key] = count
        buckets = self._latency._buckets  # prometheus-client's own children, one per bound
        for index, count in enumerate(list(self._bucket_counts)):
            new = count - self._pushed_buckets[index]
            if new:
                buckets[index].inc(new)
                self._pushed_buckets[index] = count
        total = self._sum
        if total != self._pushed_sum:
            self._latency._sum.inc(total - self._pushed_sum)
            self._pushed_sum = total

    def lookup_error(self, reason: str) -> None:
        """An answer we could not give (exception, empty value, reply too large): a bug to see."""
        counter = self._errors.get(reason)
        if counter is None:
            counter = self._errors[reason] = self._metrics.lookup_errors.labels(
                self._protocol, reason
            )
        counter.inc()

    def client_error(self, reason: str) -> None:
        """A connection closed because of its client (bad framing, oversize, idle)."""
        counter = self._client_errors.get(reason)
        if counter is None:
            counter = self._client_errors[reason] = self._metrics.client_errors.labels(
                self._protocol, reason
            )
        counter.inc()


class LookupdMetrics:
    """Every metric of one lookup daemon, in its own registry."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._recorders: list[LookupRecorder] = []
        self._flush_lock = threading.Lock()
        # First in the registry: every collection (`/metrics`, `get_sample_value`) starts
        # with the recorders' counts flushed.
        self.registry.register(_Flush(self.flush))
        self._clock = clock
        self._started = clock()
        self._last_current: float | None = None
        r = self.registry

        self.lookups = Counter(
            "dinomail_lookupd_lookups", "Lookups answered, by protocol, map and result.",
            ["protocol", "map", "result"], registry=r,
        )
        self.lookup_seconds = Histogram(
            "dinomail_lookupd_lookup_seconds", "Time to answer one lookup, by protocol.",
            ["protocol"], buckets=LOOKUP_BUCKETS, registry=r,
        )
        self.lookup_errors = Counter(
            "dinomail_lookupd_lookup_errors",
            "Lookups answered with a temporary failure because of an internal error.",
            ["protocol", "reason"], registry=r,
        )
        self.client_errors = Counter(
            "dinomail_lookupd_client_errors",
            "Connections closed because of the client: malformed or oversized input, idleness.",
            ["protocol", "reason"], registry=r,
        )
        self.open_connections = Gauge(
            "dinomail_lookupd_open_connections", "Client connections open, by protocol.",
            ["protocol"], registry=r, multiprocess_mode="livesum",
        )
        self.snapshot_rows = Gauge(
            "dinomail_lookupd_snapshot_rows",
            "Rows held in the snapshot, by kind (with several workers, by worker pid).",
            ["kind"], registry=r, multiprocess_mode="liveall",
        )
        self._multiprocess_dir = multiprocess_dir()
        self._current_since: Gauge | None = None
        if self._multiprocess_dir is None:
            self.snapshot_age = Gauge(SNAPSHOT_AGE, SNAPSHOT_AGE_HELP, registry=r)
            self.snapshot_age.set_function(self.current_snapshot_age)
        else:
            self._current_since = Gauge(
                _SNAPSHOT_CURRENT_SINCE, "internal", registry=r, multiprocess_mode="livemin",
            )
            self._current_since.set(self._started)
            Gauge(
                "dinomail_lookupd_worker_start_time_seconds",
                "When each worker process started (Unix time), by pid.",
                registry=r, multiprocess_mode="liveall",
            ).set(time.time())
        self.snapshot_from_disk = Gauge(
            "dinomail_lookupd_snapshot_from_disk",
            "1 while the snapshot served was read from the file on disk at start (the database "
            "not reached since); its age is dinomail_lookupd_snapshot_age_seconds.",
            registry=r, multiprocess_mode="livemax",
        )
        self.refreshes = Counter(
            "dinomail_lookupd_refreshes", "Snapshot refreshes, by kind (full, incremental) "
            "and result (ok, error).",
            ["kind", "result"], registry=r,
        )
        self.refresh_seconds = Histogram(
            "dinomail_lookupd_refresh_seconds", "Duration of snapshot refreshes, by kind.",
            ["kind"], buckets=REFRESH_BUCKETS, registry=r,
        )
        self.database_errors = Counter(
            "dinomail_lookupd_database_errors", "Errors talking to the database.", registry=r,
        )
        self.follow_mode = Gauge(
            "dinomail_lookupd_follow_mode",
            "1 for how the change log is followed now: listen (NOTIFY from a PostgreSQL "
            "primary) or poll (SQLite, a PostgreSQL standby); 0 for the other.",
            ["mode"], registry=r,
        )
        for mode in FOLLOW_MODES:
            self.follow_mode.labels(mode)
        # Show every series from the start, so a rate() over a fresh daemon is 0, not absent.
        for kind in REFRESH_KINDS:
            for result in ("ok", "error"):
                self.refreshes.labels(kind, result)
            self.refresh_seconds.labels(kind)

    def recorder(self, protocol: str, maps: Iterable[str]) -> LookupRecorder:
        """Pre-bound lookup metrics for one protocol and its map names."""
        return LookupRecorder(self, protocol, maps)

    def add_recorder(self, recorder: LookupRecorder) -> None:
        self._recorders.append(recorder)

    def flush(self) -> None:
        """Hand every recorder's counts over to the registry's metrics (with several workers,
        also the gauges computed when read, for the other workers to see)."""
        with self._flush_lock:
            for recorder in self._recorders:
                recorder.flush()
            if self._multiprocess_dir is not None:
                self._store_function_gauges()

    def _store_function_gauges(self) -> None:
        """Write the current value of every gauge computed when read (`set_function`: auth
        policy, counted senders) to this worker's file. In multiprocess mode prometheus-client
        reads gauges from the files alone, where such a gauge would stay 0."""
        # prometheus-client offers no public way to reach a metric's children.
        for collector in list(self.registry._collector_to_names):
            if not isinstance(collector, Gauge):
                continue
            children = (list(collector._metrics.values()) if collector._labelnames
                        else [collector])
            for child in children:
                assert isinstance(child, Gauge)
                if "_child_samples" in vars(child):  # set_function put its own there
                    for sample in child._child_samples():
                        child._value.set(sample[2])

    async def keep_flushed(self, stop: asyncio.Event) -> None:
        """With several workers, flush every FLUSH_INTERVAL, so that whichever worker answers
        `/metrics` finds this one's counts in the shared files (alone: returns at once, every
        collection flushes)."""
        if self._multiprocess_dir is None:
            return
        while not await wait_for_event(stop, FLUSH_INTERVAL):
            self.flush()
        self.flush()

    def record_refresh(self, kind: str, *, ok: bool, seconds: float) -> None:
        """Count one refresh (`full` or `incremental`); a successful one resets the age."""
        self.refreshes.labels(kind, "ok" if ok else "error").inc()
        self.refresh_seconds.labels(kind).observe(seconds)
        if ok:
            self.mark_snapshot_current()

    def mark_snapshot_current(self, *, age: float = 0.0) -> None:
        """The snapshot matches the database now (e.g. a poll of the change log found nothing),
        or matched it `age` seconds ago (a snapshot read from disk)."""
        self._last_current = self._clock() - age
        if self._current_since is not None:
            self._current_since.set(self._last_current)

    def set_snapshot_from_disk(self, from_disk: bool) -> None:
        """Whether the snapshot served is the one saved on disk (the database not reached)."""
        self.snapshot_from_disk.set(1 if from_disk else 0)

    def set_snapshot_rows(self, counts: Mapping[str, int]) -> None:
        """Rows by kind, as `Snapshot.row_counts()` gives them."""
        for kind, count in counts.items():
            self.snapshot_rows.labels(kind).set(count)

    def set_follow_mode(self, mode: str) -> None:
        """`listen` or `poll`: how the refresher follows the change log from now on."""
        for each in FOLLOW_MODES:
            self.follow_mode.labels(each).set(1 if each == mode else 0)

    def record_database_error(self) -> None:
        self.database_errors.inc()

    def current_snapshot_age(self) -> float:
        since = self._last_current if self._last_current is not None else self._started
        return max(0.0, self._clock() - since)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format, for `/metrics` (every worker's, with
        several)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        self.flush()
        registry = CollectorRegistry()
        registry.register(_WorkersCollector(self._multiprocess_dir, self._clock))
        return generate_latest(registry)


class _Flush:
    """A collector that yields nothing: collecting it flushes the lookup recorders."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def collect(self) -> Iterator[Metric]:
        self._flush()
        return iter(())


_READ_ATTEMPTS = 5


class _WorkersCollector:
    """Every worker's metrics from the shared directory, the snapshot age computed at once."""

    def __init__(self, path: str, clock: Callable[[], float]) -> None:
        self._collector = MultiProcessCollector(None, path)
        self._clock = clock

    def _read(self) -> Iterable[Metric]:
        # The supervisor removes a dead worker's gauge files; one may go between the listing
        # of the directory and its reading: read again (it happens once per worker death).
        for _ in range(_READ_ATTEMPTS - 1):
            try:
                return list(self._collector.collect())
            except FileNotFoundError:
                continue
        return list(self._collector.collect())

    def collect(self) -> Iterator[Metric]:
        oldest: float | None = None
        for metric in self._read():
            if metric.name == _SNAPSHOT_CURRENT_SINCE:
                values = [sample.value for sample in metric.samples]
                oldest = min(values) if values else None
                continue
            yield metric
        if oldest is not None:
            yield GaugeMetricFamily(
                SNAPSHOT_AGE, SNAPSHOT_AGE_HELP, value=max(0.0, self._clock() - oldest)
            )
