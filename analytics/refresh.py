"""Refresh of the movement aggregates and the history's retention, on either backend.

The aggregates (0017): ``positions_1m`` per driver-minute, ``driver_daily_motion`` per
driver-day stacked on it, ``cells_1h`` per tenant-hour-cell; ``driver_daily_stats`` is a view
joining the daily one with the day's visits. They sum the per-fix labels the enrichment worker
stores (``geo.movement.step_motion``), so both backends compute them with plain GROUP BYs:

* **TimescaleDB**: continuous aggregates. Refresh policies (kept in step with the settings by
  ``sync_policies``) refresh ``[now - late window, now - 1 min)`` every refresh interval;
  ``refresh_range`` calls ``refresh_continuous_aggregate`` for an explicit range.
* **plain PostgreSQL**: tables with a watermark each (``analytics_watermarks``); a refresh
  re-materialises whole buckets in ``[watermark - late_window, now)`` — delete, then insert
  the same SELECT as the continuous aggregate, one transaction per day chunk under an
  advisory lock — so it is idempotent, safe from several processes, and folds in late fixes
  within the late window. Older late data: ``refresh_range`` over that range.

Run by ``fleetpulse maintain`` (once) or ``fleetpulse maintain --loop`` (every
``FLEETPULSE_ANALYTICS__REFRESH_INTERVAL_S``), see docs/analytics.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from infrastructure.metrics import (
    AGGREGATE_REFRESH_LAST_SUCCESS,
    AGGREGATE_REFRESH_ROWS,
    AGGREGATE_REFRESH_SECONDS,
    MAINTENANCE_PASSES,
)
from infrastructure.migrate import history_backend
from infrastructure.postgres import Conn
from infrastructure.settings import AnalyticsSettings, EtaSettings

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).parent / "sql"
# In refresh order: driver_daily_motion is stacked on positions_1m.
ROLLUPS = ("positions_1m", "driver_daily_motion", "cells_1h", "edge_speeds_1h")
_BUCKET = {
    "positions_1m": timedelta(minutes=1),
    "driver_daily_motion": timedelta(days=1),
    "cells_1h": timedelta(hours=1),
    "edge_speeds_1h": timedelta(hours=1),
}
# where a first refresh starts: the oldest row of the aggregate's source
_FIRST = {
    "positions_1m": "SELECT min(fix_time) FROM positions",
    "driver_daily_motion": "SELECT min(fix_time) FROM positions",
    "cells_1h": "SELECT min(fix_time) FROM positions",
    "edge_speeds_1h": "SELECT min(entered_at) FROM edge_traversals",
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
    rows: int  # rows materialised; -1 on TimescaleDB, which does not say


async def refresh_range(
    conn: Conn,
    name: str,
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta = timedelta(days=1),
) -> RefreshResult:
    """Re-materialise aggregate ``name`` for the whole buckets covering [start, end).

    Idempotent. On TimescaleDB this is ``refresh_continuous_aggregate`` (outside any
    transaction); on plain PostgreSQL the buckets are deleted and rebuilt from their source
    in one transaction per chunk, under an advisory lock per aggregate.
    """
    if name not in ROLLUPS:
        raise ValueError(f"unknown rollup {name!r}")
    width = _BUCKET[name]
    start = floor_time(start, width)
    if floor_time(end, width) != end:
        end = floor_time(end, width) + width
    if start >= end:  # nothing to do (a first pass whose source begins after `now`)
        return RefreshResult(name, start, end, 0)
    if await history_backend(conn) == "timescale":
        # asyncpg cannot infer the type of a bare $n in CALL; the casts say it
        await conn.execute(
            f"CALL refresh_continuous_aggregate('{name}', $1::timestamptz, $2::timestamptz)",
            start,
            end,
        )
        return RefreshResult(name, start, end, -1)
    rows = 0
    lo = start
    while lo < end:
        hi = min(lo + chunk, end)
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_BASE + ROLLUPS.index(name))
            await conn.execute(f"DELETE FROM {name} WHERE bucket >= $1 AND bucket < $2", lo, hi)
            status = await conn.execute(sql(f"refresh_{name}"), lo, hi)
            rows += int(status.split()[-1])
        lo = hi
    return RefreshResult(name, start, end, rows)


async def refresh(
    conn: Conn,
    *,
    now: datetime | None = None,
    late_window: timedelta = timedelta(hours=2),
    names: tuple[str, ...] = ROLLUPS,
) -> list[RefreshResult]:
    """Bring every aggregate up to ``now``, re-doing the late window; advance the watermarks.

    The plain backend's incremental pass. On TimescaleDB the policies do this by themselves;
    calling it there refreshes the same window explicitly (tests pin ``now``).
    """
    now = now or datetime.now(UTC)
    results = []
    for name in names:
        wm = await conn.fetchval("SELECT watermark FROM analytics_watermarks WHERE name = $1", name)
        if wm is None:
            wm = await conn.fetchval(_FIRST[name])
            if wm is None:
                continue
            start = wm
        else:
            start = min(wm, now) - late_window
        started = time.perf_counter()
        result = await refresh_range(conn, name, start, now)
        await conn.execute(
            """INSERT INTO analytics_watermarks (name, watermark, refreshed_at)
               VALUES ($1, $2, now())
               ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark,
                   refreshed_at = now()""",
            name,
            now,
        )
        AGGREGATE_REFRESH_SECONDS.labels(name).observe(time.perf_counter() - started)
        AGGREGATE_REFRESH_LAST_SUCCESS.labels(name).set(time.time())
        AGGREGATE_REFRESH_ROWS.labels(name).inc(max(result.rows, 0))  # -1: TimescaleDB
        results.append(result)
    return results


async def _jobs(conn: Conn) -> dict[tuple[str, str], dict[str, Any]]:
    """Return TimescaleDB's policy jobs by (relation, proc name), intervals as timedeltas."""
    rows = await conn.fetch(
        """SELECT j.hypertable_name AS relation, j.proc_name, j.schedule_interval,
                  (j.config->>'drop_after')::interval AS drop_after,
                  (j.config->>'compress_after')::interval AS compress_after,
                  (j.config->>'start_offset')::interval AS start_offset,
                  (j.config->>'end_offset')::interval AS end_offset
           FROM timescaledb_information.jobs j  -- a continuous aggregate's: its view name
           WHERE j.proc_schema = '_timescaledb_functions'"""
    )
    return {(r["relation"], r["proc_name"]): dict(r) for r in rows}


