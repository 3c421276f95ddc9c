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
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from geo import distance
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


class Motion(IntEnum):
    """What the interval ending at a fix was; stored per fix as ``positions.motion``."""

    MOVING = 1  # inside a trip, at most max_interval_s long, the later fix at moving speed
    IDLE = 2  # inside a trip, at most max_interval_s long, slower (lights, queues)
    UNTIMED = 3  # inside a trip but longer than max_interval_s: its distance counts, not its time
    STOPPED = 4  # both fixes in a stop


class SegmentStart(IntEnum):
    """Stored per fix as ``positions.segment_start``: a trip or a stop begins at this fix."""

    TRIP = 1
    STOP = 2


TRIP_MOTIONS = (Motion.MOVING, Motion.IDLE, Motion.UNTIMED)
DAY_S = 86_400


class FixLabel(NamedTuple):
    """The per-fix values the history stores so that aggregates need no window function.

    ``step_s``/``step_m`` are measured from the driver's previous fix of the same UTC day
    (None for the day's first); ``trip_m`` is the part of ``step_m`` that counts as distance
    driven (inside a trip, not a GPS outlier); ``stop_counted`` marks the fix at which the
    current stop reached ``min_duration_s`` (so counting stops is counting these).
    """

    step_s: float | None
    step_m: float | None
    motion: Motion | None
    trip_m: float
    segment_start: SegmentStart | None
    stop_counted: bool

    def as_row(self) -> tuple[float | int | bool | None, ...]:
        """The fields in order, enums as plain ints (what a database driver takes)."""
        return (
            self.step_s,
            self.step_m,
            None if self.motion is None else int(self.motion),
            self.trip_m,
            None if self.segment_start is None else int(self.segment_start),
            self.stop_counted,
        )


NO_LABEL_ROW: tuple[None, ...] = (None,) * 6  # a late or invalid fix: as_row of nothing


@dataclass(frozen=True, slots=True)
class Relabel:
    """A change to fixes already labelled, decided by a later fix.

    The fixes with ``after < t < before`` now lie in a trip (``to_trip``) or a stop: their
    motion and trip distance are classified again (``classify_step``) and their markers
    cleared. Then the fix at ``mark_t`` gets the segment start ``mark``.
    """

    after: float
    before: float
    to_trip: bool
    mark_t: float
    mark: SegmentStart


def classify_step(
    in_trip: bool,
    step_s: float,
    step_m: float,
    speed_kmh: float,
    params: MovementParams = DEFAULT_PARAMS,
) -> tuple[Motion, float]:
    """Return the motion of an interval and the distance it adds to the trips (metres)."""
    if not in_trip:
        return Motion.STOPPED, 0.0
    implied_kmh = step_m / step_s * 3.6 if step_s > 0 else math.inf
    trip_m = step_m if implied_kmh <= params.max_implied_speed_kmh else 0.0
    if step_s > params.max_interval_s:
        return Motion.UNTIMED, trip_m
    if speed_kmh >= params.moving_speed_kmh:
        return Motion.MOVING, trip_m
    return Motion.IDLE, trip_m


@dataclass(slots=True)
class MotionState:
    """One driver's trip/stop segmentation, carried from fix to fix within a UTC day."""

    day: int
    t: float  # the last fix
    lon: float
    lat: float
    in_trip: bool
    seg_start_t: float  # the first fix of the current trip or stop
    stop_counted: bool  # the current stop reached min_duration_s
    anchor_t: float  # stop: where it stopped; trip: where it may end
    anchor_lon: float
    anchor_lat: float
    # stop: the last fix after seg_start slower than moving speed (the trip would start there)
    last_slow_t: float | None
    # trip: the fix just after the last fast one since the anchor (the trip would end there);
    # end_pending: the latest fix was fast, so the next fix becomes the candidate
    end_t: float
    end_lon: float
    end_lat: float
    end_pending: bool


