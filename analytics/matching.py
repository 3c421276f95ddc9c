"""Map matching of the stored history into whole-segment traversals (``edge_traversals``).

Matching runs here, as an analytics step of the maintenance pass, not in the enrichment
worker: Viterbi decides best with the fixes after a point as well as before (the worker would
have to commit to a segment at each fix), the live ETA does not need it (it follows the
route's own path, see ``geo.eta``), and it keeps ~90 µs per fix (``bench/matching.py``) off
the 10,000 fixes/s ingest path. The price is latency: what was driven is learned a maintenance
interval later, which for speeds averaged over weeks costs nothing.

Each pass matches ``[watermark, now - settle)`` per driver, starting ``context`` earlier so a
trip that began before the watermark is matched whole, and keeps the traversals *entered* in
``[watermark, end)``: every traversal belongs to exactly one pass, so passes may overlap,
repeat or run from several processes (inserts are idempotent) without counting one twice.
Trips are cut where the worker labelled the vehicle stopped (``motion`` 4): a parked van's
noise is not driving.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from geo.matching import MatchFix, MatchParams, RoadGraph, RoadSegment, Traversal, match
from infrastructure.postgres import Conn, road_edges_signature

log = logging.getLogger(__name__)

WATERMARK = "edge_traversals"
STOPPED = 4  # geo.movement MotionState: the vehicle is at a stop
MAX_PASS = timedelta(days=1)
DEFAULT_MATCH = MatchParams()  # one pass matches at most this much history (bounded memory)

_ROADS = """
SELECT network, source, target, ST_AsBinary(geom) AS wkb, length_m
FROM road_edges ORDER BY network, source, target
"""

_FIXES = """
SELECT driver_id, tenant_id, (extract(epoch FROM fix_time) * 1000)::bigint AS t_ms,
       lon, lat, accuracy, speed_kmh, motion
FROM positions
WHERE fix_time >= $1 AND fix_time < $2 AND valid AND driver_id IS NOT NULL
ORDER BY driver_id, fix_time
"""

_INSERT = """
INSERT INTO edge_traversals (tenant_id, driver_id, network, source, target, entered_at,
                             travel_s, length_m)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::timestamptz[], $7::real[], $8::real[])
ON CONFLICT DO NOTHING
"""


@dataclass
class RoadGraphs:
    """The road networks of ``road_edges``, one matching graph each."""

    graphs: dict[str, RoadGraph]
    lengths: dict[tuple[str, int, int], float]
    signature: tuple[int, str]

    def for_track(self, lon: float, lat: float) -> tuple[str, RoadGraph] | None:
        for name, g in self.graphs.items():
            if g.covers(lon, lat):
                return name, g
        return None


_cached: RoadGraphs | None = None


async def load_road_graphs(conn: Conn) -> RoadGraphs:
    """Build (or reuse, while ``road_edges`` is unchanged) the matching graphs."""
    global _cached
    import shapely

    signature = await road_edges_signature(conn)
    if _cached is not None and _cached.signature == signature:
        return _cached
    segments: dict[str, list[RoadSegment]] = defaultdict(list)
    lengths: dict[tuple[str, int, int], float] = {}
    for r in await conn.fetch(_ROADS):
        coords = tuple((float(x), float(y)) for x, y in shapely.from_wkb(r["wkb"]).coords)
        segments[r["network"]].append(RoadSegment(int(r["source"]), int(r["target"]), coords))
        lengths[(r["network"], int(r["source"]), int(r["target"]))] = float(r["length_m"])
    _cached = RoadGraphs({n: RoadGraph(s) for n, s in segments.items()}, lengths, signature)
    return _cached


@dataclass
class MatchSummary:
    start: datetime | None = None
    end: datetime | None = None
    fixes: int = 0
    drivers: int = 0
    trips: int = 0
    traversals: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "from": None if self.start is None else self.start.isoformat(),
            "to": None if self.end is None else self.end.isoformat(),
            "fixes": self.fixes,
            "drivers": self.drivers,
            "trips": self.trips,
            "traversals": self.traversals,
            "seconds": round(self.seconds, 2),
            "usPerFix": round(1e6 * self.seconds / self.fixes, 1) if self.fixes else None,
        }


def _trips(rows: list[MatchFix], motions: list[int | None], gap_ms: int) -> list[list[MatchFix]]:
    """Cut a driver's fixes where they stopped or went silent."""
    out: list[list[MatchFix]] = []
    current: list[MatchFix] = []
    for f, m in zip(rows, motions, strict=True):
        if m == STOPPED or (current and f.t_ms - current[-1].t_ms > gap_ms):
            if len(current) >= 2:
                out.append(current)
            current = []
            if m == STOPPED:
                continue
        current.append(f)
    if len(current) >= 2:
        out.append(current)
    return out


