"""Drivers: CRUD, live geo-queries (near a point, within a bbox or polygon), history.

Live queries read Redis (the GEO set per tenant, then each driver's latest JSON for the exact
coordinates and fix time); history reads PostgreSQL. Everything is scoped to the caller's
tenant; a driver-role caller sees only their own driver.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from shapely import prepared
from shapely.geometry import Point, Polygon

from analytics.history_queries import driver_positions, positions_in_bbox
from api.dependencies import (
    ConnDep,
    MemberDep,
    StaffDep,
    StateDep,
    check_driver_scope,
    parse_uuid,
)
from api.errors import InvalidInput, NotFound
from api.pagination import CursorQuery, PageDep, decode_cursor, paginate, paginated_responses
from api.params import FromQuery, ToQuery, history_window
from api.records import customers
from api.records import drivers as records
from api.records.drivers import driver_json, fetch_driver
from api.records.latest import fix_age_s, is_active, latest_positions
from api.records.positions import position_json
from api.state import AppState
from geo.areas import (
    bbox_to_ring,
    covering_circle,
    parse_bbox,
    validate_geojson_polygon,
)
from geo.timestamps import iso_ms
from ingest.model import EnrichedMessage

router = APIRouter(prefix="/api/drivers", tags=["drivers"])

# Redis GEO measures on a sphere; the covering circle gets a margin, the exact test follows.
_COVER_MARGIN = 1.01
_COVER_PAD_M = 50.0
MAX_LIVE_RADIUS_M = 2_000_000.0

DRIVER_EXAMPLE: dict[str, Any] = {
    "id": "a1b2c3d4-0001-4000-8000-000000000001",
    "tenantId": "tenant-1",
    "name": "John Smith",
    "deviceId": "DEV001",
    "phone": "+1 212 555 0101",
    "email": "john@example.com",
    "vehicleType": "van",
    "vehiclePlate": "ABC-1234",
    "status": "active",
    "active": True,
    "createdAt": "2026-02-07T08:00:00+00:00",
    "updatedAt": "2026-02-07T08:00:00+00:00",
}
_LIVE_DRIVER_EXAMPLE: dict[str, Any] = {
    "driverId": "a1b2c3d4-0001-4000-8000-000000000001",
    "distanceM": 42.7,
    "lastFixTime": "2026-02-07T09:15:02.000Z",
    "ageS": 3.2,
    "position": {"lat": 40.713, "lon": -74.0055, "speed": 18.5, "fixTime": "..."},
}
_BBOX_EXAMPLE = "-74.02,40.70,-73.97,40.75"
IncludeStaleQuery = Annotated[
    bool,
    Query(
        description="also drivers whose latest fix is older than the active window "
        "(FLEETPULSE_LIVE__ACTIVE_WINDOW_S, default 300 s); each entry has ageS either way"
    ),
]


class DriverCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Carla Diaz",
                    "deviceId": "DEV104",
                    "phone": "+1 212 555 0104",
                    "vehicleType": "van",
                    "vehiclePlate": "JKL-3456",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    deviceId: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    vehicleType: str | None = Field(default=None, max_length=64)
    vehiclePlate: str | None = Field(default=None, max_length=32)
    status: str = Field(default="active", pattern=r"^[a-z_]{1,32}$")
    active: bool = True
    tenantId: str | None = Field(
        default=None, description="Ignored unless it differs from the caller's (then 422)."
    )


class DriverUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"vehiclePlate": "XYZ-0001", "status": "on_break"}]},
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    deviceId: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$"
    )
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=320)
    vehicleType: str | None = Field(default=None, max_length=64)
    vehiclePlate: str | None = Field(default=None, max_length=32)
    status: str | None = Field(default=None, pattern=r"^[a-z_]{1,32}$")
    active: bool | None = None


class WithinBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [
                            [
                                [-74.02, 40.70],
                                [-73.97, 40.70],
                                [-73.97, 40.75],
                                [-74.02, 40.70],
                            ]
                        ],
                    },
                    "limit": 100,
                }
            ]
        },
    )

    geometry: dict[str, Any] = Field(description="A GeoJSON Polygon (or a Feature holding one).")
    limit: int = Field(default=1_000, ge=1, le=10_000)


def active_filter(
    active: Annotated[bool | None, Query(description="Only active (or inactive) drivers")] = None,
) -> bool | None:
    """``?active=`` of the driver list (a dependency: after the page's parameters)."""
    return active


@router.get(
    "",
    summary="List the tenant's drivers (cursor-paginated by id)",
    responses=paginated_responses([DRIVER_EXAMPLE]),
)
async def list_drivers(
    user: StaffDep,
    conn: ConnDep,
    page: PageDep,
    active: Annotated[bool | None, Depends(active_filter)],
) -> list[dict[str, Any]]:
    after = page.after([uuid.UUID])
    rows = await records.list_drivers(
        conn, user.tenant_id, after=after[0] if after else None, active=active, limit=page.fetch
    )
    return [driver_json(r) for r in page.of(rows, lambda r: [r["id"]])]


@router.post(
    "",
    status_code=201,
    summary="Create a driver (its device id must be unique across all tenants)",
    responses={
        201: {"content": {"application/json": {"example": DRIVER_EXAMPLE}}},
        409: {"description": "the device id is already registered"},
    },
)
async def create_driver(body: DriverCreate, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    if body.tenantId is not None and body.tenantId != user.tenant_id:
        raise InvalidInput("tenantId comes from your token; it cannot name another tenant")
    row = await records.create_driver(conn, user.tenant_id, body.model_dump())
    return driver_json(row)


@router.get(
    "/near",
    summary="Drivers near a point (live, nearest first)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "center": {"lat": 40.7128, "lon": -74.006},
                        "radiusM": 1000,
                        "drivers": [_LIVE_DRIVER_EXAMPLE],
                    }
                }
            }
        }
    },
)
async def drivers_near(
    state: StateDep,
    user: StaffDep,
    lat: Annotated[float, Query(ge=-85.05112878, le=85.05112878, examples=[40.7128])],
    lon: Annotated[float, Query(ge=-180, le=180, examples=[-74.006])],
    radius_m: Annotated[float, Query(gt=0, le=100_000, examples=[1000])] = 1_000,
    limit: Annotated[int, Query(ge=1, le=1_000, examples=[50])] = 50,
    include_stale: IncludeStaleQuery = False,
) -> dict[str, Any]:
    """Drivers of the caller's tenant whose latest position is within radius_m, nearest first."""
    found = await _live_search(state, user.tenant_id, lon, lat, radius_m, limit, include_stale)
    drivers = [
        {
            "driverId": driver_id,
            "distanceM": round(dist, 1),
            "lastFixTime": pos.get("fixTime"),
            "ageS": age,
            "position": pos,
        }
        for driver_id, dist, pos, age in found
    ]
    return {"center": {"lat": lat, "lon": lon}, "radiusM": radius_m, "drivers": drivers}


