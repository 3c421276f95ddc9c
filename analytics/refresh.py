"""Incremental refresh of the rollups and the history's partition maintenance.

Each rollup has a watermark (``analytics_watermarks``): a refresh re-materialises whole
buckets in ``[watermark - late_window, now)`` — delete, then insert from ``positions`` in one
transaction under an advisory lock — so it is idempotent, safe to run from several
processes, and folds in late fixes that arrive within the late window. Older late data is
folded in by ``refresh_range`` over an explicit range.

On TimescaleDB ``positions_1m`` is a continuous aggregate kept by its own policy; the runner
only calls ``refresh_continuous_aggregate`` for it on an explicit ``refresh_range``.

Run by ``fleetpulse maintain`` (once) or ``fleetpulse maintain --loop`` (every
``FLEETPULSE_ANALYTICS__REFRESH_INTERVAL_S``), see docs/analytics.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np

from geo.movement import DEFAULT_PARAMS, MovementParams, summarize_day
from infrastructure.migrate import history_backend
from infrastructure.postgres import Conn

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "sql"
DWELL_CAP_S = 300.0  # longer gaps between fixes are unknown time, not dwell
ROLLUPS = ("positions_1m", "cells_1h", "driver_daily_stats")
_BUCKET = {
    "positions_1m": timedelta(minutes=1),
    "cells_1h": timedelta(hours=1),
    "driver_daily_stats": timedelta(days=1),
}
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_LOCK_BASE = 7_316_220_600


@cache
def sql(name: str) -> str:
    """Return the text of ``analytics/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


def floor_time(t: datetime, width: timedelta) -> datetime:
    """Floor to the bucket start (origin 2000-01-01 UTC, as date_bin/time_bucket do)."""
    return _EPOCH + ((t - _EPOCH) // width) * width


@dataclass(frozen=True)
class RefreshResult:
    name: str
    start: datetime
    end: datetime
    rows: int


async def _refresh_daily(conn: Conn, start: datetime, end: datetime, params: MovementParams) -> int:
    """Recompute driver_daily_stats for the UTC days in [start, end)."""
    rows = 0
    day = start.date()
    while day < end.date():
        d0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
        await conn.execute("DELETE FROM driver_daily_stats WHERE day = $1", day)
        rows += await _insert_daily(conn, day, d0, d0 + timedelta(days=1), params)
        day += timedelta(days=1)
    return rows


async def _insert_daily(
    conn: Conn, day: date, d0: datetime, d1: datetime, params: MovementParams
) -> int:
    records = await conn.fetch(sql("day_positions"), d0, d1)
    visits = {r["driver_id"]: r for r in await conn.fetch(sql("day_visits"), day)}
    out = []
    i = 0
    while i < len(records):
        j = i
        driver = records[i]["driver_id"]
        while j < len(records) and records[j]["driver_id"] == driver:
            j += 1
        chunk = records[i:j]
        arr = np.array([(r["t"], r["lon"], r["lat"], r["speed"]) for r in chunk], dtype=float)
        s = summarize_day(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], params)
        v = visits.get(driver)
        out.append(
            (
                chunk[0]["tenant_id"],
                driver,
                day,
                s.positions,
                datetime.fromtimestamp(arr[0, 0], UTC),
                datetime.fromtimestamp(arr[-1, 0], UTC),
                s.distance_m,
                s.moving_s,
                s.idle_s,
                s.stopped_s,
                s.mean_speed_kmh,
                s.max_speed_kmh,
                s.trips,
                s.stops,
                int(v["planned"]) if v else 0,
                int(v["completed"]) if v else 0,
                (v["on_time"] / v["judged"]) if v and v["judged"] else None,
            )
        )
        i = j
    if out:
        await conn.copy_records_to_table("driver_daily_stats", records=out)
    return len(out)


