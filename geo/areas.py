"""Geofence shapes: validation of GeoJSON polygons and circles, Traccar area strings.

Pure: no I/O. Coordinates are (lon, lat) inside, as everywhere in ``geo/``; Traccar's area
strings put the latitude first (``CIRCLE (lat lon, radius)``, ``POLYGON ((lat lon, ...))``)
and are converted at this edge only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyproj import Geod
from shapely.geometry import Polygon
from shapely.validation import explain_validity

MAX_VERTICES = 10_000
MIN_AREA_M2 = 10.0
MAX_AREA_M2 = 10_000.0 * 1_000_000  # 10,000 km²: a metropolitan region, not a continent
MIN_RADIUS_M = 1.0
MAX_RADIUS_M = 50_000.0

_GEOD = Geod(ellps="WGS84")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CIRCLE_RE = re.compile(
    rf"^\s*CIRCLE\s*\(\s*({_NUMBER})\s+({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*$", re.I
)
_POLYGON_RE = re.compile(r"^\s*POLYGON\s*\(\s*\((.*)\)\s*\)\s*$", re.I | re.S)


class InvalidArea(ValueError):
    """A shape that cannot be a geofence; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Circle:
    """A circle on the ellipsoid: centre (lon, lat) in degrees, radius in metres."""

    lon: float
    lat: float
    radius_m: float


Ring = list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class PolygonArea:
    """A validated polygon: exterior ring then holes, each closed, (lon, lat) positions."""

    rings: list[Ring]

    def to_geojson(self) -> dict[str, Any]:
        """Return the GeoJSON Polygon geometry."""
        return {"type": "Polygon", "coordinates": [[list(p) for p in r] for r in self.rings]}

    def to_wkt(self) -> str:
        """Return WKT (lon lat order) for PostGIS."""
        rings = ", ".join(
            "(" + ", ".join(f"{lon!r} {lat!r}" for lon, lat in r) + ")" for r in self.rings
        )
        return f"POLYGON ({rings})"


def _check_lon_lat(lon: float, lat: float, where: str) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise InvalidArea(f"{where}: coordinates must be finite numbers")
    if not -90.0 <= lat <= 90.0:
        raise InvalidArea(f"{where}: latitude {lat:g} is outside [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise InvalidArea(f"{where}: longitude {lon:g} is outside [-180, 180]")


def validate_circle(lon: float, lat: float, radius_m: float) -> Circle:
    """Return the circle, or raise InvalidArea saying what is wrong."""
    _check_lon_lat(lon, lat, "centre")
    if not math.isfinite(radius_m) or not MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M:
        raise InvalidArea(
            f"radius {radius_m:g} m is outside [{MIN_RADIUS_M:g}, {MAX_RADIUS_M:g}] m"
        )
    return Circle(lon=lon, lat=lat, radius_m=radius_m)


def _position(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, list | tuple) or len(raw) not in (2, 3):
        raise InvalidArea(f"{where}: a position is [longitude, latitude]")
    lon, lat = raw[0], raw[1]
    if isinstance(lon, bool) or isinstance(lat, bool):
        raise InvalidArea(f"{where}: coordinates must be numbers")
    if not isinstance(lon, int | float) or not isinstance(lat, int | float):
        raise InvalidArea(f"{where}: coordinates must be numbers")
    _check_lon_lat(float(lon), float(lat), where)
    return float(lon), float(lat)


def polygon_area_m2(rings: Sequence[Ring]) -> float:
    """Return the geodesic area of a polygon (exterior minus holes) in square metres."""
    area, _ = _GEOD.geometry_area_perimeter(Polygon(rings[0], holes=list(rings[1:])))
    return abs(float(area))


def validate_polygon_rings(raw_rings: Any) -> PolygonArea:
    """Validate GeoJSON Polygon ``coordinates``; raise InvalidArea saying what is wrong.

    Checks, in order: shape, vertex count (at most MAX_VERTICES, checked before anything
    expensive), coordinate ranges, closed rings of at least 4 positions, OGC validity
    (no self-intersection), and a sane geodesic area.
    """
    if not isinstance(raw_rings, list) or not raw_rings:
        raise InvalidArea("a polygon needs at least one ring (a list of positions)")
    total = sum(len(r) if isinstance(r, list) else 0 for r in raw_rings)
    if total > MAX_VERTICES:
        raise InvalidArea(f"polygon has {total} vertices, at most {MAX_VERTICES} are allowed")
    rings: list[Ring] = []
    for i, raw in enumerate(raw_rings):
        name = "exterior ring" if i == 0 else f"hole {i}"
        if not isinstance(raw, list):
            raise InvalidArea(f"{name} must be a list of positions")
        ring = [_position(p, f"{name}, position {j}") for j, p in enumerate(raw)]
        if len(ring) < 4:
            raise InvalidArea(f"{name} has {len(ring)} positions; a closed ring needs at least 4")
        if ring[0] != ring[-1]:
            raise InvalidArea(
                f"{name} is not closed: the first position {list(ring[0])} and the last "
                f"{list(ring[-1])} differ"
            )
        rings.append(ring)
    shape = Polygon(rings[0], holes=rings[1:])
    if not shape.is_valid:
        raise InvalidArea(f"polygon is not valid: {_explain(shape)}")
    area = polygon_area_m2(rings)
    if area < MIN_AREA_M2:
        raise InvalidArea(f"polygon area {area:.1f} m² is below {MIN_AREA_M2:g} m²")
    if area > MAX_AREA_M2:
        raise InvalidArea(f"polygon area {area / 1e6:.0f} km² is above {MAX_AREA_M2 / 1e6:.0f} km²")
    return PolygonArea(rings=rings)


def _explain(shape: Polygon) -> str:
    """Turn GEOS's 'Self-intersection[x y]' into words with (lon, lat)."""
    text = str(explain_validity(shape))
    m = re.match(r"^(.*?)\[\s*(\S+)\s+(\S+)\s*\]$", text)
    if m:
        reason = m.group(1).strip().lower().replace("_", " ")
        return f"{reason} at lon {float(m.group(2)):.6f}, lat {float(m.group(3)):.6f}"
    return text


def validate_geojson_polygon(geometry: Any) -> PolygonArea:
    """Validate a GeoJSON Polygon geometry object (or a Feature holding one)."""
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict):
        raise InvalidArea("geometry must be a GeoJSON object")
    if geometry.get("type") != "Polygon":
        raise InvalidArea(f"geometry type must be Polygon, got {geometry.get('type')!r}")
    return validate_polygon_rings(geometry.get("coordinates"))


