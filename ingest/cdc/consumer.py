"""The CDC consumer (``fleetpulse cdc``): Debezium's ``cdc.*`` topics -> the PostgreSQL cache.

The enrichment worker's loop (``ingest.consumer``): ``getmany()`` -> ``handle_batch()`` (one
PostgreSQL transaction: every event applied if newer than the row's stored source position,
sync_state counters) -> Redis invalidation of changed customers -> commit offsets. A crash
anywhere replays the batch and the position guard makes the replay change nothing. A record
that cannot be read or applied (malformed JSON, another table, an impossible value, a
constraint it violates) goes to ``cdc.dlq`` with the reason in its headers and the stream goes
on. An outage of PostgreSQL, Redis or Kafka pauses the loop (same batch retried, no commit).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from infrastructure.kafka import CDC_DLQ, CDC_TABLES
from infrastructure.metrics import (
    CDC_CONSUMER_LAG,
    CDC_DEAD_LETTERS,
    CDC_EVENTS,
    CDC_LAG_SECONDS,
    CDC_LAST_APPLIED,
)
from infrastructure.postgres import Conn
from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.cdc.apply import apply_event
from ingest.cdc.events import ChangeEvent, table_of_topic
from ingest.cdc.events import parse_event as parse_change
from ingest.consumer import (
    DeadLetters,
    LoopStats,
    Record,
    consume,
    consumer_process,
    records_waiting,
    report_every,
    until_available,
)
from ingest.errors import IngestError
from ingest.producer import Publisher

log = logging.getLogger(__name__)

CDC_TOPICS = tuple(f"cdc.{t}" for t in CDC_TABLES)
LAG_REPORT_S = 5.0  # how often the lag gauges are refreshed
# With nothing waiting in Kafka, the lag gauge reads 0 once the last apply is this old.
LAG_AT_REST_S = 60.0
# Data errors of one event (bad value, violated constraint): dead-letter, never retry.
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    IngestError,
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
)


@dataclass
class TableCounters:
    applied: int = 0
    skipped: int = 0
    errors: int = 0
    last_error: str | None = None
    last: ChangeEvent | None = None


@dataclass
class CdcStats(LoopStats):
    applied: int = 0
    skipped: int = 0


@dataclass
class BatchResult:
    tables: dict[str, TableCounters] = field(default_factory=lambda: defaultdict(TableCounters))
    dead: list[tuple[Record, BaseException]] = field(default_factory=list)
    customers: set[int] = field(default_factory=set)


def parse_record(record: Record, topic_prefix: str) -> ChangeEvent:
    """Decode one consumed record; raise MalformedEvent / UnexpectedEvent."""
    return parse_change(table_of_topic(record.topic, topic_prefix), record.value)


async def handle_batch(conn: Conn, events: Sequence[tuple[Record, ChangeEvent]]) -> BatchResult:
    """Apply decoded events in one transaction (each in a savepoint); update sync_state."""
    result = BatchResult()
    async with conn.transaction():
        for record, ev in events:
            counters = result.tables[ev.table]
            try:
                async with conn.transaction():
                    applied = await apply_event(conn, ev)
            except _DATA_ERRORS as exc:
                counters.errors += 1
                counters.last_error = f"{type(exc).__name__}: {exc}"[:500]
                result.dead.append((record, exc))
                continue
            if applied:
                counters.applied += 1
            else:
                counters.skipped += 1
            counters.last = ev
            if ev.table == "customers":
                result.customers.add(ev.id)
        await record_sync_state(conn, result.tables)
    return result


async def record_sync_state(conn: Conn, tables: dict[str, TableCounters]) -> None:
    """Add a batch's counters to sync_state (per table: events, lag of the last, position)."""
    now = datetime.now(UTC)
    for table, c in tables.items():
        last = c.last
        # Snapshot reads carry the snapshot's start as their source time: not replication lag.
        lag_ms = None
        if last is not None and not last.snapshot:
            lag_ms = (now - last.source_ts).total_seconds() * 1000
        await conn.execute(
            """INSERT INTO sync_state (table_name, last_event_at, last_source_ts,
                                       last_source_pos, events_processed, events_skipped,
                                       errors, last_error, last_lag_ms, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
               ON CONFLICT (table_name) DO UPDATE SET
                   last_event_at = coalesce(EXCLUDED.last_event_at, sync_state.last_event_at),
                   last_source_ts = greatest(EXCLUDED.last_source_ts, sync_state.last_source_ts),
                   last_source_pos = coalesce(EXCLUDED.last_source_pos,
                                              sync_state.last_source_pos),
                   events_processed = sync_state.events_processed + EXCLUDED.events_processed,
                   events_skipped = sync_state.events_skipped + EXCLUDED.events_skipped,
                   errors = sync_state.errors + EXCLUDED.errors,
                   last_error = coalesce(EXCLUDED.last_error, sync_state.last_error),
                   last_lag_ms = coalesce(EXCLUDED.last_lag_ms, sync_state.last_lag_ms),
                   updated_at = now()""",
            table,
            now if last is not None else None,
            last.source_ts if last is not None else None,
            last.position_text if last is not None else None,
            c.applied,
            c.skipped,
            c.errors,
            c.last_error,
            lag_ms,
        )


async def record_errors(conn: Conn, counts: dict[str, tuple[int, str]]) -> None:
    """Count undecodable records against their table in sync_state."""
    for table, (n, reason) in counts.items():
        await conn.execute(
            """INSERT INTO sync_state (table_name, errors, last_error) VALUES ($1, $2, $3)
               ON CONFLICT (table_name) DO UPDATE SET
                   errors = sync_state.errors + EXCLUDED.errors,
                   last_error = EXCLUDED.last_error, updated_at = now()""",
            table,
            n,
            reason,
        )


