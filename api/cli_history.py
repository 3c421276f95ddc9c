"""Writing the simulator's past (``simulator.history``) into the history, quickly.

The storage path is the one synthetic history already takes (``analytics.generate``): COPY
into ``positions`` with the enrichment worker's per-fix movement labels
(``geo.movement.label_fixes``), daily partitions ensured first. Going through the receivers,
Kafka and the worker would be the same rows hours later: 4 weeks of 20 drivers is ~3 million
fixes, an hour and more of ingest at the simulator's real-time pace.

Resumable: a driver-day that already has fixes in the history is skipped, so a second run
only fills what is missing (COPY does not skip duplicates).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from analytics.generate import DriverSpec, Track, track_records, write_tracks
from analytics.matching import MatchSummary, match_range
from analytics.refresh import refresh_range
from infrastructure.postgres import Conn
from infrastructure.progress import Progress
from simulator.history import DriverDay, HistoryConfig, history_days, history_plan
from simulator.network import RoadNetwork, load_network
from simulator.run import ProgressFactory
from simulator.setup import ensure_drivers, login

COPY_BATCH_ROWS = 100_000
# the aggregates fed by positions (the learned speeds' own come from the map matching)
POSITION_ROLLUPS = ("positions_1m", "driver_daily_motion", "cells_1h")


@dataclass
class HistoryResult:
    driver_days: int = 0
    skipped: int = 0
    fixes: int = 0
    seconds: float = 0.0
    refresh_s: float = 0.0  # of seconds: refreshing the rollups over the range
    first: datetime | None = None
    last: datetime | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "driver_days": self.driver_days,
            "skipped_already_stored": self.skipped,
            "fixes": self.fixes,
            "seconds": round(self.seconds, 1),
            "refresh_s": round(self.refresh_s, 1),
            "fixes_per_s": round(self.fixes / self.seconds) if self.seconds > 0 else None,
            "first_fix": None if self.first is None else self.first.isoformat(),
            "last_fix": None if self.last is None else self.last.isoformat(),
        }


async def ensure_history_drivers(
    api: httpx.AsyncClient, cfg: HistoryConfig, *, email: str, password: str, tenant: str
) -> dict[str, str]:
    """The fleet's drivers (device id -> driver id), created through the API if missing."""
    headers = await login(api, email, password, tenant)
    devices = [cfg.fleet.device_id(i) for i in range(cfg.fleet.drivers)]
    return await ensure_drivers(api, headers, devices)


async def stored_driver_days(
    conn: Conn, driver_ids: list[str], first: date, end: date, zone: ZoneInfo
) -> set[tuple[str, date]]:
    """(driver id, local day) pairs of the range that already have fixes."""
    lo = datetime.combine(first, datetime.min.time(), zone) - timedelta(days=1)
    hi = datetime.combine(end, datetime.min.time(), zone) + timedelta(days=1)
    rows = await conn.fetch(
        """SELECT DISTINCT driver_id::text AS driver, (fix_time AT TIME ZONE $4)::date AS day
           FROM positions WHERE driver_id = ANY($1::uuid[]) AND fix_time >= $2
             AND fix_time < $3""",
        driver_ids,
        lo,
        hi,
        zone.key,
    )
    return {(r["driver"], r["day"]) for r in rows}


def _records(spec: DriverSpec, day: DriverDay) -> list[tuple[object, ...]]:
    track = Track(day.t, day.lon, day.lat, day.speed_kmh, day.course)
    return list(track_records(spec, track))


