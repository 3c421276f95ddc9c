"""Read-path queries over history and the rollups: playback, heatmaps, daily statistics,
trips and stops. Functions take the connection first and keyword-only filters after it;
they return plain Python structures (the api renders them, ``analytics.frames`` wraps them
in DataFrames). Tenancy is enforced by the caller passing the tenant: every query filters
on it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt
from orjson import loads as orjson_loads

from analytics.errors import InvalidQuery
from analytics.refresh import floor_time, sql
from geo.movement import DEFAULT_PARAMS, MovementParams, Segment, segment_trips, simplify_indices
from infrastructure.postgres import Conn

Metric = Literal["positions", "dwell", "speed", "drivers"]
METRICS: tuple[str, ...] = ("positions", "dwell", "speed", "drivers")
BBox = tuple[float, float, float, float]  # min lon, min lat, max lon, max lat


@dataclass
class TrackArrays:
    """A columnar track: epoch seconds, lon, lat, speed km/h, heading degrees."""

    t: npt.NDArray[np.float64]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    speed: npt.NDArray[np.float64]
    heading: npt.NDArray[np.float64]

    @classmethod
    def from_records(cls, rows: list[Any]) -> TrackArrays:
        """Build from records with t, lon, lat, speed, heading (NULLs become NaN)."""
        if not rows:
            empty = np.zeros(0)
            return cls(empty, empty, empty, empty, empty)
        a = np.array(
            [(r["t"], r["lon"], r["lat"], _nan(r["speed"]), _nan(r["heading"])) for r in rows],
            dtype=float,
        )
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4])

    def __len__(self) -> int:
        return int(self.t.size)

    def take(self, idx: npt.NDArray[np.intp]) -> TrackArrays:
        """Return the points at these indexes."""
        return TrackArrays(
            self.t[idx], self.lon[idx], self.lat[idx], self.speed[idx], self.heading[idx]
        )

    def to_columns(self) -> dict[str, list[Any]]:
        """Return JSON-ready columns: t in epoch ms, lon/lat to 1e-6 degrees (~0.1 m)."""
        return {
            "t": [int(round(v * 1000)) for v in self.t],
            "lon": [round(float(v), 6) for v in self.lon],
            "lat": [round(float(v), 6) for v in self.lat],
            "speed": [None if v != v else round(float(v), 1) for v in self.speed],
            "heading": [None if v != v else round(float(v)) for v in self.heading],
        }


def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


# Times and dates outside these cannot be in any fleet's history: refusing them up front
# keeps date arithmetic and the database's conversions away from year 1 and 9999.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def as_utc(value: datetime | str) -> datetime:
    """Return an ISO-8601 time (or a datetime) as an aware datetime, UTC when it has no
    offset; ValueError when the text is not ISO-8601 or the time is not in 2000..2099."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    dt = dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if not EARLIEST <= dt < LATEST:
        raise ValueError(f"{dt.isoformat()} is not between 2000 and 2099")
    return dt


def check_day(day: date) -> date:
    """Return ``day``; ValueError unless it is in 2000..2099 (see ``as_utc``)."""
    if not EARLIEST.date() <= day < LATEST.date():
        raise ValueError(f"{day.isoformat()} is not between 2000 and 2099")
    return day


def check_window(start: datetime, end: datetime, max_window: timedelta) -> None:
    """Raise InvalidQuery unless start < end and the window is at most max_window."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidQuery("times must carry a time zone")
    if start >= end:
        raise InvalidQuery("from must be before to")
    if end - start > max_window:
        raise InvalidQuery(f"the window may be at most {max_window.days} days")


def check_metric(metric: str) -> None:
    """Raise InvalidQuery unless metric is one of METRICS."""
    if metric not in METRICS:
        raise InvalidQuery(f"metric must be one of {', '.join(METRICS)}")


def check_bbox(bbox: BBox) -> None:
    """Raise InvalidQuery unless bbox is a valid min lon, min lat, max lon, max lat."""
    x0, y0, x1, y1 = bbox
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise InvalidQuery("bbox must be minLon,minLat,maxLon,maxLat with min < max, in range")


async def driver_tenant(conn: Conn, driver_id: uuid.UUID) -> str | None:
    """Return the tenant of a driver, or None when there is no such driver."""
    tenant: str | None = await conn.fetchval(
        "SELECT tenant_id FROM drivers WHERE id = $1", driver_id
    )
    return tenant


async def raw_track(
    conn: Conn, *, driver_id: uuid.UUID, start: datetime, end: datetime
) -> TrackArrays:
    """Return one driver's raw fixes in [start, end)."""
    return TrackArrays.from_records(await conn.fetch(sql("playback_raw"), driver_id, start, end))