@dataclass
class CdcConsumer:
    """What the loop needs: settings, PostgreSQL pool, Redis, a publisher for the DLQ."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    publisher: Publisher
    stats: CdcStats = field(default_factory=CdcStats)
    # per table, for the lag gauge: the last applied change's lag (s), and when (Unix time)
    last_lag_s: dict[str, float] = field(default_factory=dict)
    last_applied: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dead_letters = DeadLetters(
            self.publisher, self.settings.kafka.topic(CDC_DLQ), self.stats
        )

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.settings.redis.key_prefix)

    async def process(self, records: Sequence[Record]) -> None:
        """Process one consumed batch to completion (applied, skipped or dead-lettered)."""
        prefix = self.settings.kafka.topic_prefix
        events: list[tuple[Record, ChangeEvent]] = []
        bad: list[tuple[Record, BaseException]] = []
        for rec in records:
            try:
                events.append((rec, parse_record(rec, prefix)))
            except IngestError as err:
                bad.append((rec, err))

        async def apply() -> BatchResult:
            async with self.pool.acquire() as conn:
                result = await handle_batch(conn, events) if events else BatchResult()
                if bad:
                    await record_errors(conn, _error_counts(bad, prefix))
            await self.invalidate(result.customers)
            return result

        result = await until_available(apply, self.stats, "cdc batch")
        for rec, error in [*bad, *result.dead]:
            await self.dead_letters.send(rec, error)
        for c in result.tables.values():
            self.stats.applied += c.applied
            self.stats.skipped += c.skipped
        self.count(result, bad)

    def count(self, result: BatchResult, bad: list[tuple[Record, BaseException]]) -> None:
        """A processed batch in /metrics: events and dead letters per table, the lag."""
        prefix = self.settings.kafka.topic_prefix
        now = datetime.now(UTC)
        for table, c in result.tables.items():
            CDC_EVENTS.labels(table, "applied").inc(c.applied)
            CDC_EVENTS.labels(table, "skipped").inc(c.skipped)
            if c.last is not None and not c.last.snapshot:  # a snapshot's time is not lag
                self.last_lag_s[table] = max(0.0, (now - c.last.source_ts).total_seconds())
                self.last_applied[table] = now.timestamp()
                CDC_LAG_SECONDS.labels(table).set(self.last_lag_s[table])
                CDC_LAST_APPLIED.labels(table).set(self.last_applied[table])
        for rec, _ in [*bad, *result.dead]:
            try:
                table = table_of_topic(rec.topic, prefix)
            except IngestError:
                table = "unknown"
            CDC_DEAD_LETTERS.labels(table).inc()

    async def report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Events waiting per table, and the lag now: while events wait, at least the time
        since the last apply (the cache is that stale); at rest, 0 after LAG_AT_REST_S."""
        prefix = self.settings.kafka.topic_prefix
        waiting = dict.fromkeys(CDC_TABLES, 0)
        for tp, n in (await records_waiting(consumer)).items():
            try:
                waiting[table_of_topic(tp.topic, prefix)] += n
            except IngestError:
                continue
        now = datetime.now(UTC).timestamp()
        for table, n in waiting.items():
            CDC_CONSUMER_LAG.labels(table).set(n)
            applied = self.last_applied.get(table)
            if applied is None:
                continue
            lag = self.last_lag_s.get(table, 0.0)
            if n > 0:
                lag = max(lag, now - applied)
            elif now - applied > LAG_AT_REST_S:
                lag = 0.0
            CDC_LAG_SECONDS.labels(table).set(lag)

    async def invalidate(self, customer_ids: set[int]) -> None:
        """Drop changed customers from Redis and tell every process to evict its copy."""
        if not customer_ids:
            return
        keys = self.keys
        await self.redis.delete(*(keys.customer(i) for i in customer_ids))
        await self.redis.publish(
            keys.customer_invalidations, ",".join(str(i) for i in sorted(customer_ids))
        )


def _error_counts(
    bad: list[tuple[Record, BaseException]], prefix: str
) -> dict[str, tuple[int, str]]:
    counts: dict[str, tuple[int, str]] = {}
    for rec, exc in bad:
        try:
            table = table_of_topic(rec.topic, prefix)
        except IngestError:
            continue
        n, _ = counts.get(table, (0, ""))
        counts[table] = (n + 1, f"{type(exc).__name__}: {exc}"[:500])
    return counts


async def run_cdc(settings: Settings, stop: asyncio.Event) -> CdcStats:
    """Run the CDC consumer until stop is set; return its counters."""
    async with consumer_process(
        settings, stop, *CDC_TOPICS, group_id=settings.cdc.consumer_group, pool_max_size=2
    ) as parts:
        if parts is None:
            return CdcStats()
        cdc = CdcConsumer(
            settings=settings, pool=parts.pool, redis=parts.redis, publisher=parts.publisher
        )
        log.info("cdc consumer on %s", ", ".join(settings.kafka.topic(t) for t in CDC_TOPICS))
        lag = asyncio.create_task(
            report_every(LAG_REPORT_S, lambda: cdc.report_lag(parts.consumer), stop)
        )
        try:
            await consume(
                parts.consumer, cdc.process, stop, cdc.stats, max_records=1000, timeout_ms=200
            )
        finally:
            lag.cancel()
        log.info("cdc consumer stopping: %s", cdc.stats)
        return cdc.stats
