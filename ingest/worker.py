"""The enrichment worker: a member of consumer group ``enrichment`` on ``gps.positions``.

The loop (``ingest.consumer``, shared with the CDC consumer) is separate from the handler:
``getmany()`` -> ``process_records()`` -> commit. Offsets are committed only after every sink
has the batch, so a crash replays it, and the idempotent sinks make the replay harmless. An
outage of PostgreSQL, Redis or Kafka pauses the loop (it retries the same batch, commits
nothing) and it resumes without loss. A record that keeps failing for another reason goes to
``gps.positions.dlq`` with the error and the loop moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from geo.cells import point_to_cell
from infrastructure.kafka import GPS_POSITIONS, GPS_POSITIONS_DLQ, GPS_POSITIONS_ENRICHED
from infrastructure.metrics import (
    ENRICHMENT_BATCH_SECONDS,
    ENRICHMENT_CONSUMER_LAG,
    ENRICHMENT_DEAD_LETTERS,
    ENRICHMENT_FIXES_CONSUMED,
    ENRICHMENT_POSITIONS_STORED,
    ENRICHMENT_RETRIES,
    ETA_COMPUTATIONS,
)
from infrastructure.outages import OUTAGE_ERRORS
from infrastructure.postgres import Conn
from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.consumer import (
    DeadLetters,
    LoopStats,
    Record,
    consume,
    consumer_process,
    records_waiting,
    report_every,
    start_with_retry,
    until_available,
)
from ingest.devices import DeviceRegistry
from ingest.errors import IngestError, UndecodableMessage
from ingest.model import Position
from ingest.movement import FixInput, Movement, MovementTracker
from ingest.plans import PlanCache
from ingest.producer import Publisher
from ingest.visit_lifecycle import OutboxRow, publish_outbox
from ingest.writers import EnrichedPosition, LiveState, PartitionKeeper, write_history_and_snapshot

log = logging.getLogger(__name__)

BAD_RECORD_RETRIES = 2
LAG_REPORT_S = 5.0  # how often the lag gauges are refreshed (one offset fetch per partition)


class DriverNotFound(IngestError, LookupError):
    code = "driver_not_found"


@dataclass
class WorkerStats(LoopStats):
    stored: int = 0


@dataclass
class Enricher:
    """What handle_batch needs: database pool, device registry, Redis live state, publisher."""

    settings: Settings
    pool: asyncpg.Pool
    devices: DeviceRegistry
    live: LiveState
    publisher: Publisher
    movement: MovementTracker
    partitions: PartitionKeeper = field(default_factory=PartitionKeeper)
    stats: WorkerStats = field(default_factory=WorkerStats)

    def __post_init__(self) -> None:
        self.dead_letters = DeadLetters(
            self.publisher, self.settings.kafka.topic(GPS_POSITIONS_DLQ), self.stats
        )

    async def enrich(self, positions: Sequence[Position]) -> list[EnrichedPosition]:
        """Join drivers and compute H3 cells; raise DriverNotFound for unregistered devices."""
        wanted = {p.device_id for p in positions}
        devices = await self.devices.resolve_many(wanted)
        if missing := wanted - devices.keys():
            # The receivers authenticated these; a miss here may be a stale negative cache
            # entry (a device registered a moment ago), so ask the database once more.
            for uid in missing:
                self.devices.invalidate(uid)
            devices |= await self.devices.resolve_many(missing)
        res = self.settings.ingest.h3_resolution
        out = []
        for p in positions:
            dev = devices.get(p.device_id)
            if dev is None or dev.tenant_id != p.tenant_id:
                raise DriverNotFound(f"device {p.device_id} is not registered in {p.tenant_id}")
            out.append(EnrichedPosition(p, dev, point_to_cell(p.lon, p.lat, res)))
        return out

    async def handle_batch(self, positions: Sequence[Position]) -> int:
        """Enrich and fan out one batch to every sink; return history rows newly stored."""
        enriched = await self.enrich(positions)
        drivers = {e.device.driver_id for e in enriched}
        tolerance_s = self.settings.ingest.live_future_tolerance_s
        # A fix dated further ahead of its arrival than a clock can be wrong is stored, but
        # moves no live state: not the tracker, the snapshot, Redis or the feed. Otherwise one
        # forged fix (OsmAnd has no key) would freeze a driver's live position until then.
        live = [
            e.position.fix_time_ms <= e.position.received_ms + tolerance_s * 1000 for e in enriched
        ]
        async with self.pool.acquire() as conn:
            decisions = await self.movement.decide(
                conn,
                [
                    FixInput(
                        i,
                        e.position.tenant_id,
                        e.device.driver_id,
                        e.position.device_id,
                        e.position.fix_time_ms,
                        e.position.lon,
                        e.position.lat,
                        e.position.speed_kmh,
                        e.position.accuracy,
                        e.position.valid,
                    )
                    for i, e in enumerate(enriched)
                    if live[i]
                ],
            )
            no_movement = Movement()
            enriched = [
                EnrichedPosition(
                    e.position, e.device, e.h3_cell, decisions.movements.get(i, no_movement)
                )
                for i, e in enumerate(enriched)
            ]
            try:
                async with conn.transaction():
                    stored = await write_history_and_snapshot(
                        conn, enriched, self.partitions, future_tolerance_s=tolerance_s
                    )
                    await decisions.apply(conn, self.movement.tracks, self.settings.kafka.topic)
            except BaseException:
                self.movement.forget(drivers)
                raise
            self.movement.commit(decisions)
            ETA_COMPUTATIONS.inc(sum(m.eta_s is not None for m in decisions.movements.values()))
            await self.publish_outbox(conn, decisions.published)
        current = [e for e, ok in zip(enriched, live, strict=True) if ok]
        messages = [orjson.dumps(e.to_message()) for e in current]  # encoded once, used twice
        await self.live.move(current, messages)
        await self.publisher.publish(
            GPS_POSITIONS_ENRICHED,
            [(e.device.driver_id.encode(), m) for e, m in zip(current, messages, strict=True)],
        )
        return stored

    async def publish_outbox(self, conn: Conn, events: Sequence[OutboxRow]) -> None:
        """Publish events decided in a committed transaction, then drop them from the outbox.

        A crash in between leaves them in ``event_outbox``; ``flush_stale_outbox`` publishes
        them later (at least once; consumers deduplicate by event id).
        """
        await publish_outbox(conn, events, self.publisher.publish_to)

    async def flush_stale_outbox(self, older_than_s: float = 30.0) -> int:
        """Publish events a crashed worker committed but did not get to publish."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT id::text, topic, key, value FROM event_outbox
                   WHERE created_at < now() - make_interval(secs => $1)
                   ORDER BY created_at LIMIT 1000""",
                older_than_s,
            )
            await self.publish_outbox(
                conn, [(r["id"], r["topic"], r["key"], orjson.dumps(r["value"])) for r in rows]
            )
        return len(rows)


async def process_records(enricher: Enricher, records: Sequence[Record]) -> None:
    """Process one consumed batch to completion (or dead letters); return only when done."""
    positions: list[tuple[Record, Position]] = []
    for rec in records:
        try:
            positions.append((rec, Position.from_bytes(rec.value)))
        except UndecodableMessage as exc:
            await enricher.dead_letters.send(rec, exc)
    if not positions:
        return
    batch = [p for _, p in positions]
    failures = 0
    while True:
        try:
            enricher.stats.stored += await until_available(
                lambda: enricher.handle_batch(batch), enricher.stats, "batch"
            )
            return
        except Exception as exc:  # a bad record poisons the batch: isolate it
            failures += 1
            if failures <= BAD_RECORD_RETRIES:
                log.warning("batch failed (%r), retrying", exc, exc_info=True)
                continue
            break
    for rec, pos in positions:
        try:
            enricher.stats.stored += await until_available(
                partial(enricher.handle_batch, [pos]), enricher.stats, "record"
            )
        except Exception as exc:
            await enricher.dead_letters.send(rec, exc)


async def measured_batch(enricher: Enricher, records: Sequence[Record]) -> None:
    """``process_records``, counted and timed for /metrics (infrastructure/metrics.py)."""
    stats = enricher.stats
    stored, dead, retries = stats.stored, stats.dead_lettered, stats.retries
    started = time.perf_counter()
    await process_records(enricher, records)
    ENRICHMENT_BATCH_SECONDS.observe(time.perf_counter() - started)
    ENRICHMENT_FIXES_CONSUMED.inc(len(records))
    ENRICHMENT_POSITIONS_STORED.inc(stats.stored - stored)
    ENRICHMENT_DEAD_LETTERS.inc(stats.dead_lettered - dead)
    ENRICHMENT_RETRIES.inc(stats.retries - retries)


async def report_lag(consumer: AIOKafkaConsumer, reported: set[str]) -> None:
    """Set the lag gauge of each assigned partition; drop partitions no longer assigned."""
    waiting = {str(tp.partition): n for tp, n in (await records_waiting(consumer)).items()}
    for partition in reported - waiting.keys():
        ENRICHMENT_CONSUMER_LAG.remove(partition)
    for partition, n in waiting.items():
        ENRICHMENT_CONSUMER_LAG.labels(partition).set(n)
    reported.clear()
    reported.update(waiting)


async def run_worker(settings: Settings, stop: asyncio.Event) -> WorkerStats:
    """Run one enrichment worker until stop is set; return its counters."""
    async with consumer_process(
        settings,
        stop,
        GPS_POSITIONS,
        group_id=settings.kafka.enrichment_group,
        pool_max_size=4,
        fetch_min_bytes=settings.enrichment.fetch_min_bytes,
        fetch_max_wait_ms=settings.enrichment.fetch_max_wait_ms,
    ) as parts:
        if parts is None:
            return WorkerStats()
        plans = PlanCache(parts.pool, ttl_s=settings.enrichment.plan_cache_ttl_s)
        enricher = Enricher(
            settings=settings,
            pool=parts.pool,
            devices=DeviceRegistry(parts.pool, max_entries=settings.ingest.device_cache_max),
            live=LiveState(
                parts.redis,
                RedisKeys(settings.redis.key_prefix),
                retention_s=settings.live.latest_retention_s,
                prune_interval_s=settings.live.prune_interval_s,
            ),
            publisher=parts.publisher,
            movement=MovementTracker(settings, plans),
        )
        try:
            await start_with_retry(
                lambda: plans.listen(settings.pg.dsn()), "postgres listener", stop
            )
            try:
                await enricher.flush_stale_outbox(older_than_s=0)
            except OUTAGE_ERRORS as exc:  # the housekeeping flush sends them later
                log.warning("outbox flush postponed: %r", exc)
            started = time.monotonic()
            log.info("enrichment worker consuming %s", settings.kafka.topic(GPS_POSITIONS))
            reported: set[str] = set()
            lag = asyncio.create_task(
                report_every(LAG_REPORT_S, lambda: report_lag(parts.consumer, reported), stop)
            )
            try:
                await consume(
                    parts.consumer,
                    lambda records: measured_batch(enricher, records),
                    stop,
                    enricher.stats,
                    max_records=2000,
                    timeout_ms=500,
                    housekeeping=enricher.flush_stale_outbox,
                )
            finally:
                lag.cancel()
            log.info("worker stopping after %.0fs: %s", time.monotonic() - started, enricher.stats)
        finally:
            await plans.close()
        return enricher.stats
