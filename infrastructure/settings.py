"""Settings, one class per concern, read from the environment (prefix ``FLEETPULSE_``) and ``.env``.

Defaults match the local stack that ``fleetpulse stack up`` starts. Nothing here is built at
import time: the api, the worker and the tests construct ``Settings()`` (or pass their own).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Public (it is in the repository): refused outside the test suite (infrastructure/secrets.py).
EXAMPLE_JWT_SECRET = "change-me-in-production-0123456789abcdef"
# Random secrets of this installation, written by `fleetpulse stack up` (git-ignored).
LOCAL_SECRETS_FILE = PROJECT_ROOT / ".secrets.env"
# Public too: the PostgreSQL, MariaDB and Redis passwords when nothing else is configured.
# `fleetpulse stack up` never applies it (it writes random ones into .secrets.env) and the
# api refuses it outside the test suite.
REPOSITORY_DB_PASSWORD = "fleetpulse"


class PostgresSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 5433
    user: str = "fleetpulse"
    password: SecretStr = SecretStr(REPOSITORY_DB_PASSWORD)
    database: str = "fleetpulse"
    pool_min: int = 2
    pool_max: int = 10

    def dsn(self, database: str | None = None) -> str:
        """Return a libpq URL for this server, optionally for another database."""
        return (
            f"postgresql://{quote(self.user, safe='')}:"
            f"{quote(self.password.get_secret_value(), safe='')}"
            f"@{self.host}:{self.port}/{database or self.database}"
        )


class RedisSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 6380
    db: int = 0
    key_prefix: str = "fp:"
    # AUTH password (the local stack sets it as `requirepass`); empty: no AUTH.
    password: SecretStr = SecretStr(REPOSITORY_DB_PASSWORD)

    def url(self) -> str:
        """Return the redis:// URL (with the password, when there is one)."""
        password = self.password.get_secret_value()
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    enrichment_group: str = "enrichment"
    # How long a receiver waits for the broker's acknowledgement before answering 503.
    produce_timeout_s: float = 5.0

    def topic(self, name: str) -> str:
        """Return the physical topic name for a logical one (tests isolate by prefix)."""
        return f"{self.topic_prefix}{name}"


class MariaDBSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 3307
    user: str = "fleetpulse"
    password: SecretStr = SecretStr(REPOSITORY_DB_PASSWORD)
    database: str = "core_business"


class CdcSettings(BaseModel):
    # Kafka Connect's REST API (the local stack's `connect` service listens there).
    connect_url: str = "http://127.0.0.1:8083"
    # Debezium connector name; the Kafka topic prefix is prepended (tests isolate with it).
    connector_name: str = "core-business"
    # Replica id Debezium uses toward MariaDB/MySQL; unique per connector on one server.
    server_id: int = 184054
    # Consumer group of `fleetpulse cdc` (the Kafka topic prefix is prepended).
    consumer_group: str = "cdc"
    # Customer read-through cache: in-process TTL, then Redis TTL.
    customer_memory_ttl_s: float = 60.0
    customer_redis_ttl_s: int = 300


class AuthSettings(BaseModel):
    jwt_secret: SecretStr = SecretStr(EXAMPLE_JWT_SECRET)
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 7 * 24 * 3600
    # Seed compatibility: one shared Traccar key accepted for every tenant's devices. The
    # default is public, so it works in the test suite only; `fleetpulse stack up` writes a
    # random one into .secrets.env.
    traccar_api_key: SecretStr | None = SecretStr("traccar-shared-key")
    # Failed logins allowed per window, per account (tenant + email) and per client address.
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20
    login_window_s: int = 15 * 60
    # Tenants (comma-separated) whose admins operate the platform: only they see process-wide
    # data (CDC sync status and lag, live-feed metrics, the cdc:lag broadcast).
    operator_tenants: str = "tenant-1"

    def operator_tenant_set(self) -> frozenset[str]:
        """Return the operator tenants as a set."""
        return frozenset(t.strip() for t in self.operator_tenants.split(",") if t.strip())


