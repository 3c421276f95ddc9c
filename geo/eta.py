"""ETA along a route's road segments at the speeds learned for the time they will be driven.

A route's planned path is cut into pieces (the path's own vertex pairs); a piece that lies on a
known road segment carries the segment's key, road class and free-flow speed, every piece
carries the H3 cell of its midpoint. A :class:`SpeedProfile` holds what history taught (metres
per second by directed segment and hour of the week, from map-matched traversals) and answers
for every piece with a fallback chain:

    segment at that hour → segment at any hour × its road class's hour profile
    → H3 cell at that hour → road class at that hour → planning speed

each level only where it rests on at least ``min_samples`` traversals. :class:`RouteClock`
turns that into cumulative driving time along the route for a given hour (cached per hour)
and walks from a position to each remaining stop, switching hours as the clock passes them.
The driver's own pace (how much faster or slower than the profile they have been driving
lately) is blended in for the next stretch and fades with the horizon.

Hours of the week are UTC, Monday 00:00 = 0: learning and predicting use the same clock, so
only daylight-saving changes shift local traffic by an hour against it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from geo.matching import EdgeKey

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
WEEK_HOURS = 168
HOUR_S = 3600.0
MONDAY_S = 4 * 86400.0  # 1970-01-05 00:00 UTC, the first Monday of the epoch
MIN_SPEED_MS = 1.0  # a learned speed below this is a data error, not traffic
MAX_SPEED_MS = 130 / 3.6
PROFILE_CELL_RESOLUTION = 8  # ~0.7 km² hexagons: a neighbourhood's streets share traffic

# the levels of the fallback chain, as analysts see them
SOURCE_SEGMENT_HOUR = "segment_hour"
SOURCE_SEGMENT_SCALED = "segment_scaled"
SOURCE_CELL_HOUR = "cell_hour"
SOURCE_CLASS_HOUR = "class_hour"
SOURCE_PLANNING = "planning"
SOURCES = (
    SOURCE_SEGMENT_HOUR,
    SOURCE_SEGMENT_SCALED,
    SOURCE_CELL_HOUR,
    SOURCE_CLASS_HOUR,
    SOURCE_PLANNING,
)


def hour_of_week(t_s: float) -> int:
    """0 for Monday 00:00–01:00 UTC … 167 for Sunday 23:00–24:00."""
    return int((t_s - MONDAY_S) // HOUR_S) % WEEK_HOURS


def next_hour_s(t_s: float) -> float:
    """The start of the hour after the one ``t_s`` falls in (epoch seconds)."""
    return (math.floor(t_s / HOUR_S) + 1) * HOUR_S


@dataclass(frozen=True, slots=True)
class SpeedSample:
    """Traversals of one segment in one hour of the week, summed over the weeks learned."""

    key: EdgeKey
    highway: str | None
    cell: int | None
    hour: int
    length_m: float  # sum of the traversals' lengths
    travel_s: float  # sum of their durations
    count: int


def _harmonic(length: float, travel: float) -> float:
    """Space-mean speed of summed traversals: total distance over total time."""
    return min(max(length / travel, MIN_SPEED_MS), MAX_SPEED_MS) if travel > 0 else math.nan


@dataclass
class _Sums:
    length: FloatArray = field(default_factory=lambda: np.zeros(WEEK_HOURS))
    travel: FloatArray = field(default_factory=lambda: np.zeros(WEEK_HOURS))
    count: FloatArray = field(default_factory=lambda: np.zeros(WEEK_HOURS))

    def add(self, s: SpeedSample) -> None:
        self.length[s.hour] += s.length_m
        self.travel[s.hour] += s.travel_s
        self.count[s.hour] += s.count

    def by_hour(self, min_samples: int) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.clip(self.length / self.travel, MIN_SPEED_MS, MAX_SPEED_MS)
        return np.where(self.count >= min_samples, v, np.nan)

    def overall(self, min_samples: int) -> float:
        if self.count.sum() < min_samples:
            return math.nan
        return _harmonic(float(self.length.sum()), float(self.travel.sum()))


@dataclass(frozen=True)
class SpeedProfile:
    """What history taught: speeds (m/s) by hour of the week, at each level of the chain."""

    segment_hour: dict[EdgeKey, FloatArray]  # (168,), nan where too few samples
    segment_any: dict[EdgeKey, float]  # all hours together
    class_hour: dict[str, FloatArray]
    class_factor: dict[str, FloatArray]  # class speed at the hour / its all-hours speed
    cell_hour: dict[int, FloatArray]
    planning_speed_ms: float
    min_samples: int
    samples: int = 0  # traversals behind the whole profile

    @classmethod
    def empty(cls, planning_speed_ms: float, min_samples: int = 3) -> SpeedProfile:
        return cls({}, {}, {}, {}, {}, planning_speed_ms, min_samples)

    @classmethod
    def learn(
        cls, samples: Iterable[SpeedSample], planning_speed_ms: float, min_samples: int = 3
    ) -> SpeedProfile:
        """Build every level of the chain from per-(segment, hour) sums."""
        seg: dict[EdgeKey, _Sums] = {}
        cls_: dict[str, _Sums] = {}
        cell: dict[int, _Sums] = {}
        total = 0
        for s in samples:
            total += s.count
            seg.setdefault(s.key, _Sums()).add(s)
            if s.highway is not None:
                cls_.setdefault(s.highway, _Sums()).add(s)
            if s.cell is not None:
                cell.setdefault(s.cell, _Sums()).add(s)
        class_hour = {k: v.by_hour(min_samples) for k, v in cls_.items()}
        class_factor = {}
        for k, v in cls_.items():
            overall = v.overall(min_samples)
            if math.isfinite(overall):
                class_factor[k] = class_hour[k] / overall
        segment_any = {k: v.overall(min_samples) for k, v in seg.items()}
        return cls(
            segment_hour={k: v.by_hour(min_samples) for k, v in seg.items()},
            segment_any={k: v for k, v in segment_any.items() if math.isfinite(v)},
            class_hour=class_hour,
            class_factor=class_factor,
            cell_hour={k: v.by_hour(min_samples) for k, v in cell.items()},
            planning_speed_ms=planning_speed_ms,
            min_samples=min_samples,
            samples=total,
        )

    def knows(self, piece: RoadPiece) -> bool:
        """Whether anything learned (above the planning speed) applies to a piece of road."""
        return (
            (piece.key is not None and piece.key in self.segment_any)
            or (piece.cell is not None and piece.cell in self.cell_hour)
            or (piece.highway is not None and piece.highway in self.class_hour)
        )

    def speed(
        self, key: EdgeKey | None, highway: str | None, cell: int | None, hour: int
    ) -> tuple[float, str]:
        """The speed (m/s) for a piece of road at an hour of the week, and its level."""
        if key is not None:
            v = self.segment_hour.get(key)
            if v is not None and math.isfinite(v[hour]):
                return float(v[hour]), SOURCE_SEGMENT_HOUR
            anyhour = self.segment_any.get(key)
            if anyhour is not None:
                factor = self.class_factor.get(highway) if highway is not None else None
                f = 1.0 if factor is None or not math.isfinite(factor[hour]) else factor[hour]
                return min(max(anyhour * f, MIN_SPEED_MS), MAX_SPEED_MS), SOURCE_SEGMENT_SCALED
        if cell is not None:
            v = self.cell_hour.get(cell)
            if v is not None and math.isfinite(v[hour]):
                return float(v[hour]), SOURCE_CELL_HOUR
        if highway is not None:
            v = self.class_hour.get(highway)
            if v is not None and math.isfinite(v[hour]):
                return float(v[hour]), SOURCE_CLASS_HOUR
        return self.planning_speed_ms, SOURCE_PLANNING

    @cached_property
    def tables(self) -> SpeedTables:
        """The chain's levels as arrays, for a whole route's pieces at once."""
        return SpeedTables.of(self)


def _rows(keys: Iterable[object]) -> dict[object, int]:
    return {k: i for i, k in enumerate(keys)}


def _stack(rows: dict[Any, int], values: dict[Any, FloatArray]) -> FloatArray:
    """(len(rows) + 1, 168): each key's hours in its row, nan elsewhere; the last row is the
    all-nan row that index -1 (unknown) reads."""
    out = np.full((len(rows) + 1, WEEK_HOURS), np.nan)
    for k, v in values.items():
        out[rows[k]] = v
    return out


@dataclass(frozen=True)
class SpeedTables:
    """A :class:`SpeedProfile` as arrays with row numbers by key (-1 for unknown, which reads
    an all-nan row): the same answers as ``SpeedProfile.speed`` for many pieces at once."""

    segment_rows: dict[Any, int]
    segment_hour: FloatArray  # (segments + 1, 168)
    segment_any: FloatArray  # (segments + 1,)
    class_rows: dict[Any, int]
    class_hour: FloatArray  # (classes + 1, 168)
    class_factor: FloatArray  # (classes + 1, 168), nan where none
    cell_rows: dict[Any, int]
    cell_hour: FloatArray  # (cells + 1, 168)

    @classmethod
    def of(cls, p: SpeedProfile) -> SpeedTables:
        seg = _rows(p.segment_hour.keys() | p.segment_any.keys())
        any_hour = np.full(len(seg) + 1, np.nan)
        for k, v in p.segment_any.items():
            any_hour[seg[k]] = v
        classes = _rows(p.class_hour.keys() | p.class_factor.keys())
        cells = _rows(p.cell_hour.keys())
        return cls(
            seg,
            _stack(seg, p.segment_hour),
            any_hour,
            classes,
            _stack(classes, p.class_hour),
            _stack(classes, p.class_factor),
            cells,
            _stack(cells, p.cell_hour),
        )

    def rows(self, pieces: Sequence[RoadPiece]) -> tuple[IntArray, IntArray, IntArray]:
        """Each piece's row in the segment, class and cell tables."""
        seg, classes, cells = self.segment_rows, self.class_rows, self.cell_rows
        return (
            np.fromiter((seg.get(p.key, -1) for p in pieces), np.intp, len(pieces)),
            np.fromiter((classes.get(p.highway, -1) for p in pieces), np.intp, len(pieces)),
            np.fromiter((cells.get(p.cell, -1) for p in pieces), np.intp, len(pieces)),
        )

    def speeds(
        self, rows: tuple[IntArray, IntArray, IntArray], hour: int, planning_ms: float
    ) -> FloatArray:
        """The chain for every piece at an hour, applied from its last level to its first so
        that the most specific level found wins."""
        seg, cls_, cell = rows
        v = np.full(len(seg), planning_ms)
        for level in (self.class_hour[cls_, hour], self.cell_hour[cell, hour]):
            v = np.where(np.isfinite(level), level, v)
        factor = self.class_factor[cls_, hour]
        factor = np.where(np.isfinite(factor), factor, 1.0)
        scaled = np.clip(self.segment_any[seg] * factor, MIN_SPEED_MS, MAX_SPEED_MS)
        v = np.where(np.isfinite(scaled), scaled, v)
        at_hour = self.segment_hour[seg, hour]
        return np.where(np.isfinite(at_hour), at_hour, v)


