"""Map data for the dashboard: the road network as GeoJSON, and the live fleet snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.dependencies import ConnDep, StaffDep, StateDep
from api.errors import BadRequest
from api.params import query_bbox
from api.records.drivers import drivers_with_snapshot
from api.records.latest import latest_positions
from api.responses import GeoJSONResponse
from api.tiles import roads_in_bbox
from geo.timestamps import iso_ms

router = APIRouter(prefix="/api/map", tags=["map"])

# A box wider than this (degrees) would ship a whole country's roads to a browser.
MAX_ROADS_SPAN_DEG = 1.0


@router.get(
    "/roads",
    summary="Road edges inside a bbox as GeoJSON lines (the offline base map)",
    response_class=GeoJSONResponse,
    responses={
        200: {
            "content": {
                "application/geo+json": {
                    "example": {
                        "type": "FeatureCollection",
                        "features": [
                            {
                                "type": "Feature",
                                "geometry": {
                                    "type": "LineString",
                                    "coordinates": [[24.94, 60.17], [24.95, 60.171]],
                                },
                                "properties": {"highway": "primary"},
                            }
                        ],
                        "truncated": False,
                    }
                }
            }
        },
        400: {"description": "malformed bbox, or a box wider than 1 degree"},
    },
)
async def roads(
    conn: ConnDep,
    user: StaffDep,
    bbox: Annotated[str, Query(max_length=200, description="minLon,minLat,maxLon,maxLat")],
    limit: Annotated[int, Query(ge=1, le=50_000)] = 20_000,
) -> GeoJSONResponse:
    """The road network (``road_edges``, loaded by ``fleetpulse simulate``) intersecting the
    box, each line with its OSM ``highway`` class; ``truncated`` tells whether ``limit``
    cut the answer (major roads come first)."""
    box = query_bbox(bbox)
    if box[2] - box[0] > MAX_ROADS_SPAN_DEG or box[3] - box[1] > MAX_ROADS_SPAN_DEG:
        raise BadRequest(f"bbox must span at most {MAX_ROADS_SPAN_DEG} degree each way")
    rows = await roads_in_bbox(conn, box, limit=limit + 1)
    features = [
        {
            "type": "Feature",
            "geometry": orjson.loads(r["g"]),
            "properties": {"highway": r["highway"]},
        }
        for r in rows[:limit]
    ]
    return GeoJSONResponse(
        {"type": "FeatureCollection", "features": features, "truncated": len(rows) > limit}
    )


@router.get(
    "/live",
    summary="Every driver of the tenant with its latest position (the live map's first frame)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "drivers": [
                            {
                                "id": "a1b2c3d4-0001-4000-8000-000000000001",
                                "name": "John Smith",
                                "deviceId": "DEV001",
                                "status": "available",
                                "active": True,
                                "position": {"lat": 40.713, "lon": -74.0055, "speed": 18.5},
                            }
                        ]
                    }
                }
            }
        }
    },
)
async def live(conn: ConnDep, state: StateDep, user: StaffDep) -> dict[str, Any]:
    """The tenant's drivers, each with its latest enriched position from Redis (the same
    JSON as ``position:update``), else the PostgreSQL snapshot, else null."""
    rows = await drivers_with_snapshot(conn, user.tenant_id)
    latest = await latest_positions(state.redis, state.keys, [str(r["id"]) for r in rows])
    drivers = []
    for r, message in zip(rows, latest, strict=True):
        position: Mapping[str, Any] | None = message
        if position is None and r["fix_time"] is not None:
            ms = int(r["fix_time"].timestamp() * 1000)
            position = {
                "driverId": str(r["id"]),
                "fixTime": iso_ms(ms),
                "fixTimeMs": ms,
                "lat": r["lat"],
                "lon": r["lon"],
                "speed": r["speed_kmh"],
                "course": r["course"],
            }
        if position is not None and position.get("tenantId", user.tenant_id) != user.tenant_id:
            position = None  # never show another tenant's data, whatever the cache says
        drivers.append(
            {
                "id": str(r["id"]),
                "name": r["name"],
                "deviceId": r["device_unique_id"],
                "status": r["status"],
                "active": r["active"],
                "position": position,
            }
        )
    return {"drivers": drivers}


DASHBOARD_DIST = Path(__file__).resolve().parents[2] / "dashboard" / "dist"
# Paths that belong to the server: a miss there is a real 404, never the dashboard's page.
_SERVER_PREFIXES = ("api/", "api", "docs", "redoc", "openapi.json", "socket.io")


class DashboardFiles(StaticFiles):
    """The built dashboard; a client-side route (``/live``, ``/playback``) gets index.html."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path.startswith(_SERVER_PREFIXES) or "." in path:
                raise
            return await super().get_response("index.html", scope)


def dashboard_files(dist: Path = DASHBOARD_DIST) -> DashboardFiles | None:
    """Return the static app of the built dashboard, or None when it is not built."""
    if not (dist / "index.html").is_file():
        return None
    return DashboardFiles(directory=dist, html=True)
