"""Vector tiles (Mapbox Vector Tile) of the base map, built by PostGIS (``ST_AsMVT``).

Layer sets are named groups of layers: ``roads`` (``road_edges``, what the simulator loads
from OpenStreetMap). A tile's bytes are kept in a small in-process LRU for ``TTL_S`` and
carry an ETag, so a browser revalidating gets 304 without a query.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from pathlib import Path

from api.errors import BadRequest, NotFound
from infrastructure.postgres import Conn

MAX_ZOOM = 22
TILE_EXTENT = 4096
WEB_MERCATOR_SPAN_M = 40_075_016.685578488
ROADS_SQL = (Path(__file__).parent / "sql" / "tiles_roads.sql").read_text()
MAJOR = ["motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link"]
MEDIUM = [*MAJOR, "secondary", "secondary_link", "tertiary", "tertiary_link"]
LAYER_SETS = ("roads",)
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


async def render_tile(conn: Conn, layer_set: str, z: int, x: int, y: int) -> bytes:
    """Return the tile's MVT bytes (empty when nothing is inside)."""
    check_tile(layer_set, z, x, y)
    body = await conn.fetchval(ROADS_SQL, z, x, y, simplify_tolerance_m(z), road_classes(z))
    return bytes(body or b"")


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
