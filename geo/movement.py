"""Movement logic over one driver's time-ordered fixes: distances, trips and stops, day
summaries and shape-preserving downsampling. Pure functions over numpy arrays (lon, lat in
degrees WGS84, t in seconds since the epoch, speed in km/h); no I/O.

Trips and stops follow Traccar's default ("new") logic so reports are comparable: a trip
starts once the device is ``min_distance_m`` (200 m) away from where it stopped; it ends when
the device stayed within ``min_distance_m`` for ``min_duration_s`` (180 s); a gap in the data
longer than ``stop_gap_s`` (3600 s) splits.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from geo.distance import EARTH_RADIUS_M

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MovementParams:
    """Thresholds of segmentation and day statistics (Traccar-comparable defaults)."""

    min_distance_m: float = 200.0  # report.trip.minDistance
    min_duration_s: float = 180.0  # report.trip.minDuration
    stop_gap_s: float = 3600.0  # report.trip.stopGap
    moving_speed_kmh: float = 5.0  # at or above: moving; below, inside a trip: idle
    max_interval_s: float = 300.0  # longer intervals inside a trip count as unknown time
    max_implied_speed_kmh: float = 250.0  # a segment faster than this is a GPS outlier


DEFAULT_PARAMS = MovementParams()


@dataclass(frozen=True)
class Segment:
    """A trip or a stop: indexes into the day's arrays, inclusive on both ends."""

    kind: Literal["trip", "stop"]
    start: int
    end: int
    start_time: float
    end_time: float
    distance_m: float
    lon: float  # trips: start position; stops: mean position
    lat: float
    end_lon: float
    end_lat: float
    max_speed_kmh: float

    @property
    def duration_s(self) -> float:
        """Return the segment's duration in seconds."""
        return self.end_time - self.start_time


@dataclass(frozen=True)
class DaySummary:
    """What the daily statistics store for one driver-day."""

    positions: int
    distance_m: float
    moving_s: float
    idle_s: float
    stopped_s: float
    mean_speed_kmh: float | None
    max_speed_kmh: float | None
    trips: int
    stops: int
    segments: list[Segment] = field(default_factory=list)


def haversine_m(
    lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: npt.ArrayLike, lat2: npt.ArrayLike
) -> FloatArray:
    """Return great-circle distances in metres between (lon1, lat1) and (lon2, lat2)."""
    p1, p2 = np.radians(np.asarray(lat1, float)), np.radians(np.asarray(lat2, float))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), float)


def step_lengths_m(lon: npt.ArrayLike, lat: npt.ArrayLike) -> FloatArray:
    """Return the n-1 lengths between consecutive points, in metres."""
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    if x.size < 2:
        return np.zeros(0)
    return haversine_m(x[:-1], y[:-1], x[1:], y[1:])