async def playback(
    conn: Conn,
    *,
    driver_id: uuid.UUID,
    start: datetime,
    end: datetime,
    max_points: int,
    raw_max: timedelta = timedelta(days=1),
) -> dict[str, Any]:
    """Return a driver's track in [start, end) with at most ``max_points`` points.

    Windows up to ``raw_max`` read raw fixes, longer ones the per-minute rollup (with the
    window's first and last raw fixes added, so the ends are exact); either is then
    downsampled with Douglas-Peucker (``geo.movement.simplify_indices``). Visit and
    geofence events in the window come along.
    """
    if end - start <= raw_max:
        source = "raw"
        track = await raw_track(conn, driver_id=driver_id, start=start, end=end)
    else:
        source = "minute"
        inner = TrackArrays.from_records(
            await conn.fetch(sql("playback_minute"), driver_id, start, end)
        )
        ends = TrackArrays.from_records(
            await conn.fetch(sql("playback_ends"), driver_id, start, end)
        )
        if len(ends):
            keep = (inner.t > ends.t[0]) & (inner.t < ends.t[-1])
            inner = inner.take(np.nonzero(keep)[0])
            track = TrackArrays(
                *(
                    np.concatenate([a[:1], b, a[-1:]])
                    for a, b in zip(
                        (ends.t, ends.lon, ends.lat, ends.speed, ends.heading),
                        (inner.t, inner.lon, inner.lat, inner.speed, inner.heading),
                        strict=True,
                    )
                )
            )
        else:
            track = inner
    total = len(track)
    if total > max_points:
        track = track.take(simplify_indices(track.lon, track.lat, max_points))
    events = await window_events(conn, driver_id=driver_id, start=start, end=end)
    return {
        "driverId": str(driver_id),
        "from": start,
        "to": end,
        "source": source,
        "totalPoints": total,
        "points": len(track),
        **track.to_columns(),
        "events": events,
    }