def parse_traccar_area(area: str) -> Circle | PolygonArea:
    """Parse Traccar's ``CIRCLE (lat lon, r)`` or ``POLYGON ((lat lon, ...))`` (validated)."""
    if not isinstance(area, str) or not area.strip():
        raise InvalidArea("area must be a non-empty string")
    m = _CIRCLE_RE.match(area)
    if m:
        lat, lon, radius = (float(g) for g in m.groups())
        return validate_circle(lon, lat, radius)
    m = _POLYGON_RE.match(area)
    if m:
        body = m.group(1)
        if body.count(",") + 1 > MAX_VERTICES:
            raise InvalidArea(f"polygon has more than {MAX_VERTICES} vertices")
        positions: list[list[float]] = []
        for j, pair in enumerate(body.split(",")):
            parts = pair.split()
            if len(parts) != 2 or not all(re.fullmatch(_NUMBER, p) for p in parts):
                raise InvalidArea(f"position {j}: expected 'latitude longitude', got {pair!r}")
            lat, lon = float(parts[0]), float(parts[1])
            positions.append([lon, lat])
        return validate_polygon_rings([positions])
    kind = area.strip().split("(")[0].strip().upper() or area.strip()[:20]
    raise InvalidArea(
        f"unsupported area {kind!r}: expected 'CIRCLE (lat lon, radius)' or "
        "'POLYGON ((lat lon, ...))'"
    )


def _num(x: float) -> str:
    text = f"{x:.7f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def circle_to_traccar(circle: Circle) -> str:
    """Return ``CIRCLE (lat lon, radius)`` as Traccar writes it."""
    return f"CIRCLE ({_num(circle.lat)} {_num(circle.lon)}, {_num(circle.radius_m)})"


def polygon_to_traccar(exterior: Sequence[Sequence[float]]) -> str:
    """Return ``POLYGON ((lat lon, ...))`` of an exterior ring given as (lon, lat) positions.

    Traccar's areas have no holes; they are dropped.
    """
    return "POLYGON ((" + ", ".join(f"{_num(p[1])} {_num(p[0])}" for p in exterior) + "))"


def covering_circle(positions: Sequence[tuple[float, float]]) -> Circle:
    """Return a circle (centre of the bounds, geodesic radius to the farthest position) that
    covers every (lon, lat) position; a coarse filter before an exact containment test."""
    lons = [p[0] for p in positions]
    lats = [p[1] for p in positions]
    clon, clat = (min(lons) + max(lons)) / 2, (min(lats) + max(lats)) / 2
    _, _, dists = _GEOD.inv([clon] * len(positions), [clat] * len(positions), lons, lats)
    return Circle(lon=clon, lat=clat, radius_m=float(max(dists)))


def bbox_to_ring(min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> Ring:
    """Return the closed ring of a bbox, or raise InvalidArea saying what is wrong."""
    _check_lon_lat(min_lon, min_lat, "bbox minimum")
    _check_lon_lat(max_lon, max_lat, "bbox maximum")
    if min_lon >= max_lon or min_lat >= max_lat:
        raise InvalidArea("bbox must be minLon,minLat,maxLon,maxLat with min < max")
    return [
        (min_lon, min_lat),
        (max_lon, min_lat),
        (max_lon, max_lat),
        (min_lon, max_lat),
        (min_lon, min_lat),
    ]


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``minLon,minLat,maxLon,maxLat``; raise InvalidArea saying what is wrong."""
    parts = text.split(",")
    if len(parts) != 4:
        raise InvalidArea("bbox must be four numbers: minLon,minLat,maxLon,maxLat")
    try:
        a, b, c, d = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidArea("bbox must be four numbers: minLon,minLat,maxLon,maxLat") from exc
    bbox_to_ring(a, b, c, d)
    return a, b, c, d


MAX_LINE_VERTICES = 50_000


def validate_geojson_linestring(geometry: Any) -> list[tuple[float, float]]:
    """Validate a GeoJSON LineString (a route's planned path); return its (lon, lat) positions."""
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict):
        raise InvalidArea("geometry must be a GeoJSON object")
    if geometry.get("type") != "LineString":
        raise InvalidArea(f"geometry type must be LineString, got {geometry.get('type')!r}")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list) or len(coords) < 2:
        raise InvalidArea("a LineString needs at least 2 positions")
    if len(coords) > MAX_LINE_VERTICES:
        raise InvalidArea(
            f"LineString has {len(coords)} positions, at most {MAX_LINE_VERTICES} are allowed"
        )
    line = [_position(p, f"position {j}") for j, p in enumerate(coords)]
    if len(set(line)) < 2:
        raise InvalidArea("a LineString needs at least 2 distinct positions")
    return line


def linestring_to_wkt(line: Sequence[tuple[float, float]]) -> str:
    """Return WKT (lon lat order) of a line for PostGIS."""
    return "LINESTRING (" + ", ".join(f"{lon!r} {lat!r}" for lon, lat in line) + ")"