@dataclass(frozen=True, slots=True)
class RoadPiece:
    """What is known about one piece of a route's path."""

    key: EdgeKey | None
    highway: str | None
    cell: int | None
    free_flow_ms: float | None  # the road's free-flow (signed/class) speed, if known


@dataclass(frozen=True, eq=False)
class RouteRoads:
    """A route's path as pieces with their start along the route (m), for a RouteLine."""

    start_m: FloatArray  # (k,) ascending; piece i spans start_m[i]..start_m[i] + length_m[i]
    length_m: FloatArray
    pieces: tuple[RoadPiece, ...]

    @property
    def matched_share(self) -> float:
        """The share of the path's length that lies on known road segments."""
        return self.share(lambda p: p.key is not None)

    def share(self, test: Callable[[RoadPiece], bool]) -> float:
        """The share of the path's length whose pieces pass ``test``."""
        total = float(self.length_m.sum())
        hits = sum(float(n) for n, p in zip(self.length_m, self.pieces, strict=True) if test(p))
        return hits / total if total > 0 else 0.0


TIMES_KEPT = 64  # RouteClock._time_at results kept per route (a few are read again)


class RouteClock:
    """Driving time along a route at a profile's speeds; cumulative times cached per hour."""

    def __init__(
        self, roads: RouteRoads, profile: SpeedProfile, *, free_flow: bool = False
    ) -> None:
        self.roads = roads
        self.profile = profile
        self.free_flow = free_flow  # the free-flow baseline: road speeds, no learning
        # per hour slot: (speed of each piece, cumulative time at each piece's start), as
        # lists: read one number at a time on every fix, where numpy's .item() cost 3x more
        self._cum: dict[int, tuple[list[float], list[float]]] = {}
        self._starts: list[float] = roads.start_m.tolist()
        self._lengths: list[float] = roads.length_m.tolist()
        # _time_at by (hour, metres): a fix's position is read again by the next stop's ETA
        # and by the next fix's pace, and the next stop's position by every fix until it
        self._times: dict[tuple[int, float], float] = {}
        self._fixed: FloatArray | None = None  # speeds that do not depend on the hour
        self._rows: tuple[IntArray, IntArray, IntArray] | None = None
        if free_flow:
            self._fixed = np.array(
                [p.free_flow_ms or profile.planning_speed_ms for p in roads.pieces], dtype=float
            )
        elif profile.samples == 0:  # nothing learned: the planning speed
            self._fixed = np.full(len(roads.pieces), profile.planning_speed_ms)
        else:
            self._rows = profile.tables.rows(roads.pieces)

    def speeds(self, hour: int) -> FloatArray:
        """Each piece's speed (m/s) at an hour of the week."""
        if self._fixed is not None:
            return self._fixed
        assert self._rows is not None
        return self.profile.tables.speeds(self._rows, hour, self.profile.planning_speed_ms)

    def _at(self, hour: int) -> tuple[list[float], list[float]]:
        """(speed of each piece, cumulative time at each piece's start) for an hour."""
        slot = hour if self._fixed is None else -1  # fixed speeds: one clock for every hour
        found = self._cum.get(slot)
        if found is None:
            v = self.speeds(hour)
            cum = np.concatenate([[0.0], np.cumsum(self.roads.length_m / v)])
            found = (v.tolist(), cum.tolist())
            self._cum[slot] = found
        return found

    def _time_at(self, hour: int, along_m: float) -> float:
        """Driving time from the route's start to ``along_m`` at the hour's speeds."""
        key = (hour, along_m)
        found = self._times.get(key)
        if found is not None:
            return found
        v, cum = self._at(hour)
        starts = self._starts
        i = min(max(bisect.bisect_right(starts, along_m) - 1, 0), len(starts) - 1)
        into = min(max(along_m - starts[i], 0.0), self._lengths[i])
        found = cum[i] + into / v[i]
        if len(self._times) >= TIMES_KEPT:
            self._times.clear()
        self._times[key] = found
        return found

    def _along_at(self, hour: int, time_s: float) -> float:
        """The inverse of ``_time_at``: where the route's clock reads ``time_s``."""
        v, cum = self._at(hour)
        i = bisect.bisect_right(cum, time_s) - 1
        i = min(max(i, 0), len(self._starts) - 1)
        into = min((time_s - cum[i]) * v[i], self._lengths[i])
        return self._starts[i] + max(into, 0.0)

    def stretch_s(self, from_m: float, to_m: float, at_s: float) -> float:
        """Seconds to drive a short stretch at the speeds of the hour of ``at_s`` (a stretch
        between two fixes: an hour turning within it changes nothing worth a second look)."""
        if to_m <= from_m:
            return 0.0
        hour = hour_of_week(at_s)
        return self._time_at(hour, to_m) - self._time_at(hour, from_m)

    def travel_s(self, from_m: float, to_m: float, start_s: float) -> float:
        """Seconds to drive from ``from_m`` to ``to_m`` starting at epoch ``start_s``; each
        stretch at the speeds of the hour in which it is driven."""
        if to_m <= from_m:
            return 0.0
        t, pos, spent = start_s, from_m, 0.0
        for _ in range(WEEK_HOURS):  # at most one switch per hour driven
            hour = hour_of_week(t)
            begin = self._time_at(hour, pos)
            need = self._time_at(hour, to_m) - begin
            left_in_hour = next_hour_s(t) - t
            if need <= left_in_hour:
                return spent + need
            pos = self._along_at(hour, begin + left_in_hour)
            spent += left_in_hour
            t += left_in_hour
        return spent


