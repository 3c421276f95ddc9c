"""CDC lag: per table (source commit -> applied here) and Kafka consumer lag per partition.

``lag_snapshot()`` builds the ``CdcLagSnapshot`` payload that ``GET /api/sync/lag`` returns and
the socket.io gateway broadcasts as ``cdc:lag`` to admins every 5 s.

A table's lag is that of its last applied event (applied time - source commit time), except
while events wait in Kafka: then the cache is at least as stale as the time since the last
apply, and that is reported. The source commit time comes from the binlog event header, which
MariaDB and MySQL write with one-second resolution, so a lag reads up to 1 s high.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Literal

from infrastructure.kafka import CDC_TABLES, consumer_group_lag
from infrastructure.postgres import Conn
from infrastructure.settings import Settings

LagStatus = Literal["healthy", "warning", "degraded", "critical"]
# The seed's thresholds, in seconds: < 2 healthy, 2-5 warning, 5-10 degraded, > 10 critical.
THRESHOLDS_S: tuple[tuple[float, LagStatus], ...] = (
    (2.0, "healthy"),
    (5.0, "warning"),
    (10.0, "degraded"),
)
_RANK: dict[LagStatus, int] = {"healthy": 0, "warning": 1, "degraded": 2, "critical": 3}


def lag_status(lag_ms: float | None) -> LagStatus:
    """Classify a lag by the seed's thresholds (no lag measured yet counts as healthy)."""
    if lag_ms is None:
        return "healthy"
    for limit_s, status in THRESHOLDS_S:
        if lag_ms < limit_s * 1000:
            return status
    return "critical"


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") if t is not None else None


async def sync_rows(conn: Conn) -> dict[str, dict[str, Any]]:
    """Return sync_state per CDC table (every table listed, zeros when nothing arrived)."""
    rows = await conn.fetch(
        """SELECT table_name, last_event_at, last_source_ts, last_source_pos,
                  events_processed, events_skipped, errors, last_error, last_lag_ms
           FROM sync_state WHERE table_name = ANY($1::text[])""",
        list(CDC_TABLES),
    )
    found = {r["table_name"]: r for r in rows}
    out: dict[str, dict[str, Any]] = {}
    for table in CDC_TABLES:
        r = found.get(table)
        out[table] = {
            "table": table,
            "eventsProcessed": r["events_processed"] if r else 0,
            "eventsSkipped": r["events_skipped"] if r else 0,
            "errors": r["errors"] if r else 0,
            "lastError": r["last_error"] if r else None,
            "lastSourceTs": _iso(r["last_source_ts"]) if r else None,
            "lastAppliedAt": _iso(r["last_event_at"]) if r else None,
            "lastSourcePosition": r["last_source_pos"] if r else None,
            "lastLagMs": r["last_lag_ms"] if r else None,
            "_applied": r["last_event_at"] if r else None,
        }
    return out


async def kafka_lag(settings: Settings) -> list[dict[str, Any]]:
    """Return the cdc consumer group's lag per topic partition (missing topics omitted)."""

    async def one(table: str) -> list[dict[str, Any]]:
        topic = f"cdc.{table}"
        try:
            lag = await consumer_group_lag(settings.kafka, topic, settings.cdc.consumer_group)
        except LookupError:
            return []
        return [
            {"topic": settings.kafka.topic(topic), "table": table, "partition": p, "lag": n}
            for p, n in sorted(lag.items())
        ]

    parts = await asyncio.gather(*(one(t) for t in CDC_TABLES))
    return [row for part in parts for row in part]


async def lag_snapshot(conn: Conn, settings: Settings) -> dict[str, Any]:
    """Build the CdcLagSnapshot payload (tables, Kafka partitions, totals, overall status)."""
    now = datetime.now(UTC)
    tables = await sync_rows(conn)
    try:
        partitions = await asyncio.wait_for(kafka_lag(settings), 5.0)
        kafka_ok = True
    except Exception:  # noqa: BLE001 - Kafka away: report it, keep the table figures
        partitions, kafka_ok = [], False
    pending: dict[str, int] = {}
    for p in partitions:
        pending[p["table"]] = pending.get(p["table"], 0) + p["lag"]
    out_tables = []
    for table, row in tables.items():
        applied: datetime | None = row.pop("_applied")
        lag_ms = row["lastLagMs"]
        waiting = pending.get(table, 0)
        if waiting and applied is not None:
            lag_ms = max(lag_ms or 0.0, (now - applied).total_seconds() * 1000)
        row["pendingMessages"] = waiting
        row["lagMs"] = round(lag_ms, 1) if lag_ms is not None else None
        row["status"] = lag_status(lag_ms)
        out_tables.append(row)
    lags = [t["lagMs"] for t in out_tables if t["lagMs"] is not None]
    worst = max((t["status"] for t in out_tables), key=lambda s: _RANK[s], default="healthy")
    return {
        "timestamp": _iso(now),
        "status": worst,
        "tables": out_tables,
        "kafka": {"available": kafka_ok, "partitions": partitions},
        "totals": {
            "eventsProcessed": sum(t["eventsProcessed"] for t in out_tables),
            "errors": sum(t["errors"] for t in out_tables),
            "maxLagMs": max(lags) if lags else None,
            "avgLagMs": round(sum(lags) / len(lags), 1) if lags else None,
            "kafkaLag": sum(p["lag"] for p in partitions),
        },
        "thresholdsSeconds": {"warning": 2, "degraded": 5, "critical": 10},
    }