LiveHit = tuple[str, float, EnrichedMessage, float | None]  # id, distance, latest, age (s)


async def _live_search(
    state: AppState,
    tenant: str,
    lon: float,
    lat: float,
    radius_m: float,
    limit: int | None,
    include_stale: bool,
) -> list[LiveHit]:
    """Drivers in the circle with their latest position and age, nearest first.

    Without ``include_stale`` only active drivers; when stale ones took places among the
    nearest ``limit``, the whole circle is read again so the active ones still fill it.
    """
    window_s = state.settings.live.active_window_s
    now_ms = int(time.time() * 1000)

    async def search(count: int | None) -> tuple[int, list[LiveHit]]:
        hits = await _geosearch(state, tenant, lon, lat, radius_m, count)
        rows = [(i, d, p, fix_age_s(p, now_ms)) for i, d, p in await _with_latest(state, hits)]
        return len(hits), [r for r in rows if include_stale or is_active(r[3], window_s)]

    n, found = await search(limit)
    if limit is not None and n == limit and len(found) < limit:
        _, found = await search(None)
    return found if limit is None else found[:limit]


async def _geosearch(
    state: AppState, tenant: str, lon: float, lat: float, radius_m: float, limit: int | None
) -> list[tuple[str, float]]:
    raw_hits = await state.redis.geosearch(
        state.keys.geo(tenant),
        longitude=lon,
        latitude=lat,
        radius=radius_m,
        unit="m",
        sort="ASC",
        count=limit,
        withdist=True,
    )
    hits = cast(list[tuple[bytes, float]], raw_hits)
    return [(m.decode(), float(d)) for m, d in hits]


async def _with_latest(
    state: AppState, hits: list[tuple[str, float]]
) -> list[tuple[str, float, EnrichedMessage]]:
    latest = await latest_positions(state.redis, state.keys, [i for i, _ in hits])
    # None: expired or pruned since the GEO search
    return [(i, d, m) for (i, d), m in zip(hits, latest, strict=True) if m is not None]


