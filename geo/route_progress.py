"""Progress along a planned route and the ETA to the next stop, in metres and seconds.

Geometry arrives in WGS84 lon/lat; it is projected once per route into a local azimuthal
equidistant projection centred on the route (metres, distortion negligible over a city),
where distance along the line is measured by projecting onto its segments (numpy).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from pyproj import Transformer

from geo.distance import haversine_m

DETOUR_FACTOR = 1.3  # road distance / straight line, used only when there is no geometry
MIN_SPEED_MS = 2.0  # below this the driver is waiting, not crawling: use the planning speed
MAX_SPEED_MS = 130 / 3.6
PRIOR_WEIGHT_S = 15.0  # the planning speed counts as this many seconds of driving
SMALL_WINDOW_SEGMENTS = 96  # up to this many segments plain Python beats numpy's overhead
# How far the path a fix is located on may be from the planned path: well inside GPS noise,
# and it drops ~70 % of a road network's vertices (bench/locate.py: 402 -> 120 a route)
LOCATE_TOLERANCE_M = 0.5


@lru_cache(maxsize=4096)
def _to_local(lon0: float, lat0: float) -> Transformer:
    return Transformer.from_crs(
        "EPSG:4326", f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +units=m +ellps=WGS84", always_xy=True
    )


def simplified_vertices(xy: np.ndarray, tolerance_m: float) -> np.ndarray:
    """Indices of the vertices a Douglas-Peucker simplification keeps (the first and the
    last always): every dropped vertex lies within ``tolerance_m`` of the segment between
    the kept vertices around it (of the segment, not its line, so a U-turn's far end stays).

    All open ranges are split at once, one numpy pass per level of the recursion: a range
    at a time cost 20 µs of numpy overhead a split, 9 ms a route (a route is built when a
    worker first sees it, a fleet's worth at once).
    """
    n = len(xy)
    keep = np.zeros(n, dtype=bool)
    keep[[0, -1]] = True
    while True:
        kept = np.flatnonzero(keep)
        inner = np.flatnonzero(~keep)
        if len(inner) == 0:
            break
        rank = np.searchsorted(kept, inner) - 1  # the range each inner vertex is in
        a, b = xy[kept[rank]], xy[kept[rank + 1]]
        d = b - a
        len2 = np.einsum("ij,ij->i", d, d)
        p = xy[inner] - a
        t = np.divide(np.einsum("ij,ij->i", p, d), len2, out=np.zeros_like(len2), where=len2 > 0)
        t = np.clip(t, 0.0, 1.0)
        off = np.hypot(*(p - t[:, None] * d).T)
        # the farthest vertex of each range (the first of equals, as the recursion's argmax):
        # sorted by range, then farthest first (a stable sort keeps equals in order)
        order = np.lexsort((-off, rank))
        first = np.r_[True, rank[order][1:] != rank[order][:-1]]
        farthest = order[first]
        split = farthest[off[farthest] > tolerance_m]
        if len(split) == 0:
            break
        keep[inner[split]] = True
    return np.flatnonzero(keep)


@dataclass(frozen=True, eq=False)
class RouteLine:
    """A route's planned path in local metres, with the stops' positions along it.

    Kept as numpy arrays (vertices and the cumulative length at each), so locating a fix is
    one vectorised projection onto the segments of a window, without building geometries.

    Fixes are located on a simplified copy of the path (``LOCATE_TOLERANCE_M``): a road's
    geometry has a vertex every ~14 m, mostly along straight stretches, and each one cost a
    projection per fix. A point on a simplified segment is measured along the path by the
    path's own length between the segment's ends, so distances along stay the path's.
    """

    xy: np.ndarray  # (n, 2) vertices in metres
    cum: np.ndarray  # (n,) distance along the line at each vertex
    transformer: Transformer
    stop_along_m: tuple[float, ...]
    lonlat: tuple[tuple[float, float], ...] = ()  # the vertices as given (for geo.eta)
    # The simplified path, for locating: its vertices (array and lists), the distance along
    # the path at each, and each segment's vector, squared length and length along the path.
    loc_xy: np.ndarray = field(init=False, repr=False)
    loc_cum: np.ndarray = field(init=False, repr=False)
    xs: list[float] = field(init=False, repr=False)
    ys: list[float] = field(init=False, repr=False)
    cum_list: list[float] = field(init=False, repr=False)
    dxs: list[float] = field(init=False, repr=False)
    dys: list[float] = field(init=False, repr=False)
    len2s: list[float] = field(init=False, repr=False)
    spans: list[float] = field(init=False, repr=False)
    length_m: float = field(init=False, repr=False)  # read twice per located fix

    def __post_init__(self) -> None:
        object.__setattr__(self, "length_m", float(self.cum[-1]) if len(self.cum) else 0.0)
        kept = simplified_vertices(self.xy, LOCATE_TOLERANCE_M) if len(self.xy) else np.arange(0)
        loc_xy, loc_cum = self.xy[kept], self.cum[kept]
        object.__setattr__(self, "loc_xy", loc_xy)
        object.__setattr__(self, "loc_cum", loc_cum)
        d = np.diff(loc_xy, axis=0)
        for name, values in (
            ("xs", loc_xy[:, 0]),
            ("ys", loc_xy[:, 1]),
            ("cum_list", loc_cum),
            ("dxs", d[:, 0]),
            ("dys", d[:, 1]),
            ("len2s", np.einsum("ij,ij->i", d, d)),
            ("spans", np.diff(loc_cum)),
        ):
            object.__setattr__(self, name, values.tolist())

    @classmethod
    def from_lonlat(
        cls, coords: list[tuple[float, float]], stops: list[tuple[float, float]]
    ) -> RouteLine:
        """Build from the path's and the stops' (lon, lat) coordinates."""
        lon0 = sum(c[0] for c in coords) / len(coords)
        lat0 = sum(c[1] for c in coords) / len(coords)
        # Centre rounded to 0.01° (~1 km) so the routes of one city share a few cached
        # transformers (each costs ~10 ms to build); an azimuthal equidistant projection's
        # scale error 50 km from its centre is 1e-5, so a centre 1 km off changes nothing.
        tr = _to_local(round(lon0, 2), round(lat0, 2))
        xs, ys = tr.transform([c[0] for c in coords], [c[1] for c in coords])
        xy = np.column_stack([np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)])
        seg = np.hypot(*np.diff(xy, axis=0).T) if len(xy) > 1 else np.zeros(0)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        route = cls(xy, cum, tr, (), tuple(coords))
        along = []
        last = 0.0
        if stops:
            sx, sy = tr.transform([s[0] for s in stops], [s[1] for s in stops])
            for x, y in zip(np.atleast_1d(sx), np.atleast_1d(sy), strict=True):
                # Stops are in visiting order: search each one from the previous one onwards
                # so a route passing the same street twice puts each stop on the right pass.
                d, _ = route._project(float(x), float(y), last, float(cum[-1]))
                along.append(d)
                last = d
        # the stops are the one field that differs: a second instance simplified the path again
        object.__setattr__(route, "stop_along_m", tuple(along))
        return route

    def _project(self, x: float, y: float, lo: float, hi: float) -> tuple[float, float]:
        """Nearest point of the part [lo, hi] of the line: (distance along, distance off)."""
        n = len(self.cum_list)
        if n < 2:
            return 0.0, float(math.hypot(x - self.loc_xy[0, 0], y - self.loc_xy[0, 1]))
        # lo may be the very end (a stop searched from the one before, at the end): then the
        # last segment, whose end is the answer
        i0 = min(max(bisect.bisect_right(self.cum_list, lo) - 1, 0), n - 2)
        i1 = min(bisect.bisect_left(self.cum_list, hi), n - 1)
        i1 = max(i1, i0 + 1)
        if i1 - i0 <= SMALL_WINDOW_SEGMENTS:
            along, off = self._project_few(x, y, lo, hi, i0, i1)
        else:
            along, off = self._project_vectorised(x, y, lo, hi, i0, i1)
        return min(along, self.length_m), off  # start + 1.0 * span may round past the end

    def _project_vectorised(
        self, x: float, y: float, lo: float, hi: float, i0: int, i1: int
    ) -> tuple[float, float]:
        a = self.loc_xy[i0:i1]
        d = self.loc_xy[i0 + 1 : i1 + 1] - a
        len2 = np.einsum("ij,ij->i", d, d)
        p = np.array([x, y])
        t = np.divide(
            np.einsum("ij,ij->i", p - a, d), len2, out=np.zeros_like(len2), where=len2 > 0
        )
        start = self.loc_cum[i0:i1]
        span = self.loc_cum[i0 + 1 : i1 + 1] - start
        # Clamp to the segment and to the window [lo, hi] (in distance along the path).
        t_lo = np.divide(lo - start, span, out=np.zeros_like(span), where=span > 0)
        t_hi = np.divide(hi - start, span, out=np.ones_like(span), where=span > 0)
        t = np.clip(t, np.clip(t_lo, 0.0, 1.0), np.clip(t_hi, 0.0, 1.0))
        t = np.where(span > 0, t, 0.0)
        q = a + d * t[:, None]
        off = np.hypot(q[:, 0] - x, q[:, 1] - y)
        k = int(np.argmin(off))
        return float(start[k] + t[k] * span[k]), float(off[k])

    def _project_few(
        self, x: float, y: float, lo: float, hi: float, i0: int, i1: int
    ) -> tuple[float, float]:
        """``_project`` for segments i0..i1-1 in plain Python: for the tens of segments a
        tracking window holds, numpy's per-call overhead costs more than the arithmetic
        (16 segments: 5 against 22 µs)."""
        xs, ys, cum, dxs, dys = self.xs, self.ys, self.cum_list, self.dxs, self.dys
        len2s, spans = self.len2s, self.spans
        best_off2, best_along = math.inf, 0.0
        for k in range(i0, i1):
            ax, ay, dx, dy, span = xs[k], ys[k], dxs[k], dys[k], spans[k]
            start = cum[k]
            if span > 0:
                len2 = len2s[k]
                t = ((x - ax) * dx + (y - ay) * dy) / len2 if len2 > 0 else 0.0
                # clamp to the segment, and to the window where the segment leaves it
                t_lo = 0.0 if start >= lo else min((lo - start) / span, 1.0)
                t_hi = 1.0 if start + span <= hi else max((hi - start) / span, 0.0)
                t = t_lo if t < t_lo else t_hi if t > t_hi else t
            else:
                t = 0.0
            ox, oy = ax + dx * t - x, ay + dy * t - y
            off2 = ox * ox + oy * oy
            if off2 < best_off2:  # the first of equals, as argmin
                best_off2, best_along = off2, start + t * span
        return best_along, math.sqrt(best_off2)

    def locate(
        self, lon: float, lat: float, *, near_m: float | None = None, window_m: float = 2_000.0
    ) -> tuple[float, float]:
        """Return (distance along the line, distance off the line) of a point, in metres.

        With ``near_m`` (the previous progress), the search is limited to a window around it
        — ``window_m`` ahead, as far as the vehicle can have driven since — so that a route
        that comes back near the same place does not make progress jump ahead.
        """
        x, y = self.transformer.transform(lon, lat)
        return self.locate_xy(x, y, near_m=near_m, window_m=window_m)

    def locate_xy(
        self, x: float, y: float, *, near_m: float | None = None, window_m: float = 2_000.0
    ) -> tuple[float, float]:
        """``locate`` for a point already in the line's metres (``project_points``)."""
        if near_m is not None:
            lo = max(0.0, near_m - 50.0)  # GPS noise may put a fix a little behind
            hi = min(self.length_m, near_m + window_m)
            if hi > lo:
                along, off = self._project(x, y, lo, hi)
                if off < 150.0:
                    return along, off
            # Lost the thread (a gap, a detour): look ahead first. A route that drives a
            # street out and back lies on itself, and the whole line's nearest point is then
            # the earliest pass: a van on its way back was put kilometres behind, and stayed
            # there, sliding backwards along the outbound pass (the simulator found it).
            if lo < self.length_m:
                along, off = self._project(x, y, lo, self.length_m)
                if off < 150.0:
                    return along, off
        return self._project(x, y, 0.0, self.length_m)


def project_points(
    lines: Sequence[RouteLine], lons: Sequence[float], lats: Sequence[float]
) -> list[tuple[float, float]]:
    """Each point in its line's metres: one PROJ call per projection for a whole batch (a
    call per point costs 2.3 µs, a point of a batch 0.9 µs). Lines of one region share their
    projection (``from_lonlat``)."""
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(lines)
    groups: dict[int, list[int]] = {}
    for i, line in enumerate(lines):
        groups.setdefault(id(line.transformer), []).append(i)
    for members in groups.values():
        tr = lines[members[0]].transformer
        xs, ys = tr.transform(
            np.fromiter((lons[i] for i in members), float, len(members)),
            np.fromiter((lats[i] for i in members), float, len(members)),
        )
        for i, x, y in zip(members, xs.tolist(), ys.tolist(), strict=True):
            out[i] = (x, y)
    return out


def remaining_along_m(route: RouteLine, along_m: float, stop_index: int) -> float:
    """Metres left along the route from along_m to the stop (0 once it is reached)."""
    return max(0.0, route.stop_along_m[stop_index] - along_m)


class SpeedEstimate(NamedTuple):
    """Effective speed: a time-weighted average of observed speeds with exponential memory.

    ``weighted`` is the decayed sum of speed × seconds, ``seconds`` the decayed time behind
    it. A prior (the planning speed) counts as ``prior_s`` seconds of evidence, so the
    estimate starts at the plan and follows the driving as soon as there is some.
    """

    weighted: float = 0.0
    seconds: float = 0.0

    def observe(self, speed_ms: float, dt_s: float, half_life_s: float) -> SpeedEstimate:
        dt = min(max(dt_s, 0.0), half_life_s)  # a long gap is not long evidence
        decay = math.pow(0.5, dt / half_life_s)
        return SpeedEstimate(self.weighted * decay + speed_ms * dt, self.seconds * decay + dt)

    def value(self, prior_ms: float, prior_s: float) -> float:
        return (self.weighted + prior_ms * prior_s) / (self.seconds + prior_s)


def eta_seconds(remaining_m: float, speed_ms: float | None, planning_speed_ms: float) -> float:
    """Seconds to cover remaining_m: the recent speed bounded to sane limits, or the plan's."""
    if remaining_m <= 0:
        return 0.0
    speed = speed_ms if speed_ms is not None and speed_ms >= MIN_SPEED_MS else planning_speed_ms
    return remaining_m / min(max(speed, MIN_SPEED_MS), MAX_SPEED_MS)


def straight_line_remaining_m(lon: float, lat: float, stop_lon: float, stop_lat: float) -> float:
    """Fallback when a route has no geometry: great-circle distance × a detour factor."""
    return haversine_m(lon, lat, stop_lon, stop_lat) * DETOUR_FACTOR