async def match_window(
    conn: Conn,
    start: datetime,
    end: datetime,
    *,
    context: timedelta = timedelta(minutes=30),
    params: MatchParams = DEFAULT_MATCH,
) -> MatchSummary:
    """Match every driver's fixes of ``[start - context, end)``; store the traversals
    entered in ``[start, end)``."""
    began = time.perf_counter()
    summary = MatchSummary(start, end)
    graphs = await load_road_graphs(conn)
    if not graphs.graphs:
        return summary
    rows = await conn.fetch(_FIXES, start - context, end)
    summary.fixes = len(rows)
    by_driver: dict[uuid.UUID, list[tuple[MatchFix, int | None]]] = defaultdict(list)
    tenant: dict[uuid.UUID, str] = {}
    for r in rows:
        by_driver[r["driver_id"]].append(
            (
                MatchFix(
                    int(r["t_ms"]),
                    float(r["lon"]),
                    float(r["lat"]),
                    None if r["accuracy"] is None else float(r["accuracy"]),
                    None if r["speed_kmh"] is None else float(r["speed_kmh"]),
                ),
                r["motion"],
            )
        )
        tenant[r["driver_id"]] = r["tenant_id"]
    summary.drivers = len(by_driver)
    lo_ms, hi_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    found: list[tuple[uuid.UUID, str, Traversal]] = []
    gap_ms = int(params.max_gap_s * 1000)
    for driver, items in by_driver.items():
        fixes = [f for f, _ in items]
        for trip in _trips(fixes, [m for _, m in items], gap_ms):
            picked = graphs.for_track(trip[0].lon, trip[0].lat)
            if picked is None:
                continue
            network, graph = picked
            summary.trips += 1
            for t in match(graph, trip, params).traversals:
                if lo_ms <= t.enter_ms < hi_ms and t.exit_ms > t.enter_ms:
                    found.append((driver, network, t))
    if found:
        status = await conn.execute(
            _INSERT,
            [tenant[d] for d, _, _ in found],
            [d for d, _, _ in found],
            [n for _, n, _ in found],
            [t.key[0] for _, _, t in found],
            [t.key[1] for _, _, t in found],
            [datetime.fromtimestamp(t.enter_ms / 1000, UTC) for _, _, t in found],
            [t.travel_s for _, _, t in found],
            [graphs.lengths[(n, *t.key)] for _, n, t in found],
        )
        summary.traversals = int(status.split()[-1])
    summary.seconds = time.perf_counter() - began
    return summary


async def match_range(
    conn: Conn,
    start: datetime,
    end: datetime,
    *,
    on_day: Callable[[MatchSummary], None] | None = None,
) -> list[MatchSummary]:
    """Match ``[start, end)`` a day at a time, whatever the watermark says: for history
    written after the fact (``fleetpulse simulate --history-weeks``, an import), older than
    what the maintenance pass has already passed."""
    out = []
    lo = start
    while lo < end:
        hi = min(end, lo + MAX_PASS)
        out.append(await match_window(conn, lo, hi))
        if on_day is not None:
            on_day(out[-1])
        lo = hi
    return out


async def match_history(
    conn: Conn,
    *,
    now: datetime | None = None,
    settle: timedelta = timedelta(minutes=2),
    back_to: timedelta = timedelta(weeks=8),
    max_passes: int = 60,
) -> list[MatchSummary]:
    """Match from the watermark up to ``now - settle``, a day at most per pass; advance it.
    A first run starts at the oldest fix, but no earlier than ``back_to`` before now (what
    is older would not be learned from anyway)."""
    now = now or datetime.now(UTC)
    end = now - settle
    out = []
    for _ in range(max_passes):
        wm = await conn.fetchval(
            "SELECT watermark FROM analytics_watermarks WHERE name = $1", WATERMARK
        )
        if wm is None:
            wm = await conn.fetchval(
                "SELECT min(fix_time) FROM positions WHERE valid AND fix_time >= $1",
                now - back_to,
            )
            if wm is None:
                break
        if wm >= end:
            break
        hi = min(end, wm + MAX_PASS)
        out.append(await match_window(conn, wm, hi))
        await conn.execute(
            """INSERT INTO analytics_watermarks (name, watermark, refreshed_at)
               VALUES ($1, $2, now())
               ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark,
                   refreshed_at = now()""",
            WATERMARK,
            hi,
        )
    return out
