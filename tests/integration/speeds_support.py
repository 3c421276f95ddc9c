"""Learned road speeds for the analysts' tests: a street grid driven through the real path
(positions → analytics.matching → edge_traversals → edge_speeds_1h), and what the stored
traversals say, computed here from ``edge_traversals`` itself (raw rows, the hour of the week
from the calendar, the fallback chain written out), to check the frames and the notebook.

Each grid lies in the ocean far from every other network of the test database, on a day of
its own (``match_window`` matches every driver of its window), 12–18 days back: within the
learning window (8 weeks), out of a one-week window.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import h3

from analytics.generate import DriverSpec, track_records, write_tracks
from analytics.matching import match_window
from analytics.refresh import refresh_range
from geo.eta import PROFILE_CELL_RESOLUTION
from tests.integration.test_learned_speeds import SPEEDS_MS, last_monday, load_grid, scripted_day
from tests.unit.test_matching import N

SECONDARY_KMH = 50.0


@dataclass(frozen=True)
class LearnedGrid:
    """A grid, the day it was driven and by whom: (tenant, driver id, device, seed)."""

    network: str
    lon0: float
    lat0: float
    weekday: int  # of the week before last: 0 Monday
    drivers: tuple[tuple[str, str, str, int], ...]
    # added to the grid's node ids: the worker keys learned speeds by (source, target) over
    # all networks, and every test grid numbers its junctions from 1
    node_offset: int

    @property
    def day(self) -> datetime:
        return last_monday() - timedelta(days=7 - self.weekday)

    def hour_of_week(self, hour_of_day: int) -> int:
        return self.weekday * 24 + hour_of_day

    @property
    def rush_hour(self) -> int:
        """The scripted slow hour (SPEEDS_MS), as an hour of the week."""
        return self.hour_of_week(min(SPEEDS_MS, key=SPEEDS_MS.__getitem__))

    @property
    def midday_hour(self) -> int:
        return self.hour_of_week(max(SPEEDS_MS, key=SPEEDS_MS.__getitem__))


async def build_learned_grid(conn: Any, grid: LearnedGrid) -> None:
    """Load the grid (its first row of streets a secondary road, the rest residential), write
    each driver's scripted day on it, match the day and refresh edge_speeds_1h over it.
    Idempotent: the drivers' fixes of that day are replaced, traversals are stored once."""
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM road_edges WHERE network = $1)", grid.network
    ):
        await load_grid(conn, grid.network, grid.lon0, grid.lat0)
        await conn.execute(
            """UPDATE road_edges SET source = source + $2, target = target + $2,
                      highway = CASE WHEN source <= $3 AND target <= $3
                                     THEN 'secondary' ELSE highway END,
                      speed_kmh = CASE WHEN source <= $3 AND target <= $3
                                       THEN $4::double precision ELSE speed_kmh END
               WHERE network = $1""",
            grid.network,
            grid.node_offset,
            N,  # junctions 1..N are the grid's first row
            SECONDARY_KMH,
        )
        await conn.execute(
            "UPDATE road_edges SET cost_s = length_m / (speed_kmh / 3.6) WHERE network = $1",
            grid.network,
        )
    day = grid.day
    await conn.execute("SELECT fleetpulse_ensure_position_partitions($1, $1)", day.date())
    for tenant, driver, device, seed in grid.drivers:
        await conn.execute(
            "DELETE FROM positions WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3",
            uuid.UUID(driver),
            day,
            day + timedelta(days=1),
        )
        track = scripted_day(day, random.Random(seed), grid.lon0, grid.lat0)
        spec = DriverSpec(tenant, driver, device, grid.lon0, grid.lat0)
        await write_tracks(conn, track_records(spec, track))
    await match_window(conn, day, day + timedelta(days=1))
    await refresh_range(conn, "edge_speeds_1h", day, day + timedelta(days=1))


# ---- what edge_traversals say, independently of edge_speeds_1h and analytics.queries ----

_CALENDAR_HOUR = """((extract(isodow FROM t.entered_at AT TIME ZONE 'UTC')::integer - 1) * 24
                     + extract(hour FROM t.entered_at AT TIME ZONE 'UTC')::integer)"""


