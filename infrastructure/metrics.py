"""Every Prometheus metric FleetPulse exposes, defined once, and each process's endpoint.

Every process (api, worker, cdc, maintain) serves ``/metrics`` in the Prometheus text format
on a port of its own (``MetricsSettings``), bound to 127.0.0.1 unless configured otherwise:
metrics are operator data, and the api's own port may face phones on the network. The
families and the dashboard panels and alerts built on them are in docs/operations.md.

Names follow Prometheus' conventions: the ``fleetpulse_`` prefix, base units as a suffix
(``_seconds``), counters end in ``_total`` (the client library appends it). Every label has a
small, bounded set of values — a receiver, an error code, a route *template*, a status, a
Kafka partition, a CDC table, an aggregate — never a device, driver, tenant id or raw path.
The hot paths pay one ``inc``/``observe`` per request or per batch, never per fix
(bench/metrics_overhead.py measures it).
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)
# No `_created` series beside every counter and histogram: half the scrape, and Prometheus
# handles counter resets without them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Request and produce latencies: 1 ms .. 10 s (a receiver's produce timeout is 5 s).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Enrichment batches and aggregate refreshes take longer.
BATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REFRESH_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# -- every process --------------------------------------------------------------------------

PROCESS_INFO = Gauge(
    "fleetpulse_process_info",
    "Always 1; its labels say which FleetPulse process this is and its version.",
    ["role", "version"],
)

# -- receivers (api process) ----------------------------------------------------------------

RECEIVER_POSITIONS_ACCEPTED = Counter(
    "fleetpulse_receiver_positions_accepted",
    "Positions a receiver published to gps.positions and Kafka acknowledged (acks=all).",
    ["receiver"],
)
RECEIVER_REFUSALS = Counter(
    "fleetpulse_receiver_refusals",
    "Requests (or lines of a batch) a receiver refused, by the error code the client got.",
    ["receiver", "reason"],
)
RECEIVER_UNAVAILABLE = Counter(
    "fleetpulse_receiver_unavailable_responses",
    "Receiver requests answered 503 (Kafka did not acknowledge, or a dependency is away).",
    ["receiver"],
)
RECEIVER_PRODUCE_SECONDS = Histogram(
    "fleetpulse_receiver_produce_duration_seconds",
    "Time from handing a request's positions to the producer to Kafka's acknowledgement.",
    buckets=LATENCY_BUCKETS_S,
)

# -- HTTP (api process) ---------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "fleetpulse_http_requests",
    "HTTP requests answered by the api, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "fleetpulse_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS_S,
)

# -- enrichment workers ---------------------------------------------------------------------

ENRICHMENT_FIXES_CONSUMED = Counter(
    "fleetpulse_enrichment_fixes_consumed",
    "Records consumed from gps.positions and processed (stored or dead-lettered).",
)
ENRICHMENT_POSITIONS_STORED = Counter(
    "fleetpulse_enrichment_positions_stored",
    "History rows newly stored (a replayed fix is not stored twice).",
)
ENRICHMENT_BATCH_SECONDS = Histogram(
    "fleetpulse_enrichment_batch_duration_seconds",
    "Time to process one consumed batch to completion, retries included.",
    buckets=BATCH_BUCKETS_S,
)
ENRICHMENT_CONSUMER_LAG = Gauge(
    "fleetpulse_enrichment_consumer_lag_records",
    "Records of gps.positions waiting for this worker, per assigned partition.",
    ["partition"],
)
ENRICHMENT_DEAD_LETTERS = Counter(
    "fleetpulse_enrichment_dead_letters",
    "Records sent to gps.positions.dlq.",
)
ENRICHMENT_RETRIES = Counter(
    "fleetpulse_enrichment_retries",
    "Batches retried because PostgreSQL, Redis or Kafka was unavailable.",
)
GEOFENCE_EVENTS = Counter(
    "fleetpulse_enrichment_geofence_events",
    "Geofence enter/exit events decided by the state machines.",
    ["event"],
)
VISIT_TRANSITIONS = Counter(
    "fleetpulse_visit_transitions",
    "Visit status changes applied (by the worker or the API), by the new status.",
    ["status"],
)
ETA_COMPUTATIONS = Counter(
    "fleetpulse_enrichment_eta_computations",
    "ETAs computed for a driver's next stop.",
)

# -- CDC consumer ---------------------------------------------------------------------------

CDC_EVENTS = Counter(
    "fleetpulse_cdc_events",
    "Change events read, by table and outcome (applied, skipped as not newer).",
    ["table", "outcome"],
)
CDC_DEAD_LETTERS = Counter(
    "fleetpulse_cdc_dead_letters",
    "Change events sent to cdc.dlq, by table (unknown: not from a cdc.* topic).",
    ["table"],
)
CDC_LAG_SECONDS = Gauge(
    "fleetpulse_cdc_lag_seconds",
    "Source commit to applied here, of the last change applied per table (not snapshots).",
    ["table"],
)
CDC_LAST_APPLIED = Gauge(
    "fleetpulse_cdc_last_applied_timestamp_seconds",
    "Unix time the last change of each table was applied.",
    ["table"],
)
CDC_CONSUMER_LAG = Gauge(
    "fleetpulse_cdc_consumer_lag_records",
    "Change events waiting in Kafka for this consumer, per table.",
    ["table"],
)

# -- maintenance (aggregates) ---------------------------------------------------------------

AGGREGATE_REFRESH_SECONDS = Histogram(
    "fleetpulse_aggregate_refresh_duration_seconds",
    "Time to refresh one aggregate (its late window up to now).",
    ["aggregate"],
    buckets=REFRESH_BUCKETS_S,
)
AGGREGATE_REFRESH_LAST_SUCCESS = Gauge(
    "fleetpulse_aggregate_refresh_last_success_timestamp_seconds",
    "Unix time of the last successful refresh of each aggregate.",
    ["aggregate"],
)
AGGREGATE_REFRESH_ROWS = Counter(
    "fleetpulse_aggregate_refresh_rows",
    "Rows materialised by refreshes (plain PostgreSQL; TimescaleDB does not report them).",
    ["aggregate"],
)
MAINTENANCE_PASSES = Counter(
    "fleetpulse_maintenance_passes",
    "Maintenance passes (partitions, retention, refresh), by outcome (ok, failed).",
    ["outcome"],
)

# -- live feed (api process): read from the gateway when scraped ----------------------------


@dataclass(frozen=True, slots=True)
class LiveFeedSample:
    """What one socket.io gateway reports at a scrape (counters since it started)."""

    viewers: int
    queued_packets: int
    rooms_by_kind: dict[str, int] = field(default_factory=dict)
    positions_in: int = 0
    frames_sent: int = 0
    position_updates_sent: int = 0
    visit_updates_sent: int = 0
    dropped_frames: int = 0
    slow_disconnects: int = 0
    refused_connections: int = 0
    refused_joins: int = 0
    rate_limited: int = 0
    sessions_ended: int = 0


class LiveFeedSource(Protocol):
    def live_feed_sample(self) -> LiveFeedSample: ...


class LiveFeedCollector(Collector):
    """The live feed's families, summed over the gateways of this process (normally one).

    Read at scrape time from the gateway's own counters, so the per-frame fan-out path pays
    nothing for them.
    """

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[LiveFeedSource] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, source: LiveFeedSource) -> None:
        with self._lock:
            self._sources.add(source)

    def discard(self, source: LiveFeedSource) -> None:
        with self._lock:
            self._sources.discard(source)

    def describe(self) -> Iterator[Metric]:
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        if not sources:  # not an api process: no live feed to report
            return iter(())
        samples = []
        for source in sources:
            try:
                samples.append(source.live_feed_sample())
            except RuntimeError:  # the loop changed a dict while we read it: next scrape
                continue
        return self._families(samples)

    @staticmethod
    def _families(samples: list[LiveFeedSample]) -> Iterator[Metric]:
        def total(attr: str) -> int:
            return sum(int(getattr(s, attr)) for s in samples)

        yield GaugeMetricFamily(
            "fleetpulse_live_viewers", "Sockets connected to /tracking.", value=total("viewers")
        )
        rooms = GaugeMetricFamily(
            "fleetpulse_live_rooms", "Rooms with at least one member, by kind.", labels=["kind"]
        )
        kinds: dict[str, int] = {}
        for s in samples:
            for kind, n in s.rooms_by_kind.items():
                kinds[kind] = kinds.get(kind, 0) + n
        for kind in ("tenant", "driver", "route", *sorted(set(kinds) - LIVE_ROOM_KINDS)):
            rooms.add_metric([kind], kinds.get(kind, 0))
        yield rooms
        yield GaugeMetricFamily(
            "fleetpulse_live_queued_packets",
            "Packets waiting in the per-viewer queues.",
            value=total("queued_packets"),
        )
        for name, attr, text in _LIVE_COUNTERS:
            yield CounterMetricFamily(name, text, value=total(attr))


LIVE_ROOM_KINDS = frozenset({"tenant", "driver", "route"})
_LIVE_COUNTERS = (
    (
        "fleetpulse_live_positions_received",
        "positions_in",
        "Enriched positions the gateway consumed.",
    ),
    (
        "fleetpulse_live_frames_sent",
        "frames_sent",
        "positions:batch frames handed to viewers.",
    ),
    (
        "fleetpulse_live_position_updates_sent",
        "position_updates_sent",
        "Seed-style position:update packets handed to viewers.",
    ),
    (
        "fleetpulse_live_visit_updates_sent",
        "visit_updates_sent",
        "visit:update packets handed to viewers.",
    ),
    (
        "fleetpulse_live_frames_dropped",
        "dropped_frames",
        "Frames or updates dropped from a full viewer queue (a newer one replaced it).",
    ),
    (
        "fleetpulse_live_slow_disconnects",
        "slow_disconnects",
        "Viewers disconnected for falling too far behind on visit events.",
    ),
    (
        "fleetpulse_live_refused_connections",
        "refused_connections",
        "Socket connections refused (no or bad token).",
    ),
    (
        "fleetpulse_live_refused_joins",
        "refused_joins",
        "Room joins refused (not authorised, too many rooms).",
    ),
    (
        "fleetpulse_live_rate_limited_requests",
        "rate_limited",
        "Socket requests refused for an empty request budget.",
    ),
    (
        "fleetpulse_live_sessions_ended",
        "sessions_ended",
        "Sockets dropped because their token expired or their user logged out.",
    ),
)

LIVE_FEED = LiveFeedCollector()
REGISTRY.register(LIVE_FEED)


# -- the endpoint ---------------------------------------------------------------------------


def installed_version() -> str:
    """FleetPulse's version as installed (pyproject.toml), for ``fleetpulse_process_info``."""
    try:
        return importlib.metadata.version("fleetpulse")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def serve_metrics(role: str, host: str, port: int, version: str | None = None) -> int | None:
    """Serve ``/metrics`` for this process on ``host:port`` from a background thread.

    Returns the port, or None when ``port`` is 0 (disabled) or cannot be bound: a second
    process of the same role on one host without a port of its own keeps running, unmonitored,
    with a warning that names the setting.
    """
    PROCESS_INFO.labels(role, version or installed_version()).set(1)
    if port == 0:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning(
            "metrics for %s not served: cannot listen on %s:%d (%s); give each process its own "
            "port (docs/operations.md)",
            role,
            host,
            port,
            exc,
        )
        return None
    bound = int(server.server_address[1])
    log.info("metrics for %s at http://%s:%d/metrics", role, host, bound)
    return bound
