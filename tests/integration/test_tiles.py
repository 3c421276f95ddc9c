"""Vector tiles from PostGIS on both backends: a street grid written to road_edges comes back
in the tile that covers it (decoded with mapbox-vector-tile), classes filtered by zoom, each
two-way street once; ETag revalidation; bad tiles get 4xx JSON."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import mapbox_vector_tile
import pytest
import shapely

from tests.conftest import RUN_ID, Backend, settings_env

NETWORK = f"test-tiles-{RUN_ID}"
# A few streets near Helsinki's railway station (lon, lat).
STREETS = [
    (1, "primary", "Mannerheimintie", [(24.9380, 60.1690), (24.9390, 60.1720)]),
    (2, "residential", "Kaisaniemenkatu", [(24.9420, 60.1700), (24.9460, 60.1705)]),
    (3, "tertiary", None, [(24.9400, 60.1680), (24.9440, 60.1685)]),
]


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


@pytest.fixture(scope="module")
async def roads(backend: Backend) -> AsyncIterator[None]:
    async with backend.pool.acquire() as conn:
        for way, highway, name, coords in STREETS:
            wkt = shapely.LineString(coords).wkt
            back = shapely.LineString(coords[::-1]).wkt
            for source, target, line in (
                (way * 10, way * 10 + 1, wkt),
                (way * 10 + 1, way * 10, back),
            ):
                await conn.execute(
                    """INSERT INTO road_edges (network, source, target, osm_way_id, highway,
                           name, length_m, speed_kmh, cost_s, geom)
                       VALUES ($1, $2, $3, $4, $5, $6, 100, 30, 12, ST_GeomFromText($7, 4326))""",
                    NETWORK,
                    source,
                    target,
                    way,
                    highway,
                    name,
                    line,
                )
    yield
    async with backend.pool.acquire() as conn:
        await conn.execute("DELETE FROM road_edges WHERE network = $1", NETWORK)


async def get_tile(
    backend: Backend, z: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    x, y = tile_of(24.941, 60.170, z)
    return await backend.client.get(
        f"/api/tiles/roads/{z}/{x}/{y}.mvt", headers={**backend.tenant1_headers, **(headers or {})}
    )


async def test_street_tile_has_every_street_once(backend: Backend, roads: None) -> None:
    resp = await get_tile(backend, 15)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = mapbox_vector_tile.decode(resp.content)["roads"]
    ours = [f for f in layer["features"] if f["properties"].get("highway")]
    names = sorted(str(f["properties"].get("name")) for f in ours)
    assert {"Kaisaniemenkatu", "Mannerheimintie"} <= set(names)
    assert names.count("Mannerheimintie") == 1  # two directed edges, one line
    assert all(f["geometry"]["type"] == "LineString" for f in ours)
    assert layer["extent"] == 4096


async def test_city_zoom_draws_major_roads_only(backend: Backend, roads: None) -> None:
    layer = mapbox_vector_tile.decode((await get_tile(backend, 10)).content)["roads"]
    classes = {f["properties"]["highway"] for f in layer["features"]}
    assert "primary" in classes and not classes & {"residential", "tertiary"}
    mid = mapbox_vector_tile.decode((await get_tile(backend, 12)).content)["roads"]
    assert {"primary", "tertiary"} <= {f["properties"]["highway"] for f in mid["features"]}
    assert "residential" not in {f["properties"]["highway"] for f in mid["features"]}


async def test_etag_revalidation(backend: Backend, roads: None) -> None:
    first = await get_tile(backend, 14)
    tag = first.headers["etag"]
    again = await get_tile(backend, 14, {"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == tag
    other = await get_tile(backend, 14, {"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


async def test_an_empty_tile_is_empty(backend: Backend, roads: None) -> None:
    resp = await backend.client.get("/api/tiles/roads/3/0/0.mvt", headers=backend.tenant1_headers)
    assert resp.status_code == 200 and resp.content == b""


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/tiles/roads/23/0/0.mvt", 400),
        ("/api/tiles/roads/-1/0/0.mvt", 400),
        ("/api/tiles/roads/2/4/0.mvt", 400),
        ("/api/tiles/roads/2/0/-1.mvt", 400),
        ("/api/tiles/roads/x/0/0.mvt", 422),
        ("/api/tiles/roads/1/0/1.5.mvt", 422),
        ("/api/tiles/water/1/0/0.mvt", 404),
    ],
)
async def test_bad_tiles(backend: Backend, path: str, status: int) -> None:
    resp = await backend.client.get(path, headers=backend.tenant1_headers)
    assert resp.status_code == status, resp.text
    assert {"error", "message"} <= resp.json().keys()


async def test_tiles_need_a_token(backend: Backend) -> None:
    resp = await backend.client.get("/api/tiles/roads/1/0/0.mvt")
    assert resp.status_code == 401 and resp.json()["error"]


# ---- the base layer set: the Helsinki extract loaded by infrastructure.basemap ----


@pytest.fixture(scope="module")
async def basemap(backend: Backend) -> dict[str, int]:
    from infrastructure.basemap import ensure_basemap

    async with backend.pool.acquire() as conn:
        counts = await ensure_basemap(conn, replace=True)
        assert counts is not None
        # a second load without replace finds it; with replace it does not duplicate rows
        assert await ensure_basemap(conn) is None
        again = await ensure_basemap(conn, replace=True)
        stored = await conn.fetch(
            "SELECT layer, count(*) AS n FROM basemap_features WHERE source = 'helsinki'"
            " GROUP BY layer"
        )
    assert again == counts == {r["layer"]: r["n"] for r in stored}
    return counts


def test_the_extract_has_every_layer(basemap: dict[str, int]) -> None:
    assert set(basemap) == {"water", "landuse", "buildings", "railways", "roads", "places"}
    assert all(n > 0 for n in basemap.values()), basemap
    assert basemap["buildings"] > 400 and basemap["roads"] > 2000


async def base_tile(backend: Backend, z: int) -> dict[str, object]:
    x, y = tile_of(24.941, 60.170, z)  # the railway station
    resp = await backend.client.get(
        f"/api/tiles/base/{z}/{x}/{y}.mvt", headers=backend.tenant1_headers
    )
    assert resp.status_code == 200 and resp.content
    decoded: dict[str, object] = mapbox_vector_tile.decode(resp.content)
    return decoded


async def test_street_zoom_base_tile(backend: Backend, basemap: dict[str, int]) -> None:
    tile = await base_tile(backend, 16)
    assert {"buildings", "landuse", "railways", "roads", "places"} <= set(tile)
    roads = tile["roads"]["features"]  # type: ignore[index]
    names = {f["properties"].get("name") for f in roads}
    assert "Mannerheimintie" in names  # the main street past the station
    kinds = {f["properties"]["kind"] for f in roads}
    assert "footway" in kinds and "primary" in kinds
    rail = {f["properties"]["kind"] for f in tile["railways"]["features"]}  # type: ignore[index]
    assert "tram" in rail
    places = {f["properties"]["kind"] for f in tile["places"]["features"]}  # type: ignore[index]
    assert places and all(
        f["geometry"]["type"] == "Point"
        for f in tile["places"]["features"]  # type: ignore[index]
    )


async def test_city_zoom_base_tile_is_lighter(backend: Backend, basemap: dict[str, int]) -> None:
    tile = await base_tile(backend, 12)
    assert "buildings" not in tile  # from zoom 14
    kinds = {f["properties"]["kind"] for f in tile["roads"]["features"]}  # type: ignore[index]
    assert "primary" in kinds and not kinds & {"footway", "residential", "service"}
    street = await base_tile(backend, 16)
    assert len(street["roads"]["features"]) > 0  # type: ignore[index]


async def test_style_draws_the_tiles_layers(backend: Backend, basemap: dict[str, int]) -> None:
    resp = await backend.client.get("/api/tiles/base/style.json", headers=backend.tenant1_headers)
    assert resp.status_code == 200
    style = resp.json()
    assert style["version"] == 8 and "glyphs" not in style and "sprite" not in style
    assert style["metadata"] == {"fleetpulse:loaded": True}
    (url,) = style["sources"]["base"]["tiles"]
    assert url == "http://test/api/tiles/base/{z}/{x}/{y}.mvt"
    used = {layer.get("source-layer") for layer in style["layers"]} - {None}
    tile = await base_tile(backend, 16)
    assert used <= set(tile) | {"water"}  # no water at the station; elsewhere (test below)
    x, y = tile_of(24.9505, 60.1665, 15)  # the harbour basin, south-east of the extract
    water = await backend.client.get(
        f"/api/tiles/base/15/{x}/{y}.mvt", headers=backend.tenant1_headers
    )
    assert "water" in mapbox_vector_tile.decode(water.content)
    bad = await backend.client.get("/api/tiles/roads/style.json", headers=backend.tenant1_headers)
    assert bad.status_code == 404 and bad.json()["error"]


async def test_the_basemap_command_loads_a_source(backend: Backend) -> None:
    import asyncio
    import sys

    source = f"cli-{RUN_ID}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "basemap",
        "--source",
        source,
        env=settings_env(backend.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert f"base map '{source}' loaded: water" in out.decode()
    async with backend.pool.acquire() as conn:
        n = await conn.fetchval("SELECT count(*) FROM basemap_features WHERE source = $1", source)
        await conn.execute("DELETE FROM basemap_features WHERE source = $1", source)
    assert n > 3000
