"""The enrichment worker: a member of consumer group ``enrichment`` on ``gps.positions``.

The loop is separate from the handler: ``getmany()`` -> ``handle_batch()`` -> commit. Offsets
are committed only after every sink has the batch, so a crash replays it, and the idempotent
sinks make the replay harmless. An outage of PostgreSQL, Redis or Kafka pauses the loop (it
retries the same batch, commits nothing) and it resumes without loss. A record that keeps
failing for another reason goes to ``gps.positions.dlq`` with the error and the loop moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CommitFailedError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
)
from redis.asyncio import Redis

from geo.cells import point_to_cell
from infrastructure.kafka import (
    GPS_POSITIONS,
    GPS_POSITIONS_DLQ,
    GPS_POSITIONS_ENRICHED,
    create_consumer,
    create_producer,
    ensure_topics,
    produce_batches,
)
from infrastructure.outages import OUTAGE_ERRORS
from infrastructure.postgres import Conn, create_pool
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from ingest.devices import DeviceRegistry
from ingest.errors import IngestError, UndecodableMessage
from ingest.model import Position
from ingest.movement import FixInput, Movement, MovementTracker
from ingest.plans import PlanCache
from ingest.visit_lifecycle import OutboxRow, publish_outbox
from ingest.writers import EnrichedPosition, LiveState, PartitionKeeper, write_history_and_snapshot

log = logging.getLogger(__name__)

BAD_RECORD_RETRIES = 2
# After a broker restart that lost in-flight batches, the idempotent producer's sender stops
# for good with one of these; only a new producer (new producer id) can send again.
BROKEN_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (OutOfOrderSequenceNumber, ProducerFenced)


class DriverNotFound(IngestError, LookupError):
    code = "driver_not_found"


@dataclass
class WorkerStats:
    batches: int = 0
    consumed: int = 0
    stored: int = 0
    dead_lettered: int = 0
    retries: int = 0


@dataclass
class Enricher:
    """What handle_batch needs: database pool, device registry, Redis live state, producer."""

    settings: Settings
    pool: asyncpg.Pool
    devices: DeviceRegistry
    live: LiveState
    producer: AIOKafkaProducer
    movement: MovementTracker
    partitions: PartitionKeeper = field(default_factory=PartitionKeeper)
    stats: WorkerStats = field(default_factory=WorkerStats)

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
            await self.publish_outbox(conn, decisions.published)
        current = [e for e, ok in zip(enriched, live, strict=True) if ok]
        messages = [orjson.dumps(e.to_message()) for e in current]  # encoded once, used twice
        await self.live.move(current, messages)
        await produce_batches(
            self.producer,
            self.settings.kafka.topic(GPS_POSITIONS_ENRICHED),
            [(e.device.driver_id.encode(), m) for e, m in zip(current, messages, strict=True)],
        )
        return stored

    async def publish_outbox(self, conn: Conn, events: Sequence[OutboxRow]) -> None:
        """Publish events decided in a committed transaction, then drop them from the outbox.

        A crash in between leaves them in ``event_outbox``; ``flush_stale_outbox`` publishes
        them later (at least once; consumers deduplicate by event id).
        """
        await publish_outbox(conn, events, self._send)

    async def _send(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        await produce_batches(self.producer, topic, records)

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

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: BaseException) -> None:
        """Send a record that cannot be processed to the DLQ with the reason."""
        headers = [
            ("error", type(error).__name__.encode()),
            ("reason", str(error)[:1000].encode()),
            ("source", f"{record.topic}:{record.partition}:{record.offset}".encode()),
        ]
        await self.producer.send_and_wait(
            self.settings.kafka.topic(GPS_POSITIONS_DLQ),
            key=record.key,
            value=record.value,
            headers=headers,
        )
        self.stats.dead_lettered += 1
        log.warning("dead-lettered %s:%s: %s", record.partition, record.offset, error)


async def process_records(
    enricher: Enricher, records: Sequence[ConsumerRecord[bytes, bytes]]
) -> None:
    """Process one consumed batch to completion (or dead letters); return only when done."""
    positions: list[tuple[ConsumerRecord[bytes, bytes], Position]] = []
    for rec in records:
        try:
            positions.append((rec, Position.from_bytes(rec.value)))
        except UndecodableMessage as exc:
            await _dead_letter_reliably(enricher, rec, exc)
    if not positions:
        return
    failures = 0
    outage_attempts = 0  # per batch: a past outage must not slow the next recovery
    while True:
        try:
            enricher.stats.stored += await enricher.handle_batch([p for _, p in positions])
            return
        except OUTAGE_ERRORS as exc:
            enricher.stats.retries += 1
            outage_attempts += 1
            log.warning("dependency unavailable, retrying batch: %r", exc)
            await _renew_producer_if_broken(enricher, exc)
            await asyncio.sleep(min(0.25 * 2 ** min(outage_attempts, 4), 2.0))
        except Exception as exc:  # a bad record poisons the batch: isolate it
            failures += 1
            if failures <= BAD_RECORD_RETRIES:
                log.warning("batch failed (%r), retrying", exc)
                continue
            break
    for rec, pos in positions:
        await _process_one(enricher, rec, pos)


async def _process_one(
    enricher: Enricher, rec: ConsumerRecord[bytes, bytes], pos: Position
) -> None:
    while True:
        try:
            enricher.stats.stored += await enricher.handle_batch([pos])
            return
        except OUTAGE_ERRORS as exc:
            await _renew_producer_if_broken(enricher, exc)
            await asyncio.sleep(1.0)
        except Exception as exc:
            await _dead_letter_reliably(enricher, rec, exc)
            return


async def _dead_letter_reliably(
    enricher: Enricher, rec: ConsumerRecord[bytes, bytes], error: BaseException
) -> None:
    """Dead-letter a record, waiting out a Kafka outage: a record is never simply dropped."""
    while True:
        try:
            await enricher.dead_letter(rec, error)
            return
        except OUTAGE_ERRORS as exc:
            log.warning("cannot reach Kafka for the dead letter, retrying: %r", exc)
            await _renew_producer_if_broken(enricher, exc)
            await asyncio.sleep(1.0)


async def _renew_producer_if_broken(enricher: Enricher, exc: BaseException) -> None:
    """Replace a producer that can never send again (see BROKEN_PRODUCER_ERRORS).

    Found by tests/reliability/test_faults_under_load.py (Kafka restarted under load).
    """
    if not isinstance(exc, BROKEN_PRODUCER_ERRORS):
        return
    log.warning("kafka producer is unusable after a broker restart; starting a new one")
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await enricher.producer.stop()
    producer = create_producer(enricher.settings.kafka)
    while True:
        try:
            await producer.start()
            break
        except OUTAGE_ERRORS as start_exc:
            log.warning("new kafka producer cannot start yet: %r", start_exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            producer = create_producer(enricher.settings.kafka)
            await asyncio.sleep(1.0)
    enricher.producer = producer


async def consume(consumer: AIOKafkaConsumer, enricher: Enricher, stop: asyncio.Event) -> None:
    """getmany -> process -> commit, until stop is set."""
    last_outbox_check = time.monotonic()
    while not stop.is_set():
        if time.monotonic() - last_outbox_check > 30:
            last_outbox_check = time.monotonic()
            try:
                await enricher.flush_stale_outbox()
            except OUTAGE_ERRORS as exc:
                log.warning("outbox flush postponed: %r", exc)
        batches = await consumer.getmany(timeout_ms=500, max_records=2000)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        await process_records(enricher, records)
        enricher.stats.batches += 1
        enricher.stats.consumed += len(records)
        try:
            await consumer.commit()
        except CommitFailedError as exc:  # rebalanced meanwhile: the new owner replays, harmless
            log.warning("offset commit failed after rebalance: %s", exc)


async def _start_with_retry(start: object, what: str, stop: asyncio.Event) -> None:
    assert callable(start)
    delay = 0.5
    while not stop.is_set():
        try:
            await start()
            return
        except OUTAGE_ERRORS as exc:
            log.warning("%s not reachable yet (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def run_worker(settings: Settings, stop: asyncio.Event) -> WorkerStats:
    """Run one enrichment worker until stop is set; return its counters."""
    await _start_with_retry(lambda: ensure_topics(settings.kafka), "kafka", stop)
    pool: asyncpg.Pool | None = None
    while pool is None and not stop.is_set():
        try:
            pool = await create_pool(settings.pg, min_size=1, max_size=4)
        except OUTAGE_ERRORS as exc:
            log.warning("postgres not reachable yet (%r)", exc)
            await asyncio.sleep(1.0)
    if pool is None:
        return WorkerStats()
    redis: Redis = create_redis(settings.redis)
    producer = create_producer(settings.kafka)
    consumer = create_consumer(
        settings.kafka,
        GPS_POSITIONS,
        group_id=settings.kafka.enrichment_group,
        fetch_min_bytes=settings.enrichment.fetch_min_bytes,
        fetch_max_wait_ms=settings.enrichment.fetch_max_wait_ms,
    )
    plans = PlanCache(pool, ttl_s=settings.enrichment.plan_cache_ttl_s)
    enricher = Enricher(
        settings=settings,
        pool=pool,
        devices=DeviceRegistry(pool, max_entries=settings.ingest.device_cache_max),
        live=LiveState(
            redis,
            RedisKeys(settings.redis.key_prefix),
            retention_s=settings.live.latest_retention_s,
            prune_interval_s=settings.live.prune_interval_s,
        ),
        producer=producer,
        movement=MovementTracker(settings, plans),
    )
    try:
        await _start_with_retry(producer.start, "kafka producer", stop)
        await _start_with_retry(consumer.start, "kafka consumer", stop)
        await _start_with_retry(lambda: plans.listen(settings.pg.dsn()), "postgres listener", stop)
        await enricher.flush_stale_outbox(older_than_s=0)
        started = time.monotonic()
        log.info("enrichment worker consuming %s", settings.kafka.topic(GPS_POSITIONS))
        await consume(consumer, enricher, stop)
        log.info("worker stopping after %.0fs: %s", time.monotonic() - started, enricher.stats)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await enricher.producer.stop()  # a renewed one, maybe
        await plans.close()
        await redis.aclose()
        await pool.close()
    return enricher.stats
