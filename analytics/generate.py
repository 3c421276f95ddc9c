"""Synthetic history for tests, notebooks and the benchmark: drivers moving along a street
grid with stops, traffic-light pauses, GPS noise and reported speeds in km/h, written with
COPY straight into ``positions`` (and, optionally, routes/visits for the visits it stopped at).

The track synthesis is pure (``script_day``, ``random_legs``); ``write_tracks`` does the I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import h3.api.basic_int as h3
import numpy as np
import numpy.typing as npt

from geo.distance import EARTH_RADIUS_M
from geo.movement import label_fixes
from infrastructure.postgres import Conn

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Stop:
    """Stay at the current place for ``duration_s``."""

    duration_s: float


@dataclass(frozen=True)
class Drive:
    """Drive ``distance_m`` along the grid at ``speed_kmh``, pausing at some corners."""

    distance_m: float
    speed_kmh: float
    pauses_s: tuple[float, ...] = ()  # traffic lights, one per corner from the first


Leg = Stop | Drive


@dataclass
class Track:
    """One driver-day of fixes plus the scripted truth it was made from."""

    t: FloatArray
    lon: FloatArray
    lat: FloatArray
    speed_kmh: FloatArray
    course: FloatArray
    # (kind, start s, end s, distance m, lon, lat) per scripted leg, pauses folded into drives
    truth: list[tuple[str, float, float, float, float, float]] = field(default_factory=list)
    eta_s: FloatArray | None = None  # true time to the next stop, while driving


def _grid_path(
    rng: np.random.Generator, x: float, y: float, distance_m: float, heading: int
) -> tuple[list[tuple[float, float]], int]:
    """Return vertices of a street-grid path of the given length, and the final heading."""
    dirs = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]
    pts = [(x, y)]
    left = distance_m
    while left > 1e-9:
        block = min(left, float(rng.uniform(80, 250)))
        if np.hypot(x, y) > 6_000:  # stay in town: turn towards the depot
            heading = max(range(4), key=lambda h: -(dirs[h][0] * x + dirs[h][1] * y))
        dx, dy = dirs[heading]
        x, y = x + dx * block, y + dy * block
        pts.append((x, y))
        left -= block
        heading = (heading + int(rng.choice([-1, 0, 0, 1]))) % 4
    return pts, heading


def script_day(
    legs: Sequence[Leg],
    *,
    start: datetime,
    lon0: float,
    lat0: float,
    interval_s: float = 30.0,
    noise_m: float = 8.0,
    seed: int = 0,
) -> Track:
    """Return the fixes of a scripted day sampled every ``interval_s`` from ``start``.

    Positions are exact along the script plus Gaussian noise of ``noise_m`` metres per axis;
    reported speed is the true speed plus noise (near zero when standing).
    """
    rng = np.random.default_rng(seed)
    t0 = start.timestamp()
    kt, kx, ky = [t0], [0.0], [0.0]
    truth: list[tuple[str, float, float, float, float, float]] = []
    heading = int(rng.integers(0, 4))
    for leg in legs:
        x, y, now = kx[-1], ky[-1], kt[-1]
        if isinstance(leg, Stop):
            kt.append(now + leg.duration_s)
            kx.append(x)
            ky.append(y)
            truth.append(("stop", now, now + leg.duration_s, 0.0, x, y))
            continue
        pts, heading = _grid_path(rng, x, y, leg.distance_m, heading)
        v = leg.speed_kmh / 3.6
        for j, (px, py) in enumerate(pts[1:]):
            kt.append(kt[-1] + np.hypot(px - kx[-1], py - ky[-1]) / v)
            kx.append(px)
            ky.append(py)
            if j < len(leg.pauses_s) and j < len(pts) - 2:
                kt.append(kt[-1] + leg.pauses_s[j])
                kx.append(px)
                ky.append(py)
        truth.append(("trip", now, kt[-1], leg.distance_m, x, y))
    kta, kxa, kya = np.asarray(kt), np.asarray(kx), np.asarray(ky)
    t = np.arange(t0, kta[-1] + 1e-9, interval_s)
    x = np.interp(t, kta, kxa)
    y = np.interp(t, kta, kya)
    seg = np.clip(np.searchsorted(kta, t, side="right") - 1, 0, len(kta) - 2)
    dtk = np.diff(kta)[seg]
    dxk, dyk = np.diff(kxa)[seg], np.diff(kya)[seg]
    with np.errstate(divide="ignore", invalid="ignore"):
        v_true = np.where(dtk > 0, np.hypot(dxk, dyk) / dtk * 3.6, 0.0)
    moving = v_true > 0.1
    speed = np.where(
        moving,
        np.maximum(v_true + rng.normal(0, 1.5, t.size), 0.5),
        np.abs(rng.normal(0, 0.4, t.size)),
    )
    course = np.where(moving, (np.degrees(np.arctan2(dxk, dyk)) + 360) % 360, 0.0)
    x = x + rng.normal(0, noise_m, t.size)
    y = y + rng.normal(0, noise_m, t.size)
    lat = lat0 + np.degrees(y / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(x / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))
    eta = np.full(t.size, np.nan)
    for kind, s, e, *_ in truth:
        if kind == "trip":
            m = (t >= s) & (t < e)
            eta[m] = e - t[m]
    truth_ll = [
        (
            kind,
            s,
            e,
            d,
            lon0 + float(np.degrees(tx / (EARTH_RADIUS_M * np.cos(np.radians(lat0))))),
            lat0 + float(np.degrees(ty / EARTH_RADIUS_M)),
        )
        for kind, s, e, d, tx, ty in truth
    ]
    return Track(t, lon, lat, speed, course.astype(float), truth_ll, eta)


def random_legs(rng: np.random.Generator, hours: float) -> list[Leg]:
    """Return a delivery day: a depot stop, then drives of 0.5-4 km and stops of 3-20 min."""
    legs: list[Leg] = [Stop(float(rng.uniform(300, 900)))]
    total = legs[0].duration_s if isinstance(legs[0], Stop) else 0.0
    while total < hours * 3600:
        dist = float(rng.uniform(500, 4_000))
        speed = float(rng.uniform(20, 45))
        pauses = tuple(float(p) for p in rng.uniform(20, 90, int(rng.integers(0, 4))))
        legs.append(Drive(dist, speed, pauses))
        stop = float(rng.uniform(180, 1_200))
        legs.append(Stop(stop))
        total += dist / (speed / 3.6) + sum(pauses) + stop
    return legs


@dataclass(frozen=True)
class DriverSpec:
    tenant_id: str
    driver_id: str
    device_unique_id: str
    lon0: float
    lat0: float


POSITION_COLUMNS = (
    "tenant_id",
    "driver_id",
    "device_unique_id",
    "fix_time",
    "received_at",
    "lon",
    "lat",
    "speed_kmh",
    "course",
    "altitude",
    "accuracy",
    "valid",
    "protocol",
    "h3_cell",
    "next_visit_id",
    "eta_s",
    # the enrichment worker's per-fix movement labels (geo.movement.step_motion)
    "step_s",
    "step_m",
    "motion",
    "trip_m",
    "segment_start",
    "stop_counted",
)


def track_records(
    spec: DriverSpec, track: Track, *, next_visit: Sequence[uuid.UUID | None] | None = None
) -> Iterable[tuple[object, ...]]:
    """Yield COPY records for ``positions`` from a track (h3 at resolution 10).

    The movement labels are the track's own, as the worker would store them for a driver-day
    it saw from the start; a track merged into a day that already has fixes needs the day
    labelled again (``ingest.motion_labels.relabel_days``, as the worker does for late fixes).
    """
    driver = uuid.UUID(spec.driver_id)
    eta = track.eta_s if track.eta_s is not None else np.full(track.t.size, np.nan)
    labels, _ = label_fixes(track.t, track.lon, track.lat, track.speed_kmh)
    for i in range(track.t.size):
        fix = datetime.fromtimestamp(float(track.t[i]), UTC)
        lon, lat = float(track.lon[i]), float(track.lat[i])
        visit = next_visit[i] if next_visit is not None else None
        e = float(eta[i])
        yield (
            spec.tenant_id,
            driver,
            spec.device_unique_id,
            fix,
            fix + timedelta(seconds=1),
            lon,
            lat,
            float(track.speed_kmh[i]),
            float(track.course[i]),
            10.0,
            8.0,
            True,
            "osmand",
            h3.latlng_to_cell(lat, lon, 10),
            visit if visit is not None and e == e else None,
            e if e == e and visit is not None else None,
            *labels.label(i).as_row(),
        )


async def write_tracks(conn: Conn, records: Iterable[tuple[object, ...]]) -> int:
    """COPY records into positions; return how many were written (no duplicates allowed)."""
    rows = list(records)
    if rows:
        await conn.copy_records_to_table("positions", records=rows, columns=POSITION_COLUMNS)
    return len(rows)


async def write_visits(
    conn: Conn,
    spec: DriverSpec,
    track: Track,
    day: date,
    *,
    customer_id_base: int,
    rng: np.random.Generator,
) -> list[uuid.UUID | None]:
    """Plan one visit per scripted stop after the first, complete it as driven.

    Creates a customer at each stop, a route for the day, planned visits with arrival,
    departure and completion times, and visit_completions (on time when the arrival fell in
    a one-hour window around the planned time, which is jittered). Returns, per fix, the id
    of the visit it was driving to (for ``next_visit_id``/``eta_s``).
    """
    stops = [tr for tr in track.truth if tr[0] == "stop"][1:]
    route_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO routes (id, tenant_id, driver_id, name, scheduled_date, status,
               total_stops, completed_stops)
           VALUES ($1, $2, $3, $4, $5, 'completed', $6, $6)""",
        route_id,
        spec.tenant_id,
        uuid.UUID(spec.driver_id),
        f"generated {day}",
        day,
        len(stops),
    )
    next_visit: list[uuid.UUID | None] = [None] * track.t.size
    prev_end = track.t[0] if track.t.size else 0.0
    for seq, (_, s, e, _, lon, lat) in enumerate(stops, start=1):
        cid = customer_id_base + seq
        await conn.execute(
            """INSERT INTO customers (id, tenant_id, name, lat, lng, geofence_radius_m)
               VALUES ($1, $2, $3, $4, $5, 100)""",
            cid,
            spec.tenant_id,
            f"generated customer {cid}",
            lat,
            lon,
        )
        visit_id = uuid.uuid4()
        arrived = datetime.fromtimestamp(s, UTC)
        departed = datetime.fromtimestamp(e, UTC)
        planned = arrived + timedelta(seconds=float(rng.normal(0, 1800)))
        w_start = (planned - timedelta(minutes=30)).time()
        w_end = (planned + timedelta(minutes=30)).time()
        on_time = abs((arrived - planned).total_seconds()) <= 1800
        await conn.execute(
            """INSERT INTO planned_visits (id, tenant_id, route_id, driver_id, customer_id,
                   sequence_number, scheduled_date, time_window_start, time_window_end, status,
                   arrived_at, departed_at, completed_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'completed', $10, $11, $11)""",
            visit_id,
            spec.tenant_id,
            route_id,
            uuid.UUID(spec.driver_id),
            cid,
            seq,
            day,
            w_start,
            w_end,
            arrived,
            departed,
        )
        await conn.execute(
            """INSERT INTO visit_completions (visit_id, tenant_id, route_id, driver_id,
                   customer_id, status, scheduled_date, arrived_at, departed_at, completed_at,
                   dwell_s, on_time)
               VALUES ($1, $2, $3, $4, $5, 'completed', $6, $7, $8, $8, $9, $10)""",
            visit_id,
            spec.tenant_id,
            route_id,
            uuid.UUID(spec.driver_id),
            cid,
            day,
            arrived,
            departed,
            e - s,
            on_time,
        )
        for i in np.nonzero((track.t >= prev_end) & (track.t < s))[0]:
            next_visit[int(i)] = visit_id
        prev_end = e
    return next_visit


def noisy_eta(track: Track, rng: np.random.Generator, error: float = 0.15) -> None:
    """Replace the true time-to-go by an estimate with multiplicative error (in place)."""
    if track.eta_s is not None:
        track.eta_s = track.eta_s * rng.lognormal(0.0, error, track.t.size)


def day_start(day: date, hour: int = 8) -> datetime:
    """Return ``hour`` o'clock UTC on ``day``."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