async def refresh_range(
    conn: Conn,
    name: str,
    start: datetime,
    end: datetime,
    *,
    params: MovementParams = DEFAULT_PARAMS,
    chunk: timedelta = timedelta(days=1),
) -> RefreshResult:
    """Re-materialise rollup ``name`` for the whole buckets covering [start, end).

    Idempotent: the buckets are deleted and rebuilt from ``positions`` in one transaction
    per chunk, under an advisory lock per rollup.
    """
    if name not in ROLLUPS:
        raise ValueError(f"unknown rollup {name!r}")
    width = _BUCKET[name]
    start = floor_time(start, width)
    if floor_time(end, width) != end:
        end = floor_time(end, width) + width
    if name == "positions_1m" and await history_backend(conn) == "timescale":
        await conn.execute("CALL refresh_continuous_aggregate('positions_1m', $1, $2)", start, end)
        return RefreshResult(name, start, end, -1)
    rows = 0
    lo = start
    while lo < end:
        hi = min(lo + chunk, end)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_BASE + ROLLUPS.index(name))
            if name == "driver_daily_stats":
                rows += await _refresh_daily(conn, lo, hi, params)
            else:
                await conn.execute(f"DELETE FROM {name} WHERE bucket >= $1 AND bucket < $2", lo, hi)
                args: tuple[object, ...] = (lo, hi)
                if name == "cells_1h":
                    args = (lo, hi, DWELL_CAP_S)
                status = await conn.execute(sql(f"refresh_{name}"), *args)
                rows += int(status.split()[-1])
        lo = hi
    return RefreshResult(name, start, end, rows)


async def refresh(
    conn: Conn,
    *,
    now: datetime | None = None,
    late_window: timedelta = timedelta(hours=2),
    names: tuple[str, ...] = ROLLUPS,
    params: MovementParams = DEFAULT_PARAMS,
) -> list[RefreshResult]:
    """Bring every rollup up to ``now``, re-doing the late window; advance the watermarks."""
    now = now or datetime.now(UTC)
    results = []
    for name in names:
        wm = await conn.fetchval("SELECT watermark FROM analytics_watermarks WHERE name = $1", name)
        if wm is None:
            wm = await conn.fetchval("SELECT min(fix_time) FROM positions")
            if wm is None:
                continue
            start = wm
        else:
            start = min(wm, now) - late_window
        result = await refresh_range(conn, name, start, now, params=params)
        await conn.execute(
            """INSERT INTO analytics_watermarks (name, watermark, refreshed_at)
               VALUES ($1, $2, now())
               ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark,
                   refreshed_at = now()""",
            name,
            now,
        )
        results.append(result)
    return results


async def maintain_partitions(
    conn: Conn, *, today: date, retention_days: int, ahead_days: int
) -> tuple[int, int]:
    """Create partitions up to ``ahead_days`` ahead and drop those older than the retention.

    Returns (created, dropped). On TimescaleDB both are no-ops (chunks and the retention
    policy are Timescale's).
    """
    created = await conn.fetchval(
        "SELECT fleetpulse_ensure_position_partitions($1, $2)",
        today - timedelta(days=1),
        today + timedelta(days=ahead_days),
    )
    dropped = await conn.fetchval(
        "SELECT fleetpulse_drop_position_partitions($1)", today - timedelta(days=retention_days)
    )
    return int(created), int(dropped)


async def run_maintenance(
    conn: Conn,
    *,
    retention_days: int,
    ahead_days: int,
    late_window: timedelta,
    now: datetime | None = None,
) -> dict[str, object]:
    """One maintenance pass: partitions, retention, rollup refresh; returns a summary."""
    now = now or datetime.now(UTC)
    created, dropped = await maintain_partitions(
        conn, today=now.date(), retention_days=retention_days, ahead_days=ahead_days
    )
    results = await refresh(conn, now=now, late_window=late_window)
    return {
        "partitionsCreated": created,
        "partitionsDropped": dropped,
        "refreshed": {r.name: r.rows for r in results},
    }


async def maintenance_loop(
    conn: Conn,
    stop: asyncio.Event,
    *,
    interval_s: float,
    retention_days: int,
    ahead_days: int,
    late_window: timedelta,
) -> None:
    """Run ``run_maintenance`` every ``interval_s`` until ``stop`` is set; log failures."""
    while not stop.is_set():
        try:
            summary = await run_maintenance(
                conn, retention_days=retention_days, ahead_days=ahead_days, late_window=late_window
            )
            log.info("maintenance: %s", summary)
        except Exception:  # keep looping: the next pass re-does the late window
            log.exception("maintenance pass failed")
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass
