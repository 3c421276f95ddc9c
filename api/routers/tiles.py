"""Vector tiles of the base map: ``/api/tiles/{layer_set}/{z}/{x}/{y}.mvt``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from api import tiles
from api.dependencies import StateDep, UserDep
from api.errors import NotFound

router = APIRouter(prefix="/api/tiles", tags=["map"])


def _cache(request: Request) -> tiles.TileCache:
    cache: tiles.TileCache | None = getattr(request.app.state, "tile_cache", None)
    if cache is None:
        cache = request.app.state.tile_cache = tiles.TileCache()
    return cache


@router.get("/{layer_set}/style.json", summary="The MapLibre style drawing a layer set")
async def tile_style(
    layer_set: str, request: Request, state: StateDep, user: UserDep
) -> dict[str, Any]:
    """A MapLibre style (v8) for the ``base`` layer set whose source is this api's tiles
    (absolute URL: under FLEETPULSE_API__PUBLIC_BASE_URL, else the request's). No glyphs or
    sprites: nothing from the internet. Tiles need the bearer token too (MapLibre's
    ``transformRequest``). ``metadata["fleetpulse:loaded"]`` tells whether a base map is
    loaded at all."""
    if layer_set != "base":
        raise NotFound("a style exists for the layer set 'base' only")
    # the configured public base URL; else the one the client asked (its own Host: this
    # answer is for its bearer only, and MapLibre needs absolute tile URLs)
    root: str = request.app.state.public_base_url or str(request.base_url).rstrip("/")
    body = tiles.style(f"{root}/api/tiles/base/{{z}}/{{x}}/{{y}}.mvt")
    async with state.pool.acquire() as conn:
        loaded = await tiles.basemap_loaded(conn)
    body["metadata"] = {"fleetpulse:loaded": loaded}
    return body


@router.get(
    "/{layer_set}/{z}/{x}/{y}.mvt",
    summary="A Mapbox Vector Tile of the base map (PostGIS ST_AsMVT)",
    responses={
        200: {"content": {tiles.MEDIA_TYPE: {}}},
        304: {"description": "If-None-Match matched the tile's ETag"},
        400: {"description": "z outside 0..22, or x/y outside the zoom's grid"},
        404: {"description": "unknown layer set"},
    },
)
async def tile(
    layer_set: str,
    z: int,
    x: int,
    y: int,
    request: Request,
    state: StateDep,
    user: UserDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Layer set ``base`` (water, landuse, buildings, railways, roads, places; see
    ``api.tiles``), or ``roads``: layer ``roads`` with ``highway`` and ``name``, major classes
    only below zoom 11, up to tertiary below 13, everything from 13; lines simplified to
    half a tile pixel. Empty tiles are 200 with no body. ETag and ``Cache-Control``."""
    tiles.check_tile(layer_set, z, x, y)
    cache = _cache(request)
    key = (layer_set, z, x, y)
    hit = cache.get(key)
    if hit is None:
        async with state.pool.acquire() as conn:  # only on a miss: a hit needs no connection
            body = await tiles.render_tile(conn, layer_set, z, x, y)
        tag = cache.put(key, body)
    else:
        body, tag = hit
    headers = {"ETag": tag, "Cache-Control": f"private, max-age={int(cache.ttl_s)}"}
    if if_none_match is not None and tag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=tiles.MEDIA_TYPE, headers=headers)
