"""Delivery routes: create, list, get with visits, update (status, path), driver's active and
today's routes, the route's position history (the SQL and the JSON: ``api.records.routes``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from analytics.history_queries import driver_positions
from api.dependencies import (
    ConnDep,
    MemberDep,
    StaffDep,
    check_driver_scope,
    parse_uuid,
)
from api.errors import InvalidInput, NotFound
from api.pagination import PageDep, paginated_responses
from api.params import DayQuery, FromQuery, SaneDate, ScheduleFilter, ToQuery, history_window
from api.records import routes as records
from api.records.drivers import JOHN, check_driver
from api.records.positions import position_json
from api.records.routes import RouteStatus, fetch_route, route_json, route_with_visits
from geo.areas import InvalidArea, linestring_to_wkt, validate_geojson_linestring

router = APIRouter(prefix="/api/routes", tags=["routes"])

_LINE_EXAMPLE: dict[str, Any] = {
    "type": "LineString",
    "coordinates": [[-74.006, 40.7128], [-73.984, 40.7549], [-73.977, 40.686]],
}
ROUTE_EXAMPLE: dict[str, Any] = {
    "id": "5b0c8a8e-2f1d-4a8e-9c39-0d7f6f1f2a11",
    "tenantId": "tenant-1",
    "driverId": JOHN,
    "name": "Manhattan morning",
    "scheduledDate": "2026-02-07",
    "status": "planned",
    "geometry": _LINE_EXAMPLE,
    "geomSource": "derived",
    "startedAt": None,
    "completedAt": None,
    "totalStops": 3,
    "completedStops": 0,
    "createdAt": "2026-02-06T17:00:00+00:00",
    "updatedAt": "2026-02-06T17:00:00+00:00",
}


class RouteCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"driverId": JOHN, "scheduledDate": "2026-02-07"},
                {
                    "driverId": JOHN,
                    "scheduledDate": "2026-02-07",
                    "name": "Manhattan morning",
                    "geometry": _LINE_EXAMPLE,
                },
            ]
        },
    )

    driverId: uuid.UUID
    scheduledDate: SaneDate
    name: str | None = Field(default=None, max_length=200)
    status: Literal["planned", "in_progress"] = "planned"
    geometry: dict[str, Any] | None = Field(
        default=None,
        description="Planned path as a GeoJSON LineString; without it the path is derived "
        "from the visits' order.",
    )
    tenantId: str | None = Field(
        default=None, description="Ignored unless it differs from the caller's (then 422)."
    )


class RouteUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "in_progress"}, {"name": "Evening", "geometry": None}]
        },
    )

    status: RouteStatus | None = None
    name: str | None = Field(default=None, max_length=200)
    geometry: dict[str, Any] | None = Field(
        default=None, description="A new planned LineString, or null to derive it from visits."
    )


def _line_wkt(geometry: dict[str, Any]) -> str:
    try:
        return linestring_to_wkt(validate_geojson_linestring(geometry))
    except InvalidArea as exc:
        raise InvalidInput(f"geometry: {exc}") from exc


@router.post(
    "",
    status_code=201,
    summary="Create a route for a driver of the tenant",
    responses={
        201: {"content": {"application/json": {"example": ROUTE_EXAMPLE}}},
        404: {"description": "driverId is not a driver of the tenant"},
        422: {"description": "invalid body or geometry (the message says what is wrong)"},
    },
)
async def create_route(body: RouteCreate, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    if body.tenantId is not None and body.tenantId != user.tenant_id:
        raise InvalidInput("tenantId comes from your token; it cannot name another tenant")
    wkt = _line_wkt(body.geometry) if body.geometry is not None else None
    await check_driver(conn, user.tenant_id, body.driverId)
    rid = await records.create_route(
        conn,
        user.tenant_id,
        driver_id=body.driverId,
        name=body.name,
        scheduled_date=body.scheduledDate,
        status=body.status,
        wkt=wkt,
    )
    return route_json(await fetch_route(conn, user.tenant_id, rid))


def route_filter(
    driverId: Annotated[uuid.UUID | None, Query(examples=[JOHN])] = None,
    date_: DayQuery = None,
    status: Annotated[RouteStatus | None, Query(examples=["in_progress"])] = None,
) -> ScheduleFilter:
    """``?driverId=&date=&status=`` of the route list."""
    return ScheduleFilter(date_, status, driverId)


@router.get(
    "",
    summary="List the tenant's routes (a driver: their own), by scheduled date",
    responses=paginated_responses([ROUTE_EXAMPLE]),
)
async def list_routes(
    user: MemberDep,
    conn: ConnDep,
    page: PageDep,
    where: Annotated[ScheduleFilter, Depends(route_filter)],
) -> list[dict[str, Any]]:
    driver_id = where.driver_id
    if user.role == "driver":
        if driver_id is not None and str(driver_id) != user.driver_id:
            return []
        driver_id = uuid.UUID(user.driver_id) if user.driver_id else uuid.UUID(int=0)
    rows = await records.list_routes(
        conn,
        user.tenant_id,
        driver_id=driver_id,
        day=where.day,
        status=where.status,
        after=page.after([date, uuid.UUID]),
        limit=page.fetch,
    )
    return [route_json(r) for r in page.of(rows, lambda r: [r["scheduled_date"], r["id"]])]


def _active_or_today(user: MemberDep, driver_id: str) -> uuid.UUID:
    did = parse_uuid(driver_id, "driver")
    check_driver_scope(user, did, "driver")
    return did


@router.get(
    "/driver/{driver_id}/active",
    summary="The driver's route in progress (with visits)",
    responses={
        200: {"content": {"application/json": {"example": ROUTE_EXAMPLE | {"visits": []}}}},
        404: {"description": "no such driver in the tenant, or no route in progress"},
    },
)
async def driver_active_route(driver_id: str, user: MemberDep, conn: ConnDep) -> dict[str, Any]:
    did = _active_or_today(user, driver_id)
    row = await records.active_route(conn, user.tenant_id, did)
    if row is None:
        raise NotFound("the driver has no route in progress")
    return await route_with_visits(conn, row)


@router.get(
    "/driver/{driver_id}/today",
    summary="The driver's routes scheduled for today (UTC date)",
    responses={200: {"content": {"application/json": {"example": [ROUTE_EXAMPLE]}}}},
)
async def driver_routes_today(
    driver_id: str, user: MemberDep, conn: ConnDep
) -> list[dict[str, Any]]:
    did = _active_or_today(user, driver_id)
    await check_driver(conn, user.tenant_id, did)
    rows = await records.routes_of_day(conn, user.tenant_id, did, datetime.now(UTC).date())
    return [route_json(r) for r in rows]


@router.get(
    "/{route_id}",
    summary="A route with its visits in sequence order",
    responses={200: {"content": {"application/json": {"example": ROUTE_EXAMPLE | {"visits": []}}}}},
)
async def get_route(route_id: str, user: MemberDep, conn: ConnDep) -> dict[str, Any]:
    rid = parse_uuid(route_id, "route")
    row = await fetch_route(conn, user.tenant_id, rid)
    check_driver_scope(user, row["driver_id"], "route")
    return await route_with_visits(conn, row)


@router.patch(
    "/{route_id}",
    summary="Update a route: status (planned → in_progress → completed; cancelled), name, path",
    responses={
        200: {"content": {"application/json": {"example": ROUTE_EXAMPLE}}},
        409: {"description": "the status change is not allowed (details: allowedNext)"},
        422: {"description": "invalid body or geometry"},
    },
)
async def update_route(
    route_id: str, body: RouteUpdate, user: StaffDep, conn: ConnDep
) -> dict[str, Any]:
    rid = parse_uuid(route_id, "route")
    changes = body.model_dump(exclude_unset=True)
    wkt = _line_wkt(body.geometry) if body.geometry is not None else None
    if "status" in changes and changes["status"] is None:
        raise InvalidInput("status cannot be null")
    async with conn.transaction():
        row = await fetch_route(conn, user.tenant_id, rid, for_update=True)
        if body.status is not None:
            await records.set_route_status(conn, row, body.status)
        if "name" in changes:
            await records.set_route_name(conn, rid, body.name)
        if "geometry" in changes:
            await records.set_route_path(conn, rid, wkt)
        return route_json(await fetch_route(conn, user.tenant_id, rid))


@router.get(
    "/{route_id}/history",
    summary="The route's driver's stored positions during the route",
    description="Window: from/to if given, else the route's start..completion, else its "
    "scheduled day (UTC).",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "routeId": ROUTE_EXAMPLE["id"],
                        "driverId": JOHN,
                        "from": "2026-02-07T00:00:00+00:00",
                        "to": "2026-02-08T00:00:00+00:00",
                        "count": 0,
                        "positions": [],
                    }
                }
            }
        }
    },
)
async def route_history(
    route_id: str,
    user: MemberDep,
    conn: ConnDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    rid = parse_uuid(route_id, "route")
    row = await fetch_route(conn, user.tenant_id, rid)
    check_driver_scope(user, row["driver_id"], "route")
    day = datetime.combine(row["scheduled_date"], time(0), tzinfo=UTC)
    default_start = row["started_at"] or day
    default_end = row["completed_at"] or max(default_start, day) + timedelta(days=1)
    start, end = history_window(from_ or default_start.isoformat(), to or default_end.isoformat())
    rows = await driver_positions(
        conn,
        tenant_id=user.tenant_id,
        driver_id=row["driver_id"],
        start=start,
        end=end,
        limit=limit,
    )
    return {
        "routeId": str(rid),
        "driverId": str(row["driver_id"]),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "count": len(rows),
        "positions": [position_json(r) for r in rows],
    }
