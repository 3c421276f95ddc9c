"""Geofences: CRUD answered as GeoJSON, import/export in Traccar's area strings.

A geofence is a circle (centre + radius in metres, stored as a polygon buffered on the
spheroid, like the customers' circles) or a GeoJSON polygon. Polygons are validated before
anything is stored: closed rings, coordinate ranges, at most 10,000 vertices, no
self-intersection (GEOS, then PostGIS ``ST_IsValid``), an area between 10 m² and 10,000 km².
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from api.dependencies import ConnDep, StaffDep
from api.errors import InvalidInput
from api.pagination import PageDep, paginated_responses
from api.records import geofences as records
from api.records.customers import check_customer
from api.records.geofences import (
    InvalidGeometry,
    feature,
    fetch_geofence,
    traccar_area,
    write_geofence,
)
from api.responses import GeoJSONResponse
from geo.areas import (
    Circle,
    InvalidArea,
    PolygonArea,
    parse_traccar_area,
    validate_circle,
    validate_geojson_polygon,
)

router = APIRouter(prefix="/api/geofences", tags=["geofences"])

GEOJSON = "application/geo+json"
_SQUARE: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [
        [[-74.01, 40.71], [-74.0, 40.71], [-74.0, 40.72], [-74.01, 40.72], [-74.01, 40.71]]
    ],
}
FEATURE_EXAMPLE: dict[str, Any] = {
    "type": "Feature",
    "id": 7,
    "geometry": _SQUARE,
    "properties": {
        "name": "Depot yard",
        "kind": "polygon",
        "customerId": None,
        "center": None,
        "radiusM": None,
        "area": "POLYGON ((40.71 -74.01, 40.71 -74, 40.72 -74, 40.72 -74.01, 40.71 -74.01))",
        "createdAt": "2026-02-06T17:00:00+00:00",
        "updatedAt": "2026-02-06T17:00:00+00:00",
    },
}
_INVALID_EXAMPLE = {
    "error": "invalid_geometry",
    "message": "polygon is not valid: self-intersection at lon -74.005000, lat 40.715000",
}


class CircleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float
    lon: float
    radiusM: float


class GeofenceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Depot yard", "geometry": _SQUARE},
                {"name": "Corner shop", "circle": {"lat": 40.7128, "lon": -74.006, "radiusM": 150}},
                {"name": "From Traccar", "area": "CIRCLE (40.7128 -74.006, 150)"},
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    customerId: int | None = Field(default=None, ge=1, le=2**63 - 1)
    circle: CircleIn | None = Field(default=None, description="Centre and radius in metres.")
    geometry: dict[str, Any] | None = Field(
        default=None, description="A GeoJSON Polygon (or a Feature holding one)."
    )
    area: str | None = Field(
        default=None,
        max_length=500_000,
        description="Traccar area, latitude first: 'CIRCLE (lat lon, r)' or "
        "'POLYGON ((lat lon, ...))'.",
    )


class TraccarGeofence(BaseModel):
    """A geofence as Traccar's API has it; id, calendarId and attributes are ignored."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"id": 3, "name": "Warehouse", "description": "", "area": "CIRCLE (40.7 -74, 100)"}
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2_000)
    area: str = Field(min_length=1, max_length=500_000)


def _shape(body: GeofenceIn) -> Circle | PolygonArea:
    given = [x is not None for x in (body.circle, body.geometry, body.area)]
    if sum(given) != 1:
        raise InvalidGeometry("give exactly one of circle, geometry (GeoJSON Polygon) or area")
    try:
        if body.circle is not None:
            c = body.circle
            return validate_circle(c.lon, c.lat, c.radiusM)
        if body.geometry is not None:
            return validate_geojson_polygon(body.geometry)
        assert body.area is not None
        return parse_traccar_area(body.area)
    except InvalidArea as exc:
        raise InvalidGeometry(str(exc)) from exc


@router.get(
    "",
    response_class=GeoJSONResponse,
    summary="The tenant's geofences as a GeoJSON FeatureCollection (cursor-paginated by id)",
    responses=paginated_responses(
        {"type": "FeatureCollection", "features": [FEATURE_EXAMPLE]}, media_type=GEOJSON
    ),
)
async def list_geofences(user: StaffDep, conn: ConnDep, page: PageDep) -> dict[str, Any]:
    after = page.after([int])
    rows = await records.list_geofences(
        conn, user.tenant_id, after=after[0] if after else None, limit=page.fetch
    )
    features = [feature(r) for r in page.of(rows, lambda r: [r["id"]])]
    return {"type": "FeatureCollection", "features": features}