def _start_day(t: float, lon: float, lat: float) -> tuple[MotionState, FixLabel]:
    """The day starts in a stop at its first fix."""
    state = MotionState(
        day=int(t // DAY_S),
        t=t,
        lon=lon,
        lat=lat,
        in_trip=False,
        seg_start_t=t,
        stop_counted=False,
        anchor_t=t,
        anchor_lon=lon,
        anchor_lat=lat,
        last_slow_t=None,
        end_t=t,
        end_lon=lon,
        end_lat=lat,
        end_pending=False,
    )
    return state, FixLabel(None, None, None, 0.0, SegmentStart.STOP, False)


def step_motion(
    state: MotionState | None,
    t: float,
    lon: float,
    lat: float,
    speed_kmh: float,
    params: MovementParams = DEFAULT_PARAMS,
) -> tuple[MotionState, FixLabel, Relabel | None]:
    """Label the next fix of a driver (``t`` later than ``state.t``); update ``state`` in place.

    Follows Traccar's default trip logic (module docstring). Where the decision about a
    segment's start or end reaches back to fixes already labelled, the returned ``Relabel``
    says which; it only ever reaches back over the current segment's last few minutes.
    """
    if state is None or int(t // DAY_S) != state.day:
        return (*_start_day(t, lon, lat), None)
    s = state
    step_s = t - s.t
    step_m = distance.haversine_m(s.lon, s.lat, lon, lat)
    fast = speed_kmh >= params.moving_speed_kmh
    relabel: Relabel | None = None
    if s.in_trip:
        if step_s > params.stop_gap_s:
            # a gap ends the trip at the previous fix; a stop starts there
            relabel = Relabel(s.t, s.t, False, s.t, SegmentStart.STOP)
            s.in_trip, s.seg_start_t, s.stop_counted = False, s.t, False
            s.last_slow_t = None if fast else t
            s.anchor_t, s.anchor_lon, s.anchor_lat = t, lon, lat
        elif distance.haversine_m(s.anchor_lon, s.anchor_lat, lon, lat) > params.min_distance_m:
            s.anchor_t, s.anchor_lon, s.anchor_lat = t, lon, lat
            s.end_t, s.end_lon, s.end_lat, s.end_pending = t, lon, lat, fast
        else:
            if s.end_pending:
                s.end_t, s.end_lon, s.end_lat = t, lon, lat
            s.end_pending = fast
            if t - s.anchor_t >= params.min_duration_s:
                # the trip ends where the vehicle came to rest: just after the last fix still
                # reporting motion (or here, if this one does)
                end_t, end_lon, end_lat = (
                    (t, lon, lat) if s.end_pending else (s.end_t, s.end_lon, s.end_lat)
                )
                relabel = Relabel(end_t, t, False, end_t, SegmentStart.STOP)
                s.in_trip, s.seg_start_t, s.stop_counted = False, end_t, False
                s.anchor_t, s.anchor_lon, s.anchor_lat = end_t, end_lon, end_lat
                s.last_slow_t = t if end_t < t else None
                if end_t == t:  # this fix ends the trip: its own interval is still driving
                    motion, trip_m = classify_step(True, step_s, step_m, speed_kmh, params)
                    s.t, s.lon, s.lat = t, lon, lat
                    return s, FixLabel(step_s, step_m, motion, trip_m, None, False), relabel
    else:
        if step_s <= params.stop_gap_s and (
            distance.haversine_m(s.anchor_lon, s.anchor_lat, lon, lat) > params.min_distance_m
        ):
            # the trip started when the vehicle set off: the last fix at rest before this one
            start_t = s.seg_start_t if s.last_slow_t is None else s.last_slow_t
            relabel = Relabel(start_t, t, True, start_t, SegmentStart.TRIP)
            s.in_trip, s.seg_start_t = True, start_t
            s.anchor_t, s.anchor_lon, s.anchor_lat = t, lon, lat
            s.end_t, s.end_lon, s.end_lat, s.end_pending = t, lon, lat, fast
        else:
            if step_s > params.stop_gap_s:
                s.anchor_t, s.anchor_lon, s.anchor_lat = t, lon, lat
            if not fast:
                s.last_slow_t = t
    motion, trip_m = classify_step(s.in_trip, step_s, step_m, speed_kmh, params)
    counted = False
    if not s.in_trip and not s.stop_counted and t - s.seg_start_t >= params.min_duration_s:
        counted = s.stop_counted = True
    s.t, s.lon, s.lat = t, lon, lat
    return s, FixLabel(step_s, step_m, motion, trip_m, None, counted), relabel


@dataclass
class DayLabels:
    """``FixLabel`` columns for an array of time-ordered fixes (what ``label_fixes`` returns)."""

    step_s: FloatArray  # NaN where None
    step_m: FloatArray
    motion: npt.NDArray[np.int16]  # 0 where None
    trip_m: FloatArray
    segment_start: npt.NDArray[np.int16]  # 0 where None
    stop_counted: npt.NDArray[np.bool_]

    def label(self, i: int) -> FixLabel:
        """Return fix ``i``'s label."""
        return FixLabel(
            None if math.isnan(self.step_s[i]) else float(self.step_s[i]),
            None if math.isnan(self.step_m[i]) else float(self.step_m[i]),
            Motion(int(self.motion[i])) if self.motion[i] else None,
            float(self.trip_m[i]),
            SegmentStart(int(self.segment_start[i])) if self.segment_start[i] else None,
            bool(self.stop_counted[i]),
        )


def apply_relabel(
    labels: DayLabels,
    t: FloatArray,
    speed_kmh: FloatArray,
    relabel: Relabel,
    params: MovementParams = DEFAULT_PARAMS,
) -> None:
    """Apply a ``Relabel`` to labels held in arrays (``t`` sorted ascending)."""
    a = int(np.searchsorted(t, relabel.after, "right"))
    b = int(np.searchsorted(t, relabel.before, "left"))
    for j in range(a, b):
        motion, trip_m = classify_step(
            relabel.to_trip,
            float(labels.step_s[j]),
            float(labels.step_m[j]),
            float(speed_kmh[j]),
            params,
        )
        labels.motion[j], labels.trip_m[j] = motion, trip_m
    labels.segment_start[a:b] = 0
    labels.stop_counted[a:b] = False
    labels.segment_start[int(np.searchsorted(t, relabel.mark_t, "left"))] = relabel.mark


def label_fixes(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    speed_kmh: npt.ArrayLike | None = None,
    params: MovementParams = DEFAULT_PARAMS,
    state: MotionState | None = None,
) -> tuple[DayLabels, MotionState | None]:
    """Label one driver's strictly time-ordered fixes with ``step_motion``, relabels applied.

    ``state`` continues from earlier fixes (it is updated in place); the final state is
    returned with the labels.
    """
    tt = np.asarray(t, float)
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    n = tt.size
    spd = np.zeros(n) if speed_kmh is None else np.nan_to_num(np.asarray(speed_kmh, float))
    labels = DayLabels(
        np.full(n, np.nan),
        np.full(n, np.nan),
        np.zeros(n, np.int16),
        np.zeros(n),
        np.zeros(n, np.int16),
        np.zeros(n, bool),
    )
    for i in range(n):
        state, lab, relabel = step_motion(
            state, float(tt[i]), float(x[i]), float(y[i]), float(spd[i]), params
        )
        if lab.step_s is not None:
            labels.step_s[i] = lab.step_s
            labels.step_m[i] = lab.step_m
        labels.motion[i] = lab.motion or 0
        labels.trip_m[i] = lab.trip_m
        labels.segment_start[i] = lab.segment_start or 0
        labels.stop_counted[i] = lab.stop_counted
        if relabel is not None:
            apply_relabel(labels, tt[: i + 1], spd, relabel, params)
    return labels, state


def segments_from_labels(
    t: FloatArray,
    lon: FloatArray,
    lat: FloatArray,
    speed_kmh: FloatArray,
    labels: DayLabels,
) -> list[Segment]:
    """Return the trips and stops that the labels' segment starts delimit."""
    n = t.size
    starts = [int(i) for i in np.nonzero(labels.segment_start)[0]]
    segments = []
    for k, a in enumerate(starts):
        b = starts[k + 1] if k + 1 < len(starts) else n - 1
        kind: Literal["trip", "stop"] = (
            "trip" if labels.segment_start[a] == SegmentStart.TRIP else "stop"
        )
        if b == a:
            continue  # a stop that begins at the day's very last fix has no duration
        if kind == "trip":
            dist = float(np.sum(labels.trip_m[a + 1 : b + 1]))
            slon, slat = float(lon[a]), float(lat[a])
        else:
            dist = 0.0
            slon, slat = float(np.mean(lon[a : b + 1])), float(np.mean(lat[a : b + 1]))
        segments.append(
            Segment(
                kind=kind,
                start=a,
                end=b,
                start_time=float(t[a]),
                end_time=float(t[b]),
                distance_m=dist,
                lon=slon,
                lat=slat,
                end_lon=float(lon[b]),
                end_lat=float(lat[b]),
                max_speed_kmh=float(np.max(speed_kmh[a : b + 1])),
            )
        )
    return segments


def segment_trips(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    speed_kmh: npt.ArrayLike | None = None,
    params: MovementParams = DEFAULT_PARAMS,
) -> list[Segment]:
    """Split a driver's time-ordered fixes (one UTC day) into alternating stops and trips.

    The day starts in a stop at the first fix. A trip starts at the last fix at rest within
    ``min_distance_m`` of the stop's anchor once a fix leaves that radius; it ends just after
    the last moving fix of a run that stays within ``min_distance_m`` for ``min_duration_s``;
    a data gap longer than ``stop_gap_s`` ends a trip at the fix before the gap. The same
    labels as the enrichment worker stores (``step_motion``), so reports and aggregates agree.
    """
    tt = np.asarray(t, float)
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    spd = np.zeros(tt.size) if speed_kmh is None else np.nan_to_num(np.asarray(speed_kmh, float))
    if tt.size == 0:
        return []
    labels, _ = label_fixes(tt, x, y, spd, params)
    return segments_from_labels(tt, x, y, spd, labels)


def summarize_day(
    t: npt.ArrayLike,
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    speed_kmh: npt.ArrayLike,
    params: MovementParams = DEFAULT_PARAMS,
) -> DaySummary:
    """Return the day statistics of one driver's time-ordered fixes (sums of their labels).

    Time between consecutive fixes is *stopped* when both lie in a stop, else (inside a
    trip, interval at most ``max_interval_s``) *moving* when the later fix's speed is at
    least ``moving_speed_kmh`` and *idle* otherwise. Mean speed is the mean reported speed
    of the moving fixes; stops count the stops of at least ``min_duration_s``.
    """
    tt = np.asarray(t, float)
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    spd = np.asarray(speed_kmh, float)
    labels, _ = label_fixes(tt, x, y, spd, params)
    step = np.nan_to_num(labels.step_s)
    moving = labels.motion == Motion.MOVING
    finite = spd[np.isfinite(spd)]
    return DaySummary(
        positions=tt.size,
        distance_m=float(np.sum(labels.trip_m)),
        moving_s=float(np.sum(step[moving])),
        idle_s=float(np.sum(step[labels.motion == Motion.IDLE])),
        stopped_s=float(np.sum(step[labels.motion == Motion.STOPPED])),
        mean_speed_kmh=float(np.mean(spd[moving])) if moving.any() else None,
        max_speed_kmh=float(np.max(finite)) if finite.size else None,
        trips=int(np.sum(labels.segment_start == SegmentStart.TRIP)),
        stops=int(np.sum(labels.stop_counted)),
        segments=segments_from_labels(tt, x, y, np.nan_to_num(spd), labels),
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