async def sync_policies(conn: Conn, cfg: AnalyticsSettings) -> list[str]:
    """Make TimescaleDB's retention, compression and refresh jobs match the settings.

    Returns the jobs (re)created: none when all matched, and always none on plain
    PostgreSQL, whose retention is ``maintain_partitions`` and refresh is ``refresh``.
    """
    if await history_backend(conn) != "timescale":
        return []
    jobs = await _jobs(conn)
    late = timedelta(seconds=cfg.late_window_s)
    every = timedelta(seconds=cfg.refresh_interval_s)
    wanted: list[tuple[str, str, dict[str, timedelta | None], str, str, tuple[timedelta, ...]]] = [
        (
            "positions",
            "policy_retention",
            {"drop_after": timedelta(days=cfg.retention_days)},
            "remove_retention_policy",
            "SELECT add_retention_policy('positions', $1::interval)",
            (timedelta(days=cfg.retention_days),),
        ),
        (
            "positions",
            "policy_compression",
            {"compress_after": timedelta(days=cfg.compress_after_days)},
            "remove_compression_policy",
            "SELECT add_compression_policy('positions', $1::interval)",
            (timedelta(days=cfg.compress_after_days),),
        ),
    ]
    for name in ROLLUPS:
        # up to the present (no end offset), as the plain refresh does: the bucket in
        # progress is materialised and redone while it fills; the window holds 3 buckets
        start = max(late, 3 * _BUCKET[name])
        wanted.append(
            (
                name,
                "policy_refresh_continuous_aggregate",
                {"start_offset": start, "end_offset": None, "schedule_interval": every},
                "remove_continuous_aggregate_policy",
                f"""SELECT add_continuous_aggregate_policy('{name}', start_offset => $1::interval,
                        end_offset => NULL, schedule_interval => $2::interval)""",
                (start, every),
            )
        )
    changed = []
    for relation, proc, config, remove, add, args in wanted:
        job = jobs.get((relation, proc))
        if job is not None and all(job[k] == v for k, v in config.items()):
            continue
        if job is not None:
            await conn.execute(f"SELECT {remove}('{relation}', if_exists => true)")
        await conn.execute(add, *args)
        changed.append(f"{relation}:{proc}")
    return changed