async def _drivers_within(
    state: AppState,
    tenant: str,
    ring: list[tuple[float, float]],
    holes: list[Any],
    limit: int,
    include_stale: bool,
) -> dict[str, Any]:
    cover = covering_circle(ring)
    radius = cover.radius_m * _COVER_MARGIN + _COVER_PAD_M
    if radius > MAX_LIVE_RADIUS_M:
        raise InvalidInput(
            f"the area is too large for a live query (covering radius {radius / 1000:.0f} km, "
            f"at most {MAX_LIVE_RADIUS_M / 1000:.0f} km)"
        )
    found = await _live_search(state, tenant, cover.lon, cover.lat, radius, None, include_stale)
    shape = prepared.prep(Polygon(ring, holes=holes))
    drivers = []
    for driver_id, _dist, pos, age in found:
        # Exact test on the stored coordinates (the GEO set keeps a 52-bit approximation).
        if shape.covers(Point(float(pos["lon"]), float(pos["lat"]))):
            drivers.append(
                {
                    "driverId": driver_id,
                    "lastFixTime": pos.get("fixTime"),
                    "ageS": age,
                    "position": pos,
                }
            )
        if len(drivers) >= limit:
            break
    return {"count": len(drivers), "drivers": drivers}


_WITHIN_EXAMPLE = {"count": 1, "drivers": [_LIVE_DRIVER_EXAMPLE | {"distanceM": None}]}