async def traversal_sums(conn: Any, *, tenant: str, network: str) -> list[dict[str, Any]]:
    """Per segment and hour of the week: traversals, summed length and travel time, class."""
    rows = await conn.fetch(
        f"""SELECT t.source, t.target, e.highway, {_CALENDAR_HOUR} AS hour, count(*) AS n,
                   sum(t.length_m::double precision) AS length_m,
                   sum(t.travel_s::double precision) AS travel_s
            FROM edge_traversals t
            JOIN road_edges e
              ON e.network = t.network AND e.source = t.source AND e.target = t.target
            WHERE t.tenant_id = $1 AND t.network = $2
              AND t.entered_at >= now() - INTERVAL '8 weeks'
            GROUP BY 1, 2, 3, 4""",
        tenant,
        network,
    )
    return [dict(r) for r in rows]


def segment_speeds(
    rows: list[dict[str, Any]], network: str, hour: int | None
) -> dict[str, tuple[int, float]]:
    """``"network:source:target"`` → (traversals, space-mean km/h) at an hour of the week
    (None: over all hours)."""
    n: Counter[tuple[int, int]] = Counter()
    length: Counter[tuple[int, int]] = Counter()
    travel: Counter[tuple[int, int]] = Counter()
    for r in rows:
        if hour is None or r["hour"] == hour:
            key = (r["source"], r["target"])
            n[key] += r["n"]
            length[key] += r["length_m"]
            travel[key] += r["travel_s"]
    return {f"{network}:{s}:{t}": (n[(s, t)], length[(s, t)] / travel[(s, t)] * 3.6) for s, t in n}


def class_profile(rows: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[int, int, float]]:
    """(highway, hour of the week) → (traversals, distinct segments, space-mean km/h)."""
    n: Counter[tuple[str, int]] = Counter()
    length: Counter[tuple[str, int]] = Counter()
    travel: Counter[tuple[str, int]] = Counter()
    segments: dict[tuple[str, int], set[tuple[int, int]]] = {}
    for r in rows:
        k = (r["highway"], r["hour"])
        n[k] += r["n"]
        length[k] += r["length_m"]
        travel[k] += r["travel_s"]
        segments.setdefault(k, set()).add((r["source"], r["target"]))
    return {k: (n[k], len(segments[k]), length[k] / travel[k] * 3.6) for k in n}


async def chain_levels(
    conn: Any, rows: list[dict[str, Any]], *, network: str, hour: int, min_samples: int
) -> Counter[str]:
    """How many of the network's segments each level of the ETA's fallback chain answers for
    at ``hour``: the segment at that hour, the segment at any hour, its H3 cell (res 8, of the
    segment's halfway point) at that hour, its class at that hour, else the planning speed;
    each level only from ``min_samples`` traversals on."""
    segments = await conn.fetch(
        """SELECT source, target, highway,
                  ST_X(ST_LineInterpolatePoint(geom, 0.5)) AS lon,
                  ST_Y(ST_LineInterpolatePoint(geom, 0.5)) AS lat
           FROM road_edges WHERE network = $1""",
        network,
    )
    cell = {
        (s["source"], s["target"]): h3.latlng_to_cell(s["lat"], s["lon"], PROFILE_CELL_RESOLUTION)
        for s in segments
    }
    at_hour: Counter[tuple[int, int]] = Counter()
    anytime: Counter[tuple[int, int]] = Counter()
    cell_at: Counter[str] = Counter()
    class_at: Counter[str] = Counter()
    for r in rows:
        key = (r["source"], r["target"])
        anytime[key] += r["n"]
        if r["hour"] == hour:
            at_hour[key] += r["n"]
            cell_at[cell[key]] += r["n"]
            class_at[r["highway"]] += r["n"]
    levels: Counter[str] = Counter()
    for s in segments:
        key = (s["source"], s["target"])
        if at_hour[key] >= min_samples:
            levels["segment_hour"] += 1
        elif anytime[key] >= min_samples:
            levels["segment_scaled"] += 1
        elif cell_at[cell[key]] >= min_samples:
            levels["cell_hour"] += 1
        elif class_at[s["highway"]] >= min_samples:
            levels["class_hour"] += 1
        else:
            levels["planning"] += 1
    return levels