@router.get(
    "/traccar",
    summary="Export the tenant's geofences in Traccar's shape (area strings, latitude first)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": [
                        {
                            "id": 1,
                            "name": "Downtown Warehouse",
                            "description": "",
                            "area": "CIRCLE (40.7128 -74.006, 150)",
                            "attributes": {},
                        }
                    ]
                }
            }
        }
    },
)
async def export_traccar(user: StaffDep, conn: ConnDep) -> list[dict[str, Any]]:
    rows = await records.all_geofences(conn, user.tenant_id)
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "description": "",
            "area": traccar_area(r),
            "attributes": {},
        }
        for r in rows
    ]


@router.post(
    "/traccar",
    status_code=201,
    response_class=GeoJSONResponse,
    summary="Import geofences from Traccar's shape (all or nothing)",
    responses={
        201: {
            "content": {
                GEOJSON: {"example": {"type": "FeatureCollection", "features": [FEATURE_EXAMPLE]}}
            }
        },
        422: {"content": {"application/json": {"example": _INVALID_EXAMPLE}}},
    },
)
async def import_traccar(
    body: Annotated[
        list[TraccarGeofence],
        Body(
            examples=[
                [
                    {"id": 3, "name": "Warehouse", "area": "CIRCLE (40.7128 -74.006, 150)"},
                    {
                        "id": 4,
                        "name": "Yard",
                        "area": "POLYGON ((40.71 -74.01, 40.71 -74, 40.72 -74, 40.71 -74.01))",
                    },
                ]
            ]
        ),
    ],
    user: StaffDep,
    conn: ConnDep,
) -> dict[str, Any]:
    if not body or len(body) > 1_000:
        raise InvalidInput("send between 1 and 1000 geofences")
    shapes: list[Circle | PolygonArea] = []
    for i, g in enumerate(body):
        try:
            shapes.append(parse_traccar_area(g.area))
        except InvalidArea as exc:
            raise InvalidGeometry(f"geofence {i} ({g.name!r}): {exc}") from exc
    async with conn.transaction():
        ids = [
            await write_geofence(conn, user.tenant_id, g.name, None, s)
            for g, s in zip(body, shapes, strict=True)
        ]
        rows = await records.geofences_by_id(conn, ids)
    return {"type": "FeatureCollection", "features": [feature(r) for r in rows]}


@router.post(
    "",
    status_code=201,
    response_class=GeoJSONResponse,
    summary="Create a geofence from a circle, a GeoJSON polygon or a Traccar area",
    responses={
        201: {"content": {GEOJSON: {"example": FEATURE_EXAMPLE}}},
        404: {"description": "customerId is not a customer of the tenant"},
        409: {"description": "the customer already has a geofence"},
        422: {"content": {"application/json": {"example": _INVALID_EXAMPLE}}},
    },
)
async def create_geofence(body: GeofenceIn, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    shape = _shape(body)
    await check_customer(conn, user.tenant_id, body.customerId)
    gid = await write_geofence(conn, user.tenant_id, body.name, body.customerId, shape)
    return feature(await fetch_geofence(conn, user.tenant_id, str(gid)))


@router.get(
    "/{geofence_id}",
    response_class=GeoJSONResponse,
    summary="A geofence as a GeoJSON Feature",
    responses={200: {"content": {GEOJSON: {"example": FEATURE_EXAMPLE}}}},
)
async def get_geofence(geofence_id: str, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    return feature(await fetch_geofence(conn, user.tenant_id, geofence_id))


@router.put(
    "/{geofence_id}",
    response_class=GeoJSONResponse,
    summary="Replace a geofence's name and shape",
    responses={
        200: {"content": {GEOJSON: {"example": FEATURE_EXAMPLE}}},
        422: {"content": {"application/json": {"example": _INVALID_EXAMPLE}}},
    },
)
async def replace_geofence(
    geofence_id: str, body: GeofenceIn, user: StaffDep, conn: ConnDep
) -> dict[str, Any]:
    shape = _shape(body)
    row = await fetch_geofence(conn, user.tenant_id, geofence_id)
    await check_customer(conn, user.tenant_id, body.customerId)
    await write_geofence(conn, user.tenant_id, body.name, body.customerId, shape, row["id"])
    return feature(await fetch_geofence(conn, user.tenant_id, geofence_id))


@router.delete(
    "/{geofence_id}",
    status_code=204,
    summary="Delete a geofence",
    responses={204: {"description": "deleted"}},
)
async def delete_geofence(geofence_id: str, user: StaffDep, conn: ConnDep) -> Response:
    row = await fetch_geofence(conn, user.tenant_id, geofence_id)
    await records.delete_geofence(conn, row["id"])
    return Response(status_code=204)
