"""Vector tiles (Mapbox Vector Tile) of the base map, built by PostGIS (``ST_AsMVT``).

Layer sets are named groups of layers: ``roads`` (``road_edges``, the simulator's drivable
network) and ``base`` (``basemap_features``, loaded by ``fleetpulse basemap`` from the same
OpenStreetMap extract: water, landuse, buildings, railways, roads of every class, places).
``style(tiles_url)`` is the MapLibre style drawing ``base``. A tile's bytes are kept in a
small in-process LRU (``TileCache``) and carry an ETag, so a browser revalidating gets 304
without a query.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import asyncpg

from api.errors import BadRequest, NotFound
from infrastructure.postgres import Conn

MAX_ZOOM = 22
TILE_EXTENT = 4096
WEB_MERCATOR_SPAN_M = 40_075_016.685578488
ROADS_SQL = (Path(__file__).parent / "sql" / "tiles_roads.sql").read_text()
BASE_SQL = (Path(__file__).parent / "sql" / "tiles_base.sql").read_text()
MAJOR = ["motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link"]
MEDIUM = [*MAJOR, "secondary", "secondary_link", "tertiary", "tertiary_link"]
LAYER_SETS = ("roads", "base")
MINOR_WAYS = ["footway", "path", "steps", "cycleway", "corridor", "trail", "pedestrian", "track"]
# The base layer set's layers, from the zoom each is drawn at.
BASE_LAYERS_FROM_ZOOM = {
    "water": 0,
    "landuse": 11,
    "railways": 11,
    "roads": 0,
    "places": 11,
    "buildings": 14,
}
MEDIA_TYPE = "application/vnd.mapbox-vector-tile"


def check_tile(layer_set: str, z: int, x: int, y: int) -> None:
    """Raise NotFound for an unknown layer set, BadRequest for a tile outside the pyramid."""
    if layer_set not in LAYER_SETS:
        raise NotFound(f"unknown layer set {layer_set!r}; known: {', '.join(LAYER_SETS)}")
    if not 0 <= z <= MAX_ZOOM:
        raise BadRequest(f"z must be between 0 and {MAX_ZOOM}")
    if not (0 <= x < 2**z and 0 <= y < 2**z):
        raise BadRequest(f"x and y must be between 0 and {2**z - 1} at zoom {z}")


def road_classes(z: int) -> list[str] | None:
    """Return the highway classes drawn at zoom ``z`` (None: all)."""
    if z < 11:
        return MAJOR
    if z < 13:
        return MEDIUM
    return None


def simplify_tolerance_m(z: int) -> float:
    """Return half a tile pixel in EPSG:3857 metres: finer detail is lost in the tile grid."""
    return WEB_MERCATOR_SPAN_M / float(2**z) / TILE_EXTENT / 2


def base_road_classes(z: int) -> list[str] | None:
    """Return the base map's highway classes at zoom ``z``: footways and paths from 15."""
    if z >= 15:
        return None
    classes = road_classes(z)
    if classes is not None:
        return classes
    return [*MEDIUM, "residential", "unclassified", "service", "living_street", "road"]


def hidden_places(z: int) -> list[str]:
    """Return the place kinds left out at zoom ``z`` (squares from 15, blocks from 16)."""
    if z >= 16:
        return []
    if z >= 15:
        return ["city_block"]
    return ["city_block", "square"]


async def render_tile(conn: Conn, layer_set: str, z: int, x: int, y: int) -> bytes:
    """Return the tile's MVT bytes (empty when nothing is inside)."""
    check_tile(layer_set, z, x, y)
    tolerance = simplify_tolerance_m(z)
    if layer_set == "roads":
        body = await conn.fetchval(ROADS_SQL, z, x, y, tolerance, road_classes(z))
        return bytes(body or b"")
    layers = [name for name, first in BASE_LAYERS_FROM_ZOOM.items() if z >= first]
    rows = await conn.fetch(
        BASE_SQL, z, x, y, tolerance, layers, base_road_classes(z), hidden_places(z)
    )
    return b"".join(bytes(r[1]) for r in rows)  # an MVT's layers concatenate