@router.get(
    "/within",
    summary="Drivers whose latest position is inside a bbox (live)",
    responses={
        200: {"content": {"application/json": {"example": _WITHIN_EXAMPLE}}},
        422: {"description": "malformed or out-of-range bbox, or an area too large"},
    },
)
async def drivers_within_bbox(
    state: StateDep,
    user: StaffDep,
    bbox: Annotated[
        str,
        Query(
            max_length=200,
            description="minLon,minLat,maxLon,maxLat (WGS84, edges included)",
            examples=[_BBOX_EXAMPLE],
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
    include_stale: IncludeStaleQuery = False,
) -> dict[str, Any]:
    ring = bbox_to_ring(*parse_bbox(bbox))
    return await _drivers_within(state, user.tenant_id, ring, [], limit, include_stale)


@router.post(
    "/within",
    summary="Drivers whose latest position is inside a GeoJSON polygon (live)",
    responses={
        200: {"content": {"application/json": {"example": _WITHIN_EXAMPLE}}},
        422: {"description": "the polygon is invalid (the message says why) or too large"},
    },
)
async def drivers_within_polygon(
    body: WithinBody, state: StateDep, user: StaffDep, include_stale: IncludeStaleQuery = False
) -> dict[str, Any]:
    area = validate_geojson_polygon(body.geometry)
    rings = area.rings
    return await _drivers_within(
        state, user.tenant_id, rings[0], rings[1:], body.limit, include_stale
    )


@router.get(
    "/history",
    summary="Stored positions of all drivers inside a bbox and a time window (paginated)",
    responses=paginated_responses(
        [
            {
                "driverId": "a1b2c3d4-0001-4000-8000-000000000001",
                "deviceId": "DEV001",
                "routeId": None,
                "time": "2026-02-07T09:15:02.000Z",
                "lat": 40.713,
                "lon": -74.0055,
                "speed": 18.5,
                "course": 90.0,
                "altitude": 12.0,
                "accuracy": 8.0,
                "valid": True,
                "h3Cell": "8a2a1072b59ffff",
            }
        ]
    ),
)
async def positions_within_bbox(
    user: StaffDep,
    conn: ConnDep,
    request: Request,
    response: Response,
    bbox: Annotated[
        str,
        Query(max_length=200, description="minLon,minLat,maxLon,maxLat", examples=[_BBOX_EXAMPLE]),
    ],
    from_: FromQuery = None,
    to: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
    cursor: CursorQuery = None,
) -> list[dict[str, Any]]:
    box = parse_bbox(bbox)
    start, end = history_window(from_, to)
    after = decode_cursor(cursor, [datetime, uuid.UUID])
    rows = await positions_in_bbox(
        conn,
        tenant_id=user.tenant_id,
        start=start,
        end=end,
        bbox=box,
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    page = paginate(rows, limit, lambda r: [r["fix_time"], r["driver_id"]], request, response)
    return [
        {
            "driverId": str(r["driver_id"]),
            "deviceId": r["device_unique_id"],
            "routeId": str(r["route_id"]) if r["route_id"] else None,
            **position_json(r),
        }
        for r in page
    ]


@router.get(
    "/{driver_id}",
    summary="A driver of the tenant (a driver-role caller: only themself)",
    responses={200: {"content": {"application/json": {"example": DRIVER_EXAMPLE}}}},
)
async def get_driver(driver_id: str, user: MemberDep, conn: ConnDep) -> dict[str, Any]:
    did = parse_uuid(driver_id, "driver")
    check_driver_scope(user, did, "driver")
    return driver_json(await fetch_driver(conn, user.tenant_id, did))


@router.patch(
    "/{driver_id}",
    summary="Update a driver (only the fields sent)",
    responses={
        200: {"content": {"application/json": {"example": DRIVER_EXAMPLE}}},
        409: {"description": "the new device id is already registered"},
    },
)
async def update_driver(
    driver_id: str, body: DriverUpdate, user: StaffDep, conn: ConnDep
) -> dict[str, Any]:
    did = parse_uuid(driver_id, "driver")
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "deviceId", "status", "active"):
        if key in changes and changes[key] is None:
            raise InvalidInput(f"{key} cannot be null")
    if not changes:
        return driver_json(await fetch_driver(conn, user.tenant_id, did))
    row = await records.update_driver(conn, user.tenant_id, did, changes)
    return driver_json(row)


@router.get(
    "/{driver_id}/history",
    summary="A driver's stored positions between from and to (default: the last 24 hours)",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "driverId": "a1b2c3d4-0001-4000-8000-000000000001",
                        "from": "2026-02-07T00:00:00+00:00",
                        "to": "2026-02-08T00:00:00+00:00",
                        "count": 1,
                        "positions": [
                            {
                                "time": "2026-02-07T09:15:02.000Z",
                                "lat": 40.713,
                                "lon": -74.0055,
                                "speed": 18.5,
                                "course": 90.0,
                                "altitude": 12.0,
                                "accuracy": 8.0,
                                "valid": True,
                                "h3Cell": "8a2a1072b59ffff",
                                "protocol": "osmand",
                            }
                        ],
                    }
                }
            }
        }
    },
)
async def driver_history(
    driver_id: str,
    conn: ConnDep,
    user: MemberDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """A driver's stored positions between from and to (default: the last 24 hours)."""
    did = parse_uuid(driver_id, "driver")
    check_driver_scope(user, did, "driver")
    start, end = history_window(from_, to)
    await fetch_driver(conn, user.tenant_id, did)  # another tenant's driver: 404, no leak
    rows = await driver_positions(
        conn, tenant_id=user.tenant_id, driver_id=did, start=start, end=end, limit=limit
    )
    return {
        "driverId": driver_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "count": len(rows),
        "positions": [position_json(r) | {"protocol": r["protocol"]} for r in rows],
    }


@router.get(
    "/{driver_id}/nearest-customers",
    summary="The tenant's customers nearest to a driver's latest position",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "driverId": "a1b2c3d4-0001-4000-8000-000000000001",
                        "position": {
                            "lat": 40.713,
                            "lon": -74.0055,
                            "fixTime": "2026-02-07T09:15:02.000Z",
                        },
                        "customers": [
                            {
                                "id": 1,
                                "name": "Downtown Warehouse",
                                "address": None,
                                "lat": 40.7128,
                                "lng": -74.006,
                                "customerType": "warehouse",
                                "distanceM": 46.3,
                            }
                        ],
                    }
                }
            }
        },
        404: {"description": "no such driver in the tenant, or no known position yet"},
    },
)
async def nearest_customers(
    driver_id: str,
    user: MemberDep,
    conn: ConnDep,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    did = parse_uuid(driver_id, "driver")
    check_driver_scope(user, did, "driver")
    await fetch_driver(conn, user.tenant_id, did)
    [pos] = await latest_positions(state.redis, state.keys, [str(did)])
    if pos is not None:
        lat, lon, fix = float(pos["lat"]), float(pos["lon"]), pos.get("fixTime")
    else:
        snap = await records.snapshot_position(conn, did)
        if snap is None:
            raise NotFound("the driver has no known position yet")
        lat, lon = snap["lat"], snap["lon"]
        fix = iso_ms(int(snap["fix_time"].timestamp() * 1000))
    rows = await customers.nearest_customers(conn, user.tenant_id, lon=lon, lat=lat, limit=limit)
    return {
        "driverId": str(did),
        "position": {"lat": lat, "lon": lon, "fixTime": fix},
        "customers": [customers.nearby_json(r) for r in rows],
    }
