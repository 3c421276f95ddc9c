"""Each driver's plan for the day — active route, its visits and geometry — cached in-process.

The worker joins every position with its driver's plan without a database round trip. The
cache is invalidated by PostgreSQL notifications (``fleetpulse_plan_changes``, sent by
triggers on routes, visits, drivers, geofences and customers; migration 0007) and, as a safety
net, by a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import orjson

from geo.route_progress import RouteLine
from infrastructure.postgres import Conn
from ingest.visit_lifecycle import REACHED

log = logging.getLogger(__name__)

CHANNEL = "fleetpulse_plan_changes"

_PLANS_SQL = """
WITH active AS (
    SELECT DISTINCT ON (r.driver_id) r.driver_id, r.id, r.status, r.tenant_id,
           ST_AsGeoJSON(r.planned_geom) AS geom
    FROM routes r
    WHERE r.driver_id = ANY($1::uuid[])
      AND (r.status = 'in_progress' OR (r.status = 'planned' AND r.scheduled_date = $2))
    ORDER BY r.driver_id, (r.status = 'in_progress') DESC, r.scheduled_date, r.created_at
)
SELECT a.driver_id::text AS driver_id, a.id::text AS route_id, a.status AS route_status,
       a.geom,
       coalesce(json_agg(json_build_object(
           'id', v.id, 'seq', v.sequence_number, 'status', v.status,
           'customer_id', v.customer_id, 'customer_name', c.name,
           'geofence_id', coalesce(v.geofence_id, g.id),
           'lon', c.lng, 'lat', c.lat,
           'reached_ms', (extract(epoch FROM greatest(v.arrived_at, v.departed_at,
                                                     v.completed_at)) * 1000)::bigint)
           ORDER BY v.sequence_number)
         FILTER (WHERE v.id IS NOT NULL), '[]') AS visits
FROM active a
LEFT JOIN planned_visits v ON v.route_id = a.id
LEFT JOIN customers c ON c.id = v.customer_id
LEFT JOIN geofences g ON g.customer_id = v.customer_id
GROUP BY a.driver_id, a.id, a.status, a.geom
"""


@dataclass
class Stop:
    visit_id: str
    seq: int
    status: str
    customer_id: int
    customer_name: str
    geofence_id: int | None
    lon: float
    lat: float


MAX_CACHED_LINES = 20_000
LineKey = tuple[str, tuple[tuple[float, float], ...]]  # (route GeoJSON, stops' lon/lat)


@dataclass
class Plan:
    """A driver's active route (None when there is none) with its stops in visiting order."""

    driver_id: str
    route_id: str | None = None
    route_status: str | None = None
    line: RouteLine | None = None
    stops: list[Stop] = field(default_factory=list)
    loaded_at: float = 0.0
    # the stop the driver reached last, by time (ingest.movement._next_open looks after it)
    anchor: str | None = None


def _plan_from_row(row: asyncpg.Record, lines: dict[LineKey, RouteLine]) -> Plan:
    visits: list[dict[str, Any]] = row["visits"]
    if isinstance(visits, str):  # json_agg arrives as json text without a json codec
        visits = orjson.loads(visits)
    stops = [
        Stop(
            visit_id=str(v["id"]),
            seq=int(v["seq"]),
            status=str(v["status"]),
            customer_id=int(v["customer_id"]),
            customer_name=str(v["customer_name"]),
            geofence_id=None if v["geofence_id"] is None else int(v["geofence_id"]),
            lon=float(v["lon"]),
            lat=float(v["lat"]),
        )
        for v in visits
    ]
    line = None
    if row["geom"] and stops:
        # Rebuilding a route's line (projection, cumulative lengths, stop positions) was most
        # of a plan reload, and a reload after the TTL or a visit's status change almost
        # never changes the geometry or the stops: reuse the line built from the same ones.
        key = (row["geom"], tuple((s.lon, s.lat) for s in stops))
        line = lines.get(key)
        if line is None:
            coords = [(float(x), float(y)) for x, y in orjson.loads(row["geom"])["coordinates"]]
            if len(coords) >= 2:
                line = RouteLine.from_lonlat(coords, [(s.lon, s.lat) for s in stops])
                if len(lines) >= MAX_CACHED_LINES:
                    lines.clear()
                lines[key] = line
    reached = [
        (int(v["reached_ms"]), str(v["id"]))
        for v in visits
        if v["reached_ms"] is not None and v["status"] in REACHED
    ]
    anchor = max(reached)[1] if reached else None
    return Plan(row["driver_id"], row["route_id"], row["route_status"], line, stops, anchor=anchor)


class PlanCache:
    """Plans by driver; ``load`` fetches the missing or stale ones in one query."""

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = 60.0) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._plans: dict[str, Plan] = {}
        self._lines: dict[LineKey, RouteLine] = {}  # see _plan_from_row
        self._listener: asyncpg.Connection | None = None

    async def load(self, conn: Conn, driver_ids: set[str], day: date) -> dict[str, Plan]:
        """Return a plan for every driver (an empty one when no route is active)."""
        now = time.monotonic()
        stale = [
            d
            for d in driver_ids
            if d not in self._plans or now - self._plans[d].loaded_at > self._ttl_s
        ]
        if stale:
            rows = await conn.fetch(_PLANS_SQL, stale, day)
            fresh = {r["driver_id"]: _plan_from_row(r, self._lines) for r in rows}
            for d in stale:
                plan = fresh.get(d) or Plan(d)
                # Spread the expiries, or all of a fleet's plans expire in the same batch.
                plan.loaded_at = now - random.uniform(0.0, 0.25 * self._ttl_s)
                self._plans[d] = plan
        return {d: self._plans[d] for d in driver_ids}

    def invalidate(self, driver_id: str | None = None) -> None:
        if driver_id is None or driver_id == "*":
            self._plans.clear()
        else:
            self._plans.pop(driver_id, None)

    async def listen(self, dsn: str) -> None:
        """Subscribe to change notifications (a dedicated connection)."""
        conn: asyncpg.Connection = await asyncpg.connect(dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        self._listener = conn

    def _on_notify(self, conn: Conn, pid: int, channel: str, payload: object) -> None:
        try:
            self.invalidate(str(orjson.loads(str(payload)).get("driver", "*")))
        except orjson.JSONDecodeError:
            self.invalidate()

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.close(), 5)