def to_local_metres(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Project to a local equirectangular plane in metres (centred on the mean latitude)."""
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    lat0 = np.radians(float(np.mean(y))) if y.size else 0.0
    return (
        np.radians(x) * EARTH_RADIUS_M * np.cos(lat0),
        np.radians(y) * EARTH_RADIUS_M,
    )


def _valid_steps(t: FloatArray, steps: FloatArray, params: MovementParams) -> npt.NDArray[np.bool_]:
    """Steps that are not GPS outliers (implied speed below the limit)."""
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        implied_kmh = np.where(dt > 0, steps / dt * 3.6, np.inf)
    return np.asarray(implied_kmh <= params.max_implied_speed_kmh)


def segment_trips(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    speed_kmh: npt.ArrayLike | None = None,
    params: MovementParams = DEFAULT_PARAMS,
) -> list[Segment]:
    """Split a driver's time-ordered fixes into alternating stops and trips.

    The day starts in a stop at the first fix. A trip starts at the last fix within
    ``min_distance_m`` of the stop's anchor once a fix leaves that radius; it ends at the
    first fix of a run that stays within ``min_distance_m`` of it for ``min_duration_s``;
    a data gap longer than ``stop_gap_s`` ends a trip at the fix before the gap.
    """
    tt = np.asarray(t, float)
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    n = tt.size
    if n == 0:
        return []
    spd = np.zeros(n) if speed_kmh is None else np.nan_to_num(np.asarray(speed_kmh, float))
    px, py = to_local_metres(x, y)
    r2 = params.min_distance_m**2

    bounds: list[tuple[str, int, int]] = []
    moving = False
    seg_start = 0
    anchor = 0  # stop: where it stopped; trip: candidate end of the trip
    for i in range(1, n):
        gap = tt[i] - tt[i - 1] > params.stop_gap_s
        if moving:
            if gap:
                bounds.append(("trip", seg_start, i - 1))
                moving, seg_start, anchor = False, i - 1, i
                continue
            if (px[i] - px[anchor]) ** 2 + (py[i] - py[anchor]) ** 2 > r2:
                anchor = i
            elif tt[i] - tt[anchor] >= params.min_duration_s:
                # The trip ends where the vehicle came to rest, not where it entered the
                # radius: just after the last fix still reporting motion.
                end = anchor
                fast = np.nonzero(spd[anchor : i + 1] >= params.moving_speed_kmh)[0]
                if fast.size:
                    end = min(anchor + int(fast[-1]) + 1, i)
                bounds.append(("trip", seg_start, end))
                moving, seg_start, anchor = False, end, end
        else:
            if gap:
                anchor = i
                continue
            if (px[i] - px[anchor]) ** 2 + (py[i] - py[anchor]) ** 2 > r2:
                # The trip started when the vehicle set off: the last fix at rest before i.
                start = i - 1
                while start > seg_start and spd[start] >= params.moving_speed_kmh:
                    start -= 1
                if start > seg_start:
                    bounds.append(("stop", seg_start, start))
                moving, seg_start, anchor = True, start, i
    if moving:
        bounds.append(("trip", seg_start, n - 1))
    elif n - 1 > seg_start:
        bounds.append(("stop", seg_start, n - 1))

    steps = step_lengths_m(x, y)
    ok = _valid_steps(tt, steps, params)
    segments = []
    for kind, a, b in bounds:
        if kind == "trip":
            dist = float(np.sum(steps[a:b][ok[a:b]]))
            slon, slat = float(x[a]), float(y[a])
        else:
            dist = 0.0
            slon, slat = float(np.mean(x[a : b + 1])), float(np.mean(y[a : b + 1]))
        segments.append(
            Segment(
                kind="trip" if kind == "trip" else "stop",
                start=a,
                end=b,
                start_time=float(tt[a]),
                end_time=float(tt[b]),
                distance_m=dist,
                lon=slon,
                lat=slat,
                end_lon=float(x[b]),
                end_lat=float(y[b]),
                max_speed_kmh=float(np.max(spd[a : b + 1])),
            )
        )
    return segments


def filtered_distance_m(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    params: MovementParams = DEFAULT_PARAMS,
) -> float:
    """Return the distance driven with GPS jitter filtered out.

    Only steps inside trips count (jitter while stopped does not add distance), and steps
    whose implied speed exceeds ``max_implied_speed_kmh`` are dropped as outliers.
    """
    return float(sum(s.distance_m for s in segment_trips(t, lon, lat, None, params)))


def summarize_day(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    speed_kmh: npt.ArrayLike,
    params: MovementParams = DEFAULT_PARAMS,
) -> DaySummary:
    """Return the day statistics of one driver's time-ordered fixes.

    Time between consecutive fixes is *stopped* when both lie in a stop, else (inside a
    trip, interval at most ``max_interval_s``) *moving* when the later fix's speed is at
    least ``moving_speed_kmh`` and *idle* otherwise. Mean speed is the mean reported speed
    of the moving fixes; stops count the stops of at least ``min_duration_s``.
    """
    tt = np.asarray(t, float)
    spd = np.asarray(speed_kmh, float)
    n = tt.size
    segments = segment_trips(tt, lon, lat, spd, params)
    in_stop = np.zeros(n, bool)
    for s in segments:
        if s.kind == "stop":
            in_stop[s.start : s.end + 1] = True
    dt = np.diff(tt)
    stopped_iv = in_stop[:-1] & in_stop[1:]
    later = np.nan_to_num(spd[1:]) if n > 1 else np.zeros(0)
    usable = ~stopped_iv & (dt <= params.max_interval_s)
    moving_iv = usable & (later >= params.moving_speed_kmh)
    idle_iv = usable & (later < params.moving_speed_kmh)
    moving_fixes = spd[1:][moving_iv] if n > 1 else np.zeros(0)
    finite = spd[np.isfinite(spd)]
    return DaySummary(
        positions=n,
        distance_m=float(sum(s.distance_m for s in segments if s.kind == "trip")),
        moving_s=float(np.sum(dt[moving_iv])),
        idle_s=float(np.sum(dt[idle_iv])),
        stopped_s=float(np.sum(dt[stopped_iv])),
        mean_speed_kmh=float(np.mean(moving_fixes)) if moving_fixes.size else None,
        max_speed_kmh=float(np.max(finite)) if finite.size else None,
        trips=sum(1 for s in segments if s.kind == "trip"),
        stops=sum(
            1 for s in segments if s.kind == "stop" and s.duration_s >= params.min_duration_s
        ),
        segments=segments,
    )


def _point_segment_distances(px: FloatArray, py: FloatArray, a: int, b: int) -> tuple[int, float]:
    """Return the index in (a, b) farthest from the chord a-b, and its distance."""
    xs, ys = px[a + 1 : b], py[a + 1 : b]
    dx, dy = px[b] - px[a], py[b] - py[a]
    norm2 = dx * dx + dy * dy
    if norm2 == 0.0:
        d = np.hypot(xs - px[a], ys - py[a])
    else:
        u = np.clip(((xs - px[a]) * dx + (ys - py[a]) * dy) / norm2, 0.0, 1.0)
        d = np.hypot(xs - (px[a] + u * dx), ys - (py[a] + u * dy))
    k = int(np.argmax(d))
    return a + 1 + k, float(d[k])


def simplify_indices(
    lon: npt.ArrayLike, lat: npt.ArrayLike, max_points: int
) -> npt.NDArray[np.intp]:
    """Return the sorted indexes of at most ``max_points`` points that keep the shape.

    Douglas-Peucker in a local metric projection, refined greedily: the point farthest from
    its current chord is added next, so the result for any budget is the best-first prefix.
    The first and last points are always kept (``max_points`` >= 2).
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    px, py = to_local_metres(lon, lat)
    n = px.size
    if n <= max_points:
        return np.arange(n, dtype=np.intp)
    kept = [0, n - 1]
    heap: list[tuple[float, int, int, int]] = []

    def push(a: int, b: int) -> None:
        if b - a > 1:
            k, d = _point_segment_distances(px, py, a, b)
            heapq.heappush(heap, (-d, k, a, b))

    push(0, n - 1)
    while heap and len(kept) < max_points:
        _, k, a, b = heapq.heappop(heap)
        kept.append(k)
        push(a, k)
        push(k, b)
    return np.sort(np.asarray(kept, dtype=np.intp))
