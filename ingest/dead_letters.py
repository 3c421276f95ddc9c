"""Inspect and replay ``gps.positions.dlq``.

A dead letter is the original record (key and bytes) with headers ``error``, ``reason`` and
``source``. Listing reads the newest records of every partition; a record belongs to the
tenant named in its value, and records whose tenant cannot be read (undecodable bytes) are
left to operators with Kafka's own tools: no tenant admin may see another tenant's data.
Replaying produces the original bytes again to ``gps.positions``; the idempotent sinks make a
second replay harmless.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition

from infrastructure.kafka import GPS_POSITIONS, GPS_POSITIONS_DLQ, create_reader, offset_range
from infrastructure.postgres import Conn
from infrastructure.settings import KafkaSettings
from ingest.errors import IngestError
from ingest.producer import Publisher


class DeadLetterNotFound(IngestError, LookupError):
    code = "not_found"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    tenant_id: str | None
    error: str
    reason: str
    source: str
    value: bytes

    def to_json(self) -> dict[str, Any]:
        try:
            decoded: Any = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            decoded = None
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp_ms,
            "key": self.key,
            "error": self.error,
            "reason": self.reason,
            "source": self.source,
            "value": decoded,
            "valueBase64": None if decoded is not None else base64.b64encode(self.value).decode(),
        }


def _tenant_of(value: bytes | None) -> str | None:
    try:
        raw = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    tenant = raw.get("tenant_id") if isinstance(raw, dict) else None
    return tenant if isinstance(tenant, str) else None


def _to_letter(rec: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (rec.headers or ())}
    return DeadLetter(
        partition=rec.partition,
        offset=rec.offset,
        timestamp_ms=rec.timestamp,
        key=rec.key.decode(errors="replace") if rec.key is not None else None,
        tenant_id=_tenant_of(rec.value),
        error=headers.get("error", ""),
        reason=headers.get("reason", ""),
        source=headers.get("source", ""),
        value=rec.value or b"",
    )


async def _read(
    settings: KafkaSettings, wanted: dict[int, tuple[int, int]]
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read [start, end) offsets of the given partitions of the DLQ topic."""
    topic = settings.topic(GPS_POSITIONS_DLQ)
    tps = [TopicPartition(topic, p) for p in wanted if wanted[p][0] < wanted[p][1]]
    if not tps:
        # nothing to read; a reader started and stopped with nothing assigned is cancelled
        # inside aiokafka, which answered an empty dead-letter list with a 500
        return []
    consumer = create_reader(settings)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.start()
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, wanted[tp.partition][0])
        remaining = set(tps)
        deadline = asyncio.get_running_loop().time() + 10
        while remaining and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=300)
            for tp, recs in batch.items():
                end = wanted[tp.partition][1]
                records += [r for r in recs if r.offset < end]
            # Done with a partition once its position reached the end we asked for (offsets
            # may have gaps, so the position says it, not the last record's offset).
            for tp in list(remaining):
                if await consumer.position(tp) >= wanted[tp.partition][1]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def list_dead_letters(
    settings: KafkaSettings, tenant_id: str, *, limit: int = 100
) -> list[DeadLetter]:
    """The newest dead letters of one tenant (newest first), at most limit per partition."""
    topic = settings.topic(GPS_POSITIONS_DLQ)
    ranges = await offset_range(settings, topic, sorted(await _describe(settings, topic)))
    wanted = {p: (max(begin, end - limit), end) for p, (begin, end) in ranges.items()}
    letters = [_to_letter(r) for r in await _read(settings, wanted)]
    mine = [d for d in letters if d.tenant_id == tenant_id]
    return sorted(mine, key=lambda d: (d.timestamp_ms, d.partition, d.offset), reverse=True)


async def _describe(settings: KafkaSettings, topic: str) -> set[int]:
    from infrastructure.kafka import admin_client

    admin = admin_client(settings)
    try:
        await admin.start()
        [meta] = await admin.describe_topics([topic])
        return {p["partition"] for p in meta["partitions"]}
    finally:
        await admin.close()


async def get_dead_letter(
    settings: KafkaSettings, tenant_id: str, partition: int, offset: int
) -> DeadLetter:
    """One dead letter of the tenant; DeadLetterNotFound otherwise (also for other tenants')."""
    if partition < 0 or offset < 0:
        raise DeadLetterNotFound("dead letter not found")
    parts = await _describe(settings, settings.topic(GPS_POSITIONS_DLQ))
    if partition not in parts:
        raise DeadLetterNotFound("dead letter not found")
    [(begin, end)] = (
        await offset_range(settings, settings.topic(GPS_POSITIONS_DLQ), [partition])
    ).values()
    if not begin <= offset < end:
        raise DeadLetterNotFound("dead letter not found")
    [rec] = await _read(settings, {partition: (offset, offset + 1)}) or [None]
    if rec is None:
        raise DeadLetterNotFound("dead letter not found")
    letter = _to_letter(rec)
    if letter.tenant_id != tenant_id:
        raise DeadLetterNotFound("dead letter not found")
    return letter


async def replay(publisher: Publisher, letter: DeadLetter) -> None:
    """Produce the original record to gps.positions again (acks=all)."""
    await publisher.publish(GPS_POSITIONS, [((letter.key or "").encode(), letter.value)])


async def record_replay(
    conn: Conn, tenant_id: str, partition: int, offset: int, replayed_by: uuid.UUID
) -> None:
    """Remember that a user of the tenant replayed this dead letter."""
    await conn.execute(
        """INSERT INTO dead_letter_replays (topic, partition, "offset", tenant_id, replayed_by)
           VALUES ($1, $2, $3, $4, $5)""",
        GPS_POSITIONS_DLQ,
        partition,
        offset,
        tenant_id,
        replayed_by,
    )


async def replay_times(conn: Conn, tenant_id: str) -> dict[tuple[int, int], datetime]:
    """When each of the tenant's dead letters was last replayed: {(partition, offset): at}."""
    rows = await conn.fetch(
        """SELECT partition, "offset", max(replayed_at) AS at FROM dead_letter_replays
           WHERE topic = $1 AND tenant_id = $2 GROUP BY partition, "offset\"""",
        GPS_POSITIONS_DLQ,
        tenant_id,
    )
    return {(r["partition"], r["offset"]): r["at"] for r in rows}
