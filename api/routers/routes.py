"""Delivery routes: create, list, get with visits, update (status, path), driver's active and
today's routes, the route's position history.

A route's path is either sent by the client (a GeoJSON LineString, ``geomSource: planned``)
or derived from its visits' customers in sequence order (straight segments,
``geomSource: derived``), recomputed whenever its visits change.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.dependencies import (
    ConnDep,
    MemberDep,
    StaffDep,
    check_driver_scope,
    parse_uuid,
)
from api.errors import Conflict, InvalidInput, NotFound
from api.pagination import CursorQuery, LimitQuery, decode_cursor, paginate, paginated_responses
from api.params import FromQuery, ToQuery, history_window
from api.routers.drivers import position_json
from geo.areas import InvalidArea, linestring_to_wkt, validate_geojson_linestring
from infrastructure.postgres import Conn

router = APIRouter(prefix="/api/routes", tags=["routes"])

RouteStatus = Literal["planned", "in_progress", "completed", "cancelled"]
ROUTE_ALLOWED: dict[str, frozenset[str]] = {
    "planned": frozenset({"in_progress", "cancelled"}),
    "in_progress": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"
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

_SELECT = """SELECT id, tenant_id, driver_id, name, scheduled_date, status,
                    ST_AsGeoJSON(planned_geom)::json AS geometry, geom_source, started_at,
                    completed_at, total_stops, completed_stops, created_at, updated_at
             FROM routes"""


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
    scheduledDate: date
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


def route_json(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "tenantId": r["tenant_id"],
        "driverId": str(r["driver_id"]),
        "name": r["name"],
        "scheduledDate": r["scheduled_date"].isoformat(),
        "status": r["status"],
        "geometry": r["geometry"],
        "geomSource": r["geom_source"],
        "startedAt": r["started_at"].isoformat() if r["started_at"] else None,
        "completedAt": r["completed_at"].isoformat() if r["completed_at"] else None,
        "totalStops": r["total_stops"],
        "completedStops": r["completed_stops"],
        "createdAt": r["created_at"].isoformat(),
        "updatedAt": r["updated_at"].isoformat(),
    }


async def fetch_route(
    conn: Conn, tenant: str, route_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record:
    """Return the tenant's route or raise NotFound (also for another tenant's)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"{_SELECT} WHERE id = $1 AND tenant_id = $2{lock}", route_id, tenant)
    if row is None:
        raise NotFound("route not found")
    return row