class ApiSettings(BaseModel):
    # Comma-separated origins allowed by CORS ("*" for any); empty disables CORS headers.
    cors_origins: str = ""
    # Comma-separated addresses of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto
    # are believed; empty: the TCP peer is the client (per-address limits cannot be split by
    # a forged header).
    trusted_proxies: str = ""
    # Where clients reach the api (e.g. https://fleet.example.com): links the api hands out
    # (pagination's Link, the map style's tile URLs) are built under it. Empty: Link is a
    # relative reference, never built from the request's Host header (anyone can send any).
    public_base_url: str = ""

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("public_base_url must be an http(s) URL, e.g. https://host")
            if parts.query or parts.fragment:
                raise ValueError("public_base_url takes no query or fragment")
        return value

    def cors_origin_list(self) -> list[str]:
        """Return the configured CORS origins as a list."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def trusted_proxy_list(self) -> list[str]:
        """Return the configured trusted proxy addresses as a list."""
        return [o.strip() for o in self.trusted_proxies.split(",") if o.strip()]


class IngestSettings(BaseModel):
    max_body_bytes: int = 1_000_000
    max_batch_positions: int = 5_000
    # Fixes further than this in the future (device clock skew) are rejected at the edge.
    max_future_skew_s: int = 24 * 3600
    # A fix this far ahead of its arrival is stored in history but moves no live state (the
    # snapshot, Redis, the feed, visit and movement tracking): a forged future fix cannot pin
    # a driver's live position.
    live_future_tolerance_s: int = Field(default=300, ge=0)
    h3_resolution: int = 10
    osmand_port: int = 5055
    # Traccar's osmand.minAccuracy for Traccar Client's JSON body: a coords.accuracy below it
    # (metres) is not kept — the fix is stored with accuracy unknown; 0 keeps every value.
    osmand_json_min_accuracy_m: float = Field(default=10.0, ge=0)
    # Unknown device ids are counted per id (the unknown-devices hash in Redis) up to this
    # many distinct ids, the rest together; the hash expires this long after the last one.
    unknown_devices_max: int = Field(default=10_000, ge=1)
    unknown_devices_ttl_s: int = Field(default=86_400, ge=1)
    # Entries of each process's device cache (registered and unknown ids) at most.
    device_cache_max: int = Field(default=100_000, ge=100)


class GeofenceSettings(BaseModel):
    """Arrival/departure detection (geo/geofence_state.py explains each threshold)."""

    enter_tolerance_m: float = 5.0
    exit_margin_m: float = 30.0
    far_accuracy_factor: float = 2.0
    enter_min_fixes: int = 3
    enter_min_s: float = 15.0
    exit_min_fixes: int = 3
    exit_min_s: float = 15.0
    max_accuracy_m: float = 100.0
    # A visit is "arrived" once its geofence has been entered and stayed in this long.
    visit_arrival_dwell_s: float = 60.0
    # ... or this long for a stop out of the planned order: waiting near a later stop (a
    # depot next to a customer, a queue) must not look like serving it (docs/enrichment.md)
    visit_out_of_order_dwell_s: float = 180.0


class EnrichmentSettings(BaseModel):
    # ETA speed when the recent speed says nothing (stopped, or no movement yet).
    planning_speed_kmh: float = 20.0
    # Long enough to average stop-and-go (red lights) into an effective speed.
    ewma_half_life_s: float = 300.0
    plan_cache_ttl_s: float = 60.0
    # The broker holds a worker's fetch until this much is waiting or the wait is over, so a
    # quiet fleet is enriched in batches too: at 200 fixes/s a worker ran a transaction for
    # every 1.4 fixes (0.25 core each). Adds at most the wait to the live latency. 256 KiB is
    # ~850 fixes: up to ~8,700 fixes/s per worker the 100 ms wait decides. At 64 KiB a worker
    # taking 5,000 fixes/s fetched every ~45 ms, and 10,000/s batched did not hold
    # (docs/simulator.md, session 5).
    fetch_min_bytes: int = Field(default=262_144, ge=1)
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=1_000)


class EtaSettings(BaseModel):
    """The learned ETA (docs/eta.md): map matching, learned speeds, the driver's pace."""

    # Learned speeds: the weeks of history behind them, and the traversals a figure needs
    # before the ETA trusts it (below: segment → cell → road class → planning speed).
    learn_weeks: int = Field(default=8, ge=1, le=52)
    min_samples: int = Field(default=3, ge=1)
    # How often a worker reloads the learned speeds and road segments.
    profile_reload_s: float = Field(default=300.0, ge=5.0)
    # Service time assumed at each later stop until the tenant's own median (of the last
    # learn_weeks) is known.
    service_time_s: float = Field(default=300.0, ge=0.0)
    # The driver's pace against the learned speeds: memory (half-life), evidence the profile
    # counts for (prior), and how fast its effect fades with the horizon.
    pace_half_life_s: float = Field(default=600.0, gt=0.0)
    pace_prior_s: float = Field(default=120.0, ge=0.0)
    pace_fade_s: float = Field(default=900.0, gt=0.0)
    # Map matching of the history (maintenance pass): how long after a fix it is matched.
    match_settle_s: float = Field(default=120.0, ge=0.0)


class StackSettings(BaseModel):
    root: Path = PROJECT_ROOT / ".stack"
    kafka_version: str = "3.9.1"
    # KRaft controller listener of the single local node (the broker port is in KafkaSettings).
    kafka_controller_port: int = 9093
    kafka_heap_max: str = "1g"
    # Kafka Connect worker (the `connect` service) and its Debezium MariaDB plugin.
    connect_heap_max: str = "512m"
    debezium_version: str = "3.5.0.Final"
    # TimescaleDB for the `postgres` service: built from source once and preloaded (false: plain
    # PostgreSQL there too). The source is a timescaledb-*.tar.gz, or a folder holding one
    # (relative paths are taken from the project root).
    timescaledb: bool = True
    timescaledb_source: Path = PROJECT_ROOT.parent / "shared" / "vendor"
    # The `postgres-plain` service: a second cluster that never preloads TimescaleDB, for the
    # plain-PostgreSQL backend's tests.
    plain_pg_port: int = 5434