class Pace(NamedTuple):
    """How the driver has been driving against the clock lately: decayed sums of the time
    they took and the time the profile expected for the same stretches."""

    taken_s: float = 0.0
    expected_s: float = 0.0

    def observe(self, taken_s: float, expected_s: float, half_life_s: float) -> Pace:
        decay = math.pow(0.5, min(max(taken_s, 0.0), half_life_s) / half_life_s)
        return Pace(self.taken_s * decay + taken_s, self.expected_s * decay + expected_s)

    def ratio(self, prior_s: float, low: float = 0.5, high: float = 2.5) -> float:
        """Taken over expected, shrunk towards 1 by ``prior_s`` seconds of evidence."""
        r = (self.taken_s + prior_s) / (self.expected_s + prior_s)
        return min(max(r, low), high)


def paced(start_s: float, end_s: float, ratio: float, fade_s: float) -> float:
    """Extra seconds the driver's pace adds to driving from ``start_s`` to ``end_s`` (seconds
    from now, at the profile's speeds): the pace applies fully now and fades with the horizon
    (exponentially, time constant ``fade_s``), since a driver's current conditions are a
    better guide to the next kilometre than to the one an hour away."""
    if end_s <= start_s:
        return 0.0
    return (ratio - 1.0) * fade_s * (math.exp(-start_s / fade_s) - math.exp(-end_s / fade_s))