async def write_history(
    conn: Conn,
    cfg: HistoryConfig,
    driver_ids: dict[str, str],
    *,
    tenant: str,
    net: RoadNetwork | None = None,
    progress: ProgressFactory | None = None,
    refresh: bool = True,
) -> HistoryResult:
    """Generate the history of ``cfg`` for the fleet's drivers and COPY it into positions.

    Generation (CPU, in a thread) overlaps the previous batch's COPY (in PostgreSQL).
    """
    began = time.perf_counter()
    network: RoadNetwork = (
        net if net is not None else await asyncio.to_thread(load_network, cfg.fleet.network)
    )
    zone = ZoneInfo(network.timezone)
    plan = history_plan(cfg, network)
    result = HistoryResult()
    if not plan:
        return result
    first_day, end_day = plan[0][0], plan[-1][0] + timedelta(days=1)
    have = await stored_driver_days(conn, list(driver_ids.values()), first_day, end_day, zone)
    todo = [(day, i) for day, i in plan if (driver_ids[cfg.fleet.device_id(i)], day) not in have]
    result.skipped = len(plan) - len(todo)
    await conn.execute(
        "SELECT fleetpulse_ensure_position_partitions($1, $2)",
        first_day - timedelta(days=1),
        end_day + timedelta(days=1),
    )
    days: Iterator[DriverDay] = history_days(cfg, network, only=todo)
    make: ProgressFactory = progress or Progress
    pending: asyncio.Task[int] | None = None

    def next_batch() -> tuple[list[tuple[object, ...]], int]:
        rows: list[tuple[object, ...]] = []
        count = 0
        for day in days:
            device = day.device_id
            spec = DriverSpec(tenant, driver_ids[device], device, 0.0, 0.0)
            rows += _records(spec, day)
            count += 1
            if day.t.size:
                t0 = datetime.fromtimestamp(float(day.t[0]), UTC)
                t1 = datetime.fromtimestamp(float(day.t[-1]), UTC)
                result.first = t0 if result.first is None else min(result.first, t0)
                result.last = t1 if result.last is None else max(result.last, t1)
            if len(rows) >= COPY_BATCH_ROWS:
                break
        return rows, count

    bar = make(
        f"history: {cfg.days} days x {cfg.fleet.drivers} drivers on {network.name}",
        len(todo),
        "driver-days",
    )
    try:
        while True:
            rows, count = await asyncio.to_thread(next_batch)
            if pending is not None:
                result.fixes += await pending
                pending = None
            if count == 0:
                break
            if rows:
                pending = asyncio.create_task(write_tracks(conn, rows))
            result.driver_days += count
            bar.advance(count)
        if pending is not None:
            result.fixes += await pending
    except BaseException:
        if pending is not None:
            pending.cancel()
        bar.close(failed=True)
        raise
    bar.close()
    if refresh and result.first is not None and result.last is not None:
        refreshing = time.perf_counter()
        for name in POSITION_ROLLUPS:
            await refresh_range(conn, name, result.first, result.last + timedelta(minutes=1))
        result.refresh_s = time.perf_counter() - refreshing
    result.seconds = time.perf_counter() - began
    return result


def history_span(cfg: HistoryConfig, net: RoadNetwork) -> tuple[datetime, datetime] | None:
    """The time the history of ``cfg`` covers, in whole local days: from the day before its
    first (start hours below 0 leave the evening before) to the end of its last."""
    days = history_plan(cfg, net)
    if not days:
        return None
    zone = ZoneInfo(net.timezone)
    first = datetime.combine(days[0][0], datetime.min.time(), zone) - timedelta(days=1)
    return first, datetime.combine(days[-1][0], datetime.min.time(), zone) + timedelta(days=1)


async def learn_history(
    conn: Conn,
    cfg: HistoryConfig,
    net: RoadNetwork,
    *,
    on_day: Callable[[MatchSummary], None] | None = None,
) -> list[MatchSummary]:
    """Map-match the whole history of ``cfg`` (days an earlier run wrote too: matching is
    idempotent) and sum its traversals into ``edge_speeds_1h``, so that the workers learn its
    speeds at their next reload (``FLEETPULSE_ETA__PROFILE_RELOAD_S``)."""
    span = history_span(cfg, net)
    if span is None:
        return []
    matched = await match_range(conn, *span, on_day=on_day)
    await refresh_range(conn, "edge_speeds_1h", *span)
    return matched