class AnalyticsSettings(BaseModel):
    # Positions older than this are dropped: daily partitions by `fleetpulse maintain` on plain
    # PostgreSQL, TimescaleDB's retention policy (kept in step by the same command) otherwise.
    retention_days: int = Field(default=365, ge=1)
    # TimescaleDB compresses chunks of positions older than this (plain PostgreSQL: unused).
    compress_after_days: int = Field(default=7, ge=1)
    # Daily partitions created ahead of today.
    partitions_ahead_days: int = 7
    # Rollup refresh: how often the maintenance loop runs, and how far back each pass re-does
    # buckets so that late fixes are folded in.
    refresh_interval_s: float = 60.0
    late_window_s: int = 7200
    # Playback: windows up to this are served from raw fixes, longer ones from positions_1m.
    playback_raw_max_s: int = 86_400
    # Longest window any analytics route accepts.
    max_window_days: int = 31
    # Fleet exports (GeoParquet): the longest window, and the most fixes one file may hold
    # (the file is built in memory: ~20 bytes a fix compressed).
    export_max_window_days: int = Field(default=7, ge=1)
    export_max_rows: int = Field(default=5_000_000, ge=1)


class LiveSettings(BaseModel):
    """The socket.io live feed (docs/live-feed.md)."""

    # One positions:batch frame per room per interval at most (milliseconds, >= 100).
    batch_interval_ms: int = Field(default=1000, ge=100)
    # Frames a client may have waiting before the oldest positions are dropped.
    client_queue_frames: int = Field(default=32, ge=1)
    # Visit events are never dropped: a client this far behind on them is disconnected.
    client_max_events: int = Field(default=10_000, ge=1)
    # Engine.IO packets queued toward one socket before its frames wait in our queue.
    socket_backlog_packets: int = Field(default=4, ge=1)
    # Frames are written straight to a viewer's websocket transport (api/live/direct.py) ...
    direct_websocket: bool = True
    # ... until this many bytes wait in its write buffer; then they wait in our queue.
    socket_backlog_bytes: int = Field(default=1_048_576, ge=1024)
    # How often admins get cdc:lag (seconds).
    cdc_lag_interval_s: float = Field(default=5.0, gt=0)
    # Rooms one socket may be in at once (its default rooms included).
    max_rooms_per_client: int = Field(default=50, ge=2)
    # Requests (joins, leaves, get-active-drivers ...) one socket may make: per second, and a
    # burst; get-active-drivers costs 10 (it answers every driver of the tenant).
    client_requests_per_s: float = Field(default=10.0, gt=0)
    client_request_burst: float = Field(default=30.0, ge=10)
    # How often sockets are checked for an expired token or a logout (seconds).
    session_check_interval_s: float = Field(default=5.0, gt=0)
    # A driver is active while its latest fix is at most this old (seconds; the seed's Redis
    # TTL): /api/drivers/near, /within and get-active-drivers leave older ones out unless
    # asked to include stale drivers.
    active_window_s: int = Field(default=300, ge=1)
    # Latest positions older than this (seconds of fix time) leave Redis: key, GEO member and
    # fix-time guard (bounded memory when devices churn); at least the active window.
    latest_retention_s: int = Field(default=86_400, ge=60)
    # How often a worker prunes what is past the retention (seconds).
    prune_interval_s: float = Field(default=60.0, gt=0)


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` of each process, on a port of its own (docs/operations.md)."""

    # 127.0.0.1: only this machine's Prometheus reads them (metrics are operator data);
    # 0.0.0.0 (Docker Compose) for a Prometheus on another host of a private network.
    host: str = "127.0.0.1"
    # 0 disables a process's endpoint. `fleetpulse run` gives its N workers worker_port,
    # worker_port + 1, ...; a second worker started by hand needs its own port.
    api_port: int = Field(default=9400, ge=0, le=65535)
    cdc_port: int = Field(default=9401, ge=0, le=65535)
    maintain_port: int = Field(default=9402, ge=0, le=65535)
    worker_port: int = Field(default=9410, ge=0, le=65535)


class Settings(BaseSettings):
    """All of FleetPulse's configuration; nested values use ``__``, e.g. FLEETPULSE_PG__PORT."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETPULSE_",
        env_nested_delimiter="__",
        # later files win; the environment wins over both
        env_file=(".env", LOCAL_SECRETS_FILE),
        extra="ignore",
    )

    environment: Literal["development", "test", "production"] = "development"
    # this machine only; 0.0.0.0 for phones on the network (OsmAnd has no key: docs/security.md)
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    pg: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mariadb: MariaDBSettings = Field(default_factory=MariaDBSettings)
    cdc: CdcSettings = Field(default_factory=CdcSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    geofence: GeofenceSettings = Field(default_factory=GeofenceSettings)
    enrichment: EnrichmentSettings = Field(default_factory=EnrichmentSettings)
    eta: EtaSettings = Field(default_factory=EtaSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