def stop_etas(
    clock: RouteClock,
    along_m: float,
    now_s: float,
    stops_along_m: Sequence[float],
    dwell_s: Sequence[float],
    *,
    ready_in_s: float = 0.0,
    pace: float = 1.0,
    fade_s: float = 900.0,
) -> list[float]:
    """Seconds from now until the vehicle reaches each of the remaining stops.

    ``stops_along_m`` are the remaining stops in visiting order, ``dwell_s`` the time expected
    at each before driving on (the last one's is unused), ``ready_in_s`` how long until the
    vehicle drives off (the rest of the current stop's service, 0 when driving).
    """
    out: list[float] = []
    pos, clock_s, driving_s = along_m, ready_in_s, 0.0
    for k, target in enumerate(stops_along_m):
        raw = clock.travel_s(pos, target, now_s + clock_s)
        extra = paced(driving_s, driving_s + raw, pace, fade_s)
        driving_s += raw
        clock_s += max(raw + extra, 0.0)
        out.append(clock_s)
        clock_s += dwell_s[k] if k < len(dwell_s) else 0.0
        pos = max(pos, target)
    return out


def _vertex_keys(coords: Sequence[tuple[float, float]]) -> list[int]:
    """Each coordinate to 1e-6° (~0.1 m) as one integer: how a route's path and a road's
    geometry, written by different code from the same OSM nodes, are found to share a vertex.
    """
    if not coords:
        return []
    micro = np.rint(np.asarray(coords, dtype=float) * 1_000_000).astype(np.int64)
    keys: list[int] = (micro[:, 0] * (1 << 32) + micro[:, 1]).tolist()  # |lat| < 2**31 µ°
    return keys


