"""The consumer loop of every consumer-group member (enrichment worker, CDC consumer).

``getmany()`` -> ``handle(records)`` -> commit offsets. ``handle`` returns only when the
batch is written or dead-lettered, so a crash replays it and the idempotent sinks make the
replay harmless. While a dependency is away (``OUTAGE_ERRORS``) a step is retried and nothing
is committed; a record that cannot be processed goes to its dead-letter topic with the reason
(headers ``error``, ``reason``, ``source``) and the stream goes on. Producing goes through
one ``Publisher`` (acks=all, a broken producer replaced), the dead letters included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from redis.asyncio import Redis

from infrastructure.kafka import create_consumer, ensure_topics
from infrastructure.outages import OUTAGE_ERRORS
from infrastructure.postgres import create_pool
from infrastructure.redis import create_redis
from infrastructure.settings import Settings
from ingest.producer import Publisher

log = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
T = TypeVar("T")


@dataclass
class LoopStats:
    """What every consumer counts; each consumer's stats add their own."""

    batches: int = 0
    consumed: int = 0
    dead_lettered: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ConsumerParts:
    """The connections a consumer process holds while it runs (closed by ``consumer_process``)."""

    pool: asyncpg.Pool
    redis: Redis
    publisher: Publisher
    consumer: AIOKafkaConsumer


async def start_with_retry(
    start: Callable[[], Awaitable[object]], what: str, stop: asyncio.Event
) -> bool:
    """Call ``start`` until it gets through an outage; False if stop was set first."""
    delay = 0.5
    while not stop.is_set():
        try:
            await start()
            return True
        except OUTAGE_ERRORS as exc:
            log.warning("%s not reachable yet (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
    return False


async def until_available(step: Callable[[], Awaitable[T]], stats: LoopStats, what: str) -> T:
    """Run ``step`` again while a dependency is away; the backoff restarts with every call,
    so a past outage does not slow the next recovery."""
    attempts = 0
    while True:
        try:
            return await step()
        except OUTAGE_ERRORS as exc:
            stats.retries += 1
            attempts += 1
            log.warning("dependency unavailable, retrying %s: %r", what, exc)
            await asyncio.sleep(min(0.25 * 2 ** min(attempts, 4), 2.0))


@dataclass
class DeadLetters:
    """Sends records that cannot be processed to one dead-letter topic (physical name)."""

    publisher: Publisher
    topic: str
    stats: LoopStats

    async def send(self, record: Record, error: BaseException) -> None:
        """Dead-letter a record with the reason, waiting out a Kafka outage: never dropped."""
        headers = [
            ("error", type(error).__name__.encode()),
            ("reason", str(error)[:1000].encode()),
            ("source", f"{record.topic}:{record.partition}:{record.offset}".encode()),
        ]
        while True:
            try:
                await self.publisher.send_to(self.topic, record.key, record.value, headers)
                break
            except OUTAGE_ERRORS as exc:
                log.warning("cannot reach Kafka for the dead letter, retrying: %r", exc)
                await asyncio.sleep(1.0)
        self.stats.dead_lettered += 1
        log.warning(
            "dead-lettered %s:%s:%s: %s", record.topic, record.partition, record.offset, error
        )


@asynccontextmanager
async def consumer_process(
    settings: Settings,
    stop: asyncio.Event,
    *topics: str,
    group_id: str,
    pool_max_size: int,
    fetch_min_bytes: int = 1,
    fetch_max_wait_ms: int = 500,
) -> AsyncIterator[ConsumerParts | None]:
    """Connect a consumer-group member (topics, PostgreSQL, Redis, a publisher, the consumer),
    each retried until it answers; None if stop was set first. Closes them all on exit."""
    if not await start_with_retry(lambda: ensure_topics(settings.kafka), "kafka", stop):
        yield None
        return
    pool: asyncpg.Pool | None = None
    while pool is None and not stop.is_set():
        try:
            pool = await create_pool(settings.pg, min_size=1, max_size=pool_max_size)
        except OUTAGE_ERRORS as exc:
            log.warning("postgres not reachable yet (%r)", exc)
            await asyncio.sleep(1.0)
    if pool is None:
        yield None
        return
    redis: Redis = create_redis(settings.redis)
    publisher = Publisher(settings.kafka)
    consumer = create_consumer(
        settings.kafka,
        *topics,
        group_id=group_id,
        fetch_min_bytes=fetch_min_bytes,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    try:
        await publisher.start()  # connects now, or keeps trying in the background
        started = await start_with_retry(consumer.start, "kafka consumer", stop)
        yield ConsumerParts(pool, redis, publisher, consumer) if started else None
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await publisher.stop()
        await redis.aclose()
        await pool.close()


async def records_waiting(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """Records not yet processed per assigned partition: high watermark - committed offset
    (a partition with no commit yet counts from 0: the group reads from the earliest)."""
    waiting: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:  # nothing fetched from it yet
            continue
        committed = await consumer.committed(tp)
        waiting[tp] = max(0, high - (committed or 0))
    return waiting


async def report_every(
    interval_s: float, report: Callable[[], Awaitable[None]], stop: asyncio.Event
) -> None:
    """Call ``report`` every ``interval_s`` until stop is set (metrics: a failure is logged)."""
    while not stop.is_set():
        try:
            await report()
        except Exception as exc:  # noqa: BLE001 - a gauge left stale must not stop the process
            log.debug("metrics report failed: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def consume(
    consumer: AIOKafkaConsumer,
    handle: Callable[[Sequence[Record]], Awaitable[None]],
    stop: asyncio.Event,
    stats: LoopStats,
    *,
    max_records: int,
    timeout_ms: int,
    housekeeping: Callable[[], Awaitable[object]] | None = None,
    housekeeping_interval_s: float = 30.0,
) -> None:
    """getmany -> handle -> commit, until stop is set.

    ``housekeeping`` runs between batches every ``housekeeping_interval_s``; an outage
    postpones it to the next time.
    """
    last_housekeeping = time.monotonic()
    while not stop.is_set():
        if housekeeping is not None and (
            time.monotonic() - last_housekeeping > housekeeping_interval_s
        ):
            last_housekeeping = time.monotonic()
            try:
                await housekeeping()
            except OUTAGE_ERRORS as exc:
                log.warning("housekeeping postponed: %r", exc)
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        records = [r for part in batches.values() for r in part]
        if not records:
            continue
        await handle(records)
        stats.batches += 1
        stats.consumed += len(records)
        try:
            await consumer.commit()
        except CommitFailedError as exc:  # rebalanced meanwhile: the new owner replays, harmless
            log.warning("offset commit failed after rebalance: %s", exc)