async def basemap_loaded(conn: Conn) -> bool:
    """Whether a base map is loaded at all (``basemap_features`` has a row)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM basemap_features)"))


async def roads_in_bbox(
    conn: Conn, box: tuple[float, float, float, float], *, limit: int
) -> list[asyncpg.Record]:
    """Road edges (GeoJSON text ``g``, ``highway``) meeting the box, major roads and long
    ones first, at most ``limit``."""
    return list(
        await conn.fetch(
            """SELECT ST_AsGeoJSON(geom, 6) AS g, highway
               FROM road_edges
               WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)
               ORDER BY highway NOT IN ('motorway', 'trunk', 'primary', 'secondary'),
                        length_m DESC
               LIMIT $5""",
            *box,
            limit,
        )
    )


def etag(body: bytes) -> str:
    """Return a strong ETag for a tile's bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class TileCache:
    """A least-recently-used cache of rendered tiles, each kept at most ``ttl_s``."""

    def __init__(self, max_tiles: int = 4096, ttl_s: float = 300.0) -> None:
        self.max_tiles, self.ttl_s = max_tiles, ttl_s
        self._tiles: OrderedDict[tuple[str, int, int, int], tuple[float, bytes, str]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, int, int, int]) -> tuple[bytes, str] | None:
        """Return (bytes, ETag) when cached and fresh."""
        hit = self._tiles.get(key)
        if hit is None or time.monotonic() - hit[0] > self.ttl_s:
            return None
        self._tiles.move_to_end(key)
        return hit[1], hit[2]

    def put(self, key: tuple[str, int, int, int], body: bytes) -> str:
        """Store a tile; return its ETag."""
        tag = etag(body)
        self._tiles[key] = (time.monotonic(), body, tag)
        self._tiles.move_to_end(key)
        while len(self._tiles) > self.max_tiles:
            self._tiles.popitem(last=False)
        return tag


def _line_width(major: list[Any], wide: float, narrow: float) -> list[Any]:
    """A road width doubling every zoom level from 12, ``wide`` for major roads (MapLibre
    only takes ``zoom`` as the input of a top-level interpolate: the class test goes in
    the stops)."""
    return [
        "interpolate",
        ["exponential", 2],
        ["zoom"],
        12,
        ["case", major, wide * 0.5, narrow * 0.5],
        18,
        ["case", major, wide * 16, narrow * 16],
    ]


def style(tiles_url: str) -> dict[str, Any]:
    """Return the MapLibre style (v8) drawing the ``base`` layer set from ``tiles_url`` (a
    ``{z}/{x}/{y}`` template). No glyphs or sprites, so it needs nothing from the internet;
    labels are left to the client (browser fonts)."""
    major = ["match", ["get", "kind"], MAJOR, True, False]
    medium = ["match", ["get", "kind"], MEDIUM, True, False]
    minor = ["match", ["get", "kind"], MINOR_WAYS, True, False]
    green = ["park", "garden", "grass", "pitch", "playground", "common", "meadow", "forest"]
    return {
        "version": 8,
        "name": "FleetPulse base map",
        "sources": {
            "base": {
                "type": "vector",
                "tiles": [tiles_url],
                "minzoom": 0,
                "maxzoom": 16,
                "attribution": "© OpenStreetMap contributors",
            }
        },
        "layers": [
            {"id": "background", "type": "background", "paint": {"background-color": "#f2efe9"}},
            {
                "id": "base-landuse",
                "type": "fill",
                "source": "base",
                "source-layer": "landuse",
                "paint": {
                    "fill-color": ["match", ["get", "kind"], green, "#c8e6b4", "#e6e1d7"],
                },
            },
            {
                "id": "base-water",
                "type": "fill",
                "source": "base",
                "source-layer": "water",
                "filter": ["==", ["geometry-type"], "Polygon"],
                "paint": {"fill-color": "#a8d1e6"},
            },
            {
                "id": "base-waterways",
                "type": "line",
                "source": "base",
                "source-layer": "water",
                "filter": ["==", ["geometry-type"], "LineString"],
                "paint": {"line-color": "#7fb6d6", "line-width": 1.5},
            },
            {
                "id": "base-buildings",
                "type": "fill",
                "source": "base",
                "source-layer": "buildings",
                "minzoom": 14,
                "paint": {"fill-color": "#d9d0c9", "fill-outline-color": "#c4b9b0"},
            },
            {
                "id": "base-railways",
                "type": "line",
                "source": "base",
                "source-layer": "railways",
                "paint": {
                    "line-color": ["match", ["get", "kind"], "tram", "#b08fa8", "#8c8c8c"],
                    "line-width": 1.2,
                    "line-dasharray": [3, 2],
                },
            },
            {
                "id": "base-paths",
                "type": "line",
                "source": "base",
                "source-layer": "roads",
                "filter": minor,
                "paint": {"line-color": "#c9bfb3", "line-width": 1, "line-dasharray": [2, 1]},
            },
            {
                "id": "base-roads-casing",
                "type": "line",
                "source": "base",
                "source-layer": "roads",
                "filter": ["!", minor],
                "layout": {"line-cap": "round", "line-join": "round"},
                "paint": {
                    "line-color": "#bcb4a8",
                    "line-width": _line_width(major, 1.4, 1.0),
                },
            },
            {
                "id": "base-roads",
                "type": "line",
                "source": "base",
                "source-layer": "roads",
                "filter": ["!", minor],
                "layout": {"line-cap": "round", "line-join": "round"},
                "paint": {
                    "line-color": ["case", major, "#f7d58b", medium, "#fdf1c7", "#ffffff"],
                    "line-width": _line_width(major, 1.1, 0.75),
                },
            },
        ],
    }