class RoadIndex:
    """Which road segment each vertex pair of a path lies on, for cutting routes into pieces."""

    def __init__(
        self,
        roads: Iterable[tuple[EdgeKey, str | None, float | None, Sequence[tuple[float, float]]]],
        cell_of: Callable[[float, float], int],
        cells: Mapping[EdgeKey, int] | None = None,
    ) -> None:
        """``roads``: (key, road class, free-flow speed m/s, polyline (lon, lat) from source);
        ``cell_of(lon, lat)``: the H3 cell a piece's midpoint counts in; ``cells``: the cell
        each segment's traversals were learned in, which its pieces then count in too."""
        self.cell_of = cell_of
        self._pairs: dict[tuple[int, int], RoadPiece] = {}
        for key, highway, free_ms, coords in roads:
            cell = None if cells is None else cells.get(key)
            piece = RoadPiece(key, highway, cell, free_ms)
            keys = _vertex_keys(coords)
            for pair in zip(keys, keys[1:], strict=False):
                self._pairs[pair] = piece

    def __len__(self) -> int:
        return len(self._pairs)

    def route_roads(self, coords: Sequence[tuple[float, float]], cum_m: FloatArray) -> RouteRoads:
        """Cut a path (lon, lat; ``cum_m`` its length at each vertex) into pieces."""
        pieces = []
        keys = _vertex_keys(coords)
        for i, pair in enumerate(zip(keys, keys[1:], strict=False)):
            found = self._pairs.get(pair)
            if found is not None and found.cell is not None:
                pieces.append(found)
                continue
            (a_lon, a_lat), (b_lon, b_lat) = coords[i], coords[i + 1]
            cell = self.cell_of((a_lon + b_lon) / 2, (a_lat + b_lat) / 2)
            if found is None:
                pieces.append(RoadPiece(None, None, cell, None))
            else:
                pieces.append(RoadPiece(found.key, found.highway, cell, found.free_flow_ms))
        lengths = np.diff(cum_m)
        # a zero-length piece (a repeated vertex) would divide by its speed for nothing
        lengths = np.maximum(lengths, 1e-6)
        return RouteRoads(np.asarray(cum_m[:-1], dtype=float), lengths, tuple(pieces))