async def derive_route_path(conn: Conn, route_id: uuid.UUID) -> None:
    """Unless a planned path was sent, re-derive the route's path from its visits' customers
    in sequence order (straight segments). Stop counters are kept by triggers (0007)."""
    await conn.execute(
        """WITH v AS (
               SELECT ST_MakeLine(ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326)
                                  ORDER BY pv.sequence_number) AS line,
                      count(DISTINCT (c.lng, c.lat)) AS points
               FROM planned_visits pv JOIN customers c ON c.id = pv.customer_id
               WHERE pv.route_id = $1)
           UPDATE routes r SET
               planned_geom = CASE WHEN v.points >= 2 THEN v.line END,
               geom_source = CASE WHEN v.points >= 2 THEN 'derived' END,
               updated_at = now()
           FROM v WHERE r.id = $1 AND r.geom_source IS DISTINCT FROM 'planned'""",
        route_id,
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
    exists = await conn.fetchval(
        "SELECT 1 FROM drivers WHERE id = $1 AND tenant_id = $2", body.driverId, user.tenant_id
    )
    if not exists:
        raise NotFound("driver not found")
    rid = await conn.fetchval(
        """INSERT INTO routes (tenant_id, driver_id, name, scheduled_date, status, planned_geom,
                               geom_source, started_at)
           VALUES ($1, $2, $3, $4, $5, ST_GeomFromText($6, 4326),
                   CASE WHEN $6::text IS NULL THEN NULL ELSE 'planned' END,
                   CASE WHEN $5 = 'in_progress' THEN now() END)
           RETURNING id""",
        user.tenant_id,
        body.driverId,
        body.name,
        body.scheduledDate,
        body.status,
        wkt,
    )
    return route_json(await fetch_route(conn, user.tenant_id, rid))


@router.get(
    "",
    summary="List the tenant's routes (a driver: their own), by scheduled date",
    responses=paginated_responses([ROUTE_EXAMPLE]),
)
async def list_routes(
    user: MemberDep,
    conn: ConnDep,
    request: Request,
    response: Response,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    driverId: Annotated[uuid.UUID | None, Query(examples=[JOHN])] = None,
    date_: Annotated[date | None, Query(alias="date", examples=["2026-02-07"])] = None,
    status: Annotated[RouteStatus | None, Query(examples=["in_progress"])] = None,
) -> list[dict[str, Any]]:
    if user.role == "driver":
        if driverId is not None and str(driverId) != user.driver_id:
            return []
        driverId = uuid.UUID(user.driver_id) if user.driver_id else uuid.UUID(int=0)
    after = decode_cursor(cursor, [date, uuid.UUID])
    rows = await conn.fetch(
        f"""{_SELECT}
            WHERE tenant_id = $1 AND ($2::uuid IS NULL OR driver_id = $2)
              AND ($3::date IS NULL OR scheduled_date = $3)
              AND ($4::text IS NULL OR status = $4)
              AND ($5::date IS NULL OR (scheduled_date, id) > ($5, $6::uuid))
            ORDER BY scheduled_date, id LIMIT $7""",
        user.tenant_id,
        driverId,
        date_,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    page = paginate(rows, limit, lambda r: [r["scheduled_date"], r["id"]], request, response)
    return [route_json(r) for r in page]


async def _visits_of(conn: Conn, route_id: uuid.UUID) -> list[dict[str, Any]]:
    from api.routers.visits import VISIT_SELECT, visit_json

    rows = await conn.fetch(
        f"{VISIT_SELECT} WHERE route_id = $1 ORDER BY sequence_number", route_id
    )
    return [visit_json(r) for r in rows]


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
    row = await conn.fetchrow(
        f"""{_SELECT} WHERE tenant_id = $1 AND driver_id = $2 AND status = 'in_progress'
            ORDER BY scheduled_date DESC, started_at DESC NULLS LAST LIMIT 1""",
        user.tenant_id,
        did,
    )
    if row is None:
        raise NotFound("the driver has no route in progress")
    return route_json(row) | {"visits": await _visits_of(conn, row["id"])}


@router.get(
    "/driver/{driver_id}/today",
    summary="The driver's routes scheduled for today (UTC date)",
    responses={200: {"content": {"application/json": {"example": [ROUTE_EXAMPLE]}}}},
)
async def driver_routes_today(
    driver_id: str, user: MemberDep, conn: ConnDep
) -> list[dict[str, Any]]:
    did = _active_or_today(user, driver_id)
    exists = await conn.fetchval(
        "SELECT 1 FROM drivers WHERE id = $1 AND tenant_id = $2", did, user.tenant_id
    )
    if not exists:
        raise NotFound("driver not found")
    rows = await conn.fetch(
        f"""{_SELECT} WHERE tenant_id = $1 AND driver_id = $2 AND scheduled_date = $3
            ORDER BY created_at, id""",
        user.tenant_id,
        did,
        datetime.now(UTC).date(),
    )
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
    return route_json(row) | {"visits": await _visits_of(conn, rid)}


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
            allowed = ROUTE_ALLOWED[row["status"]]
            if body.status not in allowed:
                raise Conflict(
                    f"a route cannot go from {row['status']} to {body.status}",
                    details={
                        "current": row["status"],
                        "requested": body.status,
                        "allowedNext": sorted(allowed),
                    },
                )
            await conn.execute(
                """UPDATE routes SET status = $2, updated_at = now(),
                       started_at = CASE WHEN $2 = 'in_progress' THEN now() ELSE started_at END,
                       completed_at = CASE WHEN $2 IN ('completed', 'cancelled') THEN now()
                                           ELSE completed_at END
                   WHERE id = $1""",
                rid,
                body.status,
            )
        if "name" in changes:
            await conn.execute(
                "UPDATE routes SET name = $2, updated_at = now() WHERE id = $1", rid, body.name
            )
        if "geometry" in changes:
            if wkt is not None:
                await conn.execute(
                    """UPDATE routes SET planned_geom = ST_GeomFromText($2, 4326),
                           geom_source = 'planned', updated_at = now() WHERE id = $1""",
                    rid,
                    wkt,
                )
            else:
                await conn.execute(
                    "UPDATE routes SET geom_source = NULL, planned_geom = NULL WHERE id = $1", rid
                )
                await derive_route_path(conn, rid)
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
    rows = await conn.fetch(
        """SELECT fix_time, lat, lon, speed_kmh, course, altitude, accuracy, valid, h3_cell
           FROM positions
           WHERE driver_id = $1 AND tenant_id = $2 AND fix_time >= $3 AND fix_time < $4
           ORDER BY fix_time LIMIT $5""",
        row["driver_id"],
        user.tenant_id,
        start,
        end,
        limit,
    )
    return {
        "routeId": str(rid),
        "driverId": str(row["driver_id"]),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "count": len(rows),
        "positions": [position_json(r) for r in rows],
    }