async def maintain_partitions(
    conn: Conn, *, today: date, retention_days: int, ahead_days: int
) -> tuple[int, int]:
    """Create partitions up to ``ahead_days`` ahead and drop those older than the retention.

    Returns (created, dropped). On TimescaleDB both are no-ops (chunks are Timescale's, and
    so is retention: ``sync_policies``).
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
    cfg: AnalyticsSettings,
    *,
    now: datetime | None = None,
    eta: EtaSettings | None = None,
) -> dict[str, object]:
    """One maintenance pass; returns a summary.

    With ``eta``, first the history's map matching (``analytics.matching``) up to
    ``now - match_settle_s``, whose traversals the edge_speeds_1h refresh then sums.
    Plain PostgreSQL: partitions ahead, retention, the aggregates' incremental refresh.
    TimescaleDB: the background jobs do all three; the pass keeps their settings in step and
    refreshes the late window once too.
    """
    now = now or datetime.now(UTC)
    late = timedelta(seconds=cfg.late_window_s)
    matched: list[dict[str, object]] = []
    if eta is not None:
        from analytics.matching import match_history

        passes = await match_history(
            conn,
            now=now,
            settle=timedelta(seconds=eta.match_settle_s),
            back_to=timedelta(weeks=eta.learn_weeks),
        )
        matched = [p.as_dict() for p in passes]
    if await history_backend(conn) == "timescale":
        changed = await sync_policies(conn, cfg)
        # the policies refresh by themselves; this pass does the same window at once, so a
        # single `fleetpulse maintain` leaves both backends current (cheap when nothing changed)
        results = await refresh(conn, now=now, late_window=late)
        return {
            "backend": "timescale",
            "policiesChanged": changed,
            "matched": matched,
            "refreshed": {r.name: r.rows for r in results},
        }
    created, dropped = await maintain_partitions(
        conn,
        today=now.date(),
        retention_days=cfg.retention_days,
        ahead_days=cfg.partitions_ahead_days,
    )
    results = await refresh(conn, now=now, late_window=late)
    return {
        "backend": "plain",
        "partitionsCreated": created,
        "partitionsDropped": dropped,
        "matched": matched,
        "refreshed": {r.name: r.rows for r in results},
    }


async def maintenance_loop(
    conn: Conn, stop: asyncio.Event, cfg: AnalyticsSettings, eta: EtaSettings | None = None
) -> None:
    """Run ``run_maintenance`` every refresh interval until ``stop`` is set; log failures."""
    while not stop.is_set():
        try:
            log.info("maintenance: %s", await run_maintenance(conn, cfg, eta=eta))
            MAINTENANCE_PASSES.labels("ok").inc()
        except Exception:  # keep looping: the next pass re-does the late window
            MAINTENANCE_PASSES.labels("failed").inc()
            log.exception("maintenance pass failed")
        try:
            await asyncio.wait_for(stop.wait(), cfg.refresh_interval_s)
        except TimeoutError:
            pass