async def window_events(
    conn: Conn, *, driver_id: uuid.UUID, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Return visit and geofence events of a driver in [start, end), oldest first."""
    events: list[dict[str, Any]] = [
        {
            "type": r["kind"],
            "time": r["at"],
            "visitId": str(r["visit_id"]),
            "customerId": r["customer_id"],
            "customer": r["customer"],
            "sequence": r["sequence_number"],
        }
        for r in await conn.fetch(sql("visit_events"), driver_id, start, end)
    ]
    events += [
        {"type": r["kind"], "time": r["at"], "geofenceId": r["geofence_id"]}
        for r in await conn.fetch(sql("geofence_events"), driver_id, start, end)
    ]
    events.sort(key=lambda e: e["time"])
    return events


async def fleet_playback(
    conn: Conn,
    *,
    tenant: str,
    start: datetime,
    end: datetime,
    bbox: BBox,
    max_points_per_driver: int,
    raw_max: timedelta = timedelta(hours=2),
) -> dict[str, Any]:
    """Return every driver's fixes inside ``bbox`` in [start, end), one columnar track each.

    Windows up to ``raw_max`` read raw fixes, longer ones the per-minute rollup.
    """
    x0, y0, x1, y1 = bbox
    name = "fleet_playback" if end - start <= raw_max else "fleet_playback_minute"
    rows = await conn.fetch(sql(name), tenant, start, end, x0, y0, x1, y1)
    drivers = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j]["driver_id"] == rows[i]["driver_id"]:
            j += 1
        track = TrackArrays.from_records(rows[i:j])
        if len(track) > max_points_per_driver:
            track = track.take(simplify_indices(track.lon, track.lat, max_points_per_driver))
        drivers.append({"driverId": str(rows[i]["driver_id"]), **track.to_columns()})
        i = j
    return {
        "from": start,
        "to": end,
        "bbox": list(bbox),
        "source": "raw" if name == "fleet_playback" else "minute",
        "drivers": drivers,
    }


async def heatmap(
    conn: Conn,
    *,
    tenant: str,
    start: datetime,
    end: datetime,
    resolution: int,
    metric: str,
    bbox: BBox | None = None,
) -> list[tuple[int, float]]:
    """Return (H3 cell, value) for a tenant's hours covering [start, end).

    Reads ``cells_1h``: hours are whole (start is floored, end rounded up to the hour).
    ``resolution`` 0..9; metrics: positions (fix count), dwell (seconds), speed (mean km/h),
    drivers (distinct drivers). ``bbox`` keeps cells whose centre lies inside.
    """
    check_metric(metric)
    if not 0 <= resolution <= 9:
        raise InvalidQuery("resolution must be between 0 and 9")
    hour = timedelta(hours=1)
    h0 = floor_time(start, hour)
    h1 = floor_time(end, hour) if floor_time(end, hour) == end else floor_time(end, hour) + hour
    if metric == "drivers":
        rows = await conn.fetch(sql("heatmap_drivers"), tenant, h0, h1, resolution)
    else:
        rows = await conn.fetch(sql("heatmap"), tenant, h0, h1, resolution)
    out = []
    for r in rows:
        value = r[metric]
        if value is None:
            continue
        cell = int(r["cell"])
        if bbox is not None:
            lat, lon = h3.cell_to_latlng(cell)
            if not (bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]):
                continue
        out.append((cell, float(value)))
    out.sort()
    return out


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """Return the UTC start and end of a day."""
    d0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return d0, d0 + timedelta(days=1)


async def daily_stats(conn: Conn, *, tenant: str, day: date) -> list[dict[str, Any]]:
    """Return the daily statistics of a tenant's drivers for one UTC day."""
    return [dict(r) for r in await conn.fetch(sql("daily_stats"), tenant, day)]


async def driver_stats(
    conn: Conn, *, driver_id: uuid.UUID, first: date, last: date
) -> list[dict[str, Any]]:
    """Return one driver's daily statistics for the UTC days first..last."""
    return [dict(r) for r in await conn.fetch(sql("driver_stats"), driver_id, first, last)]


async def trips(
    conn: Conn, *, driver_id: uuid.UUID, day: date, params: MovementParams = DEFAULT_PARAMS
) -> tuple[TrackArrays, list[Segment]]:
    """Return a driver's UTC day of fixes and its trips and stops (``segment_trips``)."""
    d0, d1 = day_bounds(day)
    track = await raw_track(conn, driver_id=driver_id, start=d0, end=d1)
    segments = segment_trips(track.t, track.lon, track.lat, np.nan_to_num(track.speed), params)
    return track, segments


def segment_to_json(s: Segment) -> dict[str, Any]:
    """Render a trip or stop for the API."""
    return {
        "type": s.kind,
        "startTime": datetime.fromtimestamp(s.start_time, UTC),
        "endTime": datetime.fromtimestamp(s.end_time, UTC),
        "durationS": round(s.duration_s, 1),
        "distanceM": round(s.distance_m, 1),
        "maxSpeedKmh": round(s.max_speed_kmh, 1),
        "averageSpeedKmh": (
            round(s.distance_m / s.duration_s * 3.6, 1)
            if s.kind == "trip" and s.duration_s > 0
            else None
        ),
        # trips: where they started and ended; stops: the mean position while stopped
        **(
            {"lon": round(s.lon, 6), "lat": round(s.lat, 6)}
            if s.kind == "stop"
            else {
                "startLon": round(s.lon, 6),
                "startLat": round(s.lat, 6),
                "endLon": round(s.end_lon, 6),
                "endLat": round(s.end_lat, 6),
            }
        ),
    }


def check_hour_of_week(hour: int) -> None:
    """Raise InvalidQuery unless ``hour`` is an hour of the week, 0..167."""
    if not 0 <= hour < 168:
        raise InvalidQuery("hour_of_week must be 0..167 (Monday 00:00 UTC = 0)")


_ROAD_SPEEDS = """
SELECT s.network, s.source, s.target, e.highway, e.name, e.speed_kmh AS free_flow_kmh,
       ST_AsGeoJSON(e.geom, 7) AS geom, sum(s.traversals)::bigint AS traversals,
       (sum(s.length_m) / nullif(sum(s.travel_s), 0) * 3.6)::double precision AS speed_kmh,
       (sum(s.travel_s) / sum(s.traversals))::double precision AS mean_travel_s
FROM edge_speeds_1h s
JOIN road_edges e ON e.network = s.network AND e.source = s.source AND e.target = s.target
WHERE s.tenant_id = $1 AND s.bucket >= $2
  AND ($3::text IS NULL OR s.network = $3)
  AND ($4::integer IS NULL
       OR ((floor(extract(epoch FROM s.bucket) / 3600)::bigint - 96) % 168)::integer = $4)
  AND ($5::double precision IS NULL OR e.geom && ST_MakeEnvelope($5, $6, $7, $8, 4326))
GROUP BY s.network, s.source, s.target, e.highway, e.name, e.speed_kmh, e.geom
HAVING sum(s.traversals) >= $9
ORDER BY s.network, s.source, s.target
"""


async def road_speeds(
    conn: Conn,
    *,
    tenant: str,
    since: datetime,
    network: str | None = None,
    hour_of_week: int | None = None,
    bbox: BBox | None = None,
    min_traversals: int = 1,
) -> list[dict[str, Any]]:
    """What the ETA learned (edge_speeds_1h since ``since``): per directed road segment, the
    traversals and their space-mean speed, at one hour of the week (UTC, Monday 00:00 = 0)
    or over all hours; GeoJSON Features with the segment's line."""
    if hour_of_week is not None:
        check_hour_of_week(hour_of_week)
    if bbox is not None:
        check_bbox(bbox)
    box = bbox or (None, None, None, None)
    rows = await conn.fetch(
        _ROAD_SPEEDS, tenant, since, network, hour_of_week, *box, max(min_traversals, 1)
    )
    return [
        {
            "type": "Feature",
            "id": f"{r['network']}:{r['source']}:{r['target']}",
            "geometry": orjson_loads(r["geom"]),
            "properties": {
                "network": r["network"],
                "source": r["source"],
                "target": r["target"],
                "highway": r["highway"],
                "name": r["name"],
                "traversals": r["traversals"],
                "speedKmh": None if r["speed_kmh"] is None else round(r["speed_kmh"], 1),
                "freeFlowKmh": round(r["free_flow_kmh"], 1),
                "meanTravelS": round(r["mean_travel_s"], 1),
            },
        }
        for r in rows
    ]


# The hour of the week (UTC, Monday 00:00 = 0) of an edge_speeds_1h bucket: 1970-01-05, the
# first Monday of the epoch, is 96 hours after it (the expression of road_speed_profile).
_BUCKET_HOUR_OF_WEEK = "((floor(extract(epoch FROM s.bucket) / 3600)::bigint - 96) % 168)::integer"

_SPEED_PROFILE = f"""
SELECT e.highway, {_BUCKET_HOUR_OF_WEEK} AS hour_of_week,
       sum(s.traversals)::bigint AS traversals,
       count(DISTINCT (s.network, s.source, s.target))::bigint AS segments,
       (sum(s.length_m) / nullif(sum(s.travel_s), 0) * 3.6)::double precision AS speed_kmh
FROM edge_speeds_1h s
JOIN road_edges e ON e.network = s.network AND e.source = s.source AND e.target = s.target
WHERE s.tenant_id = $1 AND s.bucket >= $2
  AND ($3::text IS NULL OR s.network = $3)
  AND ($4::text IS NULL OR e.highway = $4)
GROUP BY 1, 2
ORDER BY 1, 2
"""


async def speed_profile(
    conn: Conn,
    *,
    tenant: str,
    since: datetime,
    network: str | None = None,
    highway: str | None = None,
) -> list[dict[str, Any]]:
    """The learned speed by road class and hour of the week (UTC, Monday 00:00 = 0), from
    edge_speeds_1h since ``since``: per (highway, hour_of_week) the traversals, the distinct
    segments behind them and their space-mean speed (total length over total time, km/h).
    Only hours with traversals are returned."""
    return [dict(r) for r in await conn.fetch(_SPEED_PROFILE, tenant, since, network, highway)]


_SEGMENT_HOUR_SUMS = f"""
SELECT s.source, s.target, {_BUCKET_HOUR_OF_WEEK} AS hour_of_week,
       sum(s.traversals)::bigint AS traversals, sum(s.length_m) AS length_m,
       sum(s.travel_s) AS travel_s
FROM edge_speeds_1h s
WHERE s.tenant_id = $1 AND s.bucket >= $2 AND s.network = $3
GROUP BY 1, 2, 3
"""

_NETWORK_SEGMENTS = """
SELECT source, target, highway, name, length_m, speed_kmh AS free_flow_kmh,
       ST_AsGeoJSON(geom, 7) AS geom,
       ST_X(ST_LineInterpolatePoint(geom, 0.5)) AS mid_lon,
       ST_Y(ST_LineInterpolatePoint(geom, 0.5)) AS mid_lat
FROM road_edges WHERE network = $1
ORDER BY source, target
"""


async def segment_hour_sums(
    conn: Conn, *, tenant: str, since: datetime, network: str
) -> list[dict[str, Any]]:
    """What the learned speeds rest on, per directed segment of one network and hour of the
    week: traversals and their summed lengths (m) and travel times (s), since ``since``."""
    return [dict(r) for r in await conn.fetch(_SEGMENT_HOUR_SUMS, tenant, since, network)]


async def network_segments(conn: Conn, *, network: str) -> list[dict[str, Any]]:
    """Every directed segment of a road network (``road_edges``): key, class, name, length,
    free-flow speed, the line as GeoJSON and the point halfway along it."""
    return [dict(r) for r in await conn.fetch(_NETWORK_SEGMENTS, network)]
