"""Progress along a planned route and the ETA to the next stop, in metres and seconds.

Geometry arrives in WGS84 lon/lat; it is projected once per route into a local azimuthal
equidistant projection centred on the route (metres, distortion negligible over a city), where
shapely's linear referencing measures distance along the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from pyproj import Transformer
from shapely import LineString, Point
from shapely.ops import substring

EARTH_RADIUS_M = 6_371_008.8
DETOUR_FACTOR = 1.3  # road distance / straight line, used only when there is no geometry
MIN_SPEED_MS = 2.0  # below this the driver is waiting, not crawling: use the planning speed
MAX_SPEED_MS = 130 / 3.6


@lru_cache(maxsize=4096)
def _to_local(lon0: float, lat0: float) -> Transformer:
    return Transformer.from_crs(
        "EPSG:4326", f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +units=m +ellps=WGS84", always_xy=True
    )


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class RouteLine:
    """A route's planned path in local metres, with the stops' positions along it."""

    line: LineString
    transformer: Transformer
    stop_along_m: tuple[float, ...]

    @classmethod
    def from_lonlat(
        cls, coords: list[tuple[float, float]], stops: list[tuple[float, float]]
    ) -> RouteLine:
        """Build from the path's and the stops' (lon, lat) coordinates."""
        lon0 = sum(c[0] for c in coords) / len(coords)
        lat0 = sum(c[1] for c in coords) / len(coords)
        tr = _to_local(round(lon0, 4), round(lat0, 4))
        xs, ys = tr.transform([c[0] for c in coords], [c[1] for c in coords])
        line = LineString(list(zip(xs, ys, strict=True)))
        along = []
        last = 0.0
        for lon, lat in stops:
            x, y = tr.transform(lon, lat)
            # Stops are in visiting order: search each one from the previous one onwards so a
            # route passing the same street twice puts each stop on the right pass.
            rest = substring(line, last, line.length)
            d = last + float(rest.project(Point(x, y)))
            along.append(d)
            last = d
        return cls(line, tr, tuple(along))

    @property
    def length_m(self) -> float:
        return float(self.line.length)

    def locate(
        self, lon: float, lat: float, *, near_m: float | None = None, window_m: float = 2_000.0
    ) -> tuple[float, float]:
        """Return (distance along the line, distance off the line) of a point, in metres.

        With ``near_m`` (the previous progress), the search is limited to a window around it
        — ``window_m`` ahead, as far as the vehicle can have driven since — so that a route
        that comes back near the same place does not make progress jump ahead.
        """
        x, y = self.transformer.transform(lon, lat)
        p = Point(x, y)
        if near_m is not None:
            lo = max(0.0, near_m - 50.0)  # GPS noise may put a fix a little behind
            hi = min(self.length_m, near_m + window_m)
            part = substring(self.line, lo, hi)
            if part.length > 0:
                along = lo + float(part.project(p))
                off = float(self.line.interpolate(along).distance(p))
                if off < 150.0:
                    return along, off
        along = float(self.line.project(p))
        return along, float(self.line.interpolate(along).distance(p))


def remaining_along_m(route: RouteLine, along_m: float, stop_index: int) -> float:
    """Metres left along the route from along_m to the stop (0 once it is reached)."""
    return max(0.0, route.stop_along_m[stop_index] - along_m)


def ewma_speed(
    previous_ms: float | None, observed_ms: float, dt_s: float, half_life_s: float = 60.0
) -> float:
    """Exponentially weighted speed (m/s) with a time-based half-life."""
    if previous_ms is None:
        return observed_ms
    alpha = 1.0 - math.pow(0.5, max(dt_s, 0.0) / half_life_s)
    return previous_ms + alpha * (observed_ms - previous_ms)


def eta_seconds(remaining_m: float, speed_ms: float | None, planning_speed_ms: float) -> float:
    """Seconds to cover remaining_m: the recent speed bounded to sane limits, or the plan's."""
    if remaining_m <= 0:
        return 0.0
    speed = speed_ms if speed_ms is not None and speed_ms >= MIN_SPEED_MS else planning_speed_ms
    return remaining_m / min(max(speed, MIN_SPEED_MS), MAX_SPEED_MS)


def straight_line_remaining_m(lon: float, lat: float, stop_lon: float, stop_lat: float) -> float:
    """Fallback when a route has no geometry: great-circle distance × a detour factor."""
    return haversine_m(lon, lat, stop_lon, stop_lat) * DETOUR_FACTOR
