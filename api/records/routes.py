"""Delivery routes: the SQL of the routes table, its status rules, and its JSON.

A route's path is either sent by the client (a GeoJSON LineString, ``geomSource: planned``)
or derived from its visits' customers in sequence order (straight segments,
``geomSource: derived``), recomputed whenever its visits change.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

import asyncpg

from api.errors import Conflict, NotFound
from api.records.visits import visit_json, visits_of_route
from infrastructure.postgres import Conn

RouteStatus = Literal["planned", "in_progress", "completed", "cancelled"]
ROUTE_ALLOWED: dict[str, frozenset[str]] = {
    "planned": frozenset({"in_progress", "cancelled"}),
    "in_progress": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}

_SELECT = """SELECT id, tenant_id, driver_id, name, scheduled_date, status,
                    ST_AsGeoJSON(planned_geom)::json AS geometry, geom_source, started_at,
                    completed_at, total_stops, completed_stops, created_at, updated_at
             FROM routes"""


def route_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a routes row."""
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


async def route_with_visits(conn: Conn, row: asyncpg.Record) -> dict[str, Any]:
    """Render a route with its visits in sequence order."""
    return route_json(row) | {
        "visits": [visit_json(v) for v in await visits_of_route(conn, row["id"])]
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


async def create_route(
    conn: Conn,
    tenant: str,
    *,
    driver_id: uuid.UUID,
    name: str | None,
    scheduled_date: date,
    status: str,
    wkt: str | None,
) -> uuid.UUID:
    """Insert a route (a planned path as WKT, or None to derive it); return its id."""
    rid: uuid.UUID = await conn.fetchval(
        """INSERT INTO routes (tenant_id, driver_id, name, scheduled_date, status, planned_geom,
                               geom_source, started_at)
           VALUES ($1, $2, $3, $4, $5, ST_GeomFromText($6, 4326),
                   CASE WHEN $6::text IS NULL THEN NULL ELSE 'planned' END,
                   CASE WHEN $5 = 'in_progress' THEN now() END)
           RETURNING id""",
        tenant,
        driver_id,
        name,
        scheduled_date,
        status,
        wkt,
    )
    return rid


async def list_routes(
    conn: Conn,
    tenant: str,
    *,
    driver_id: uuid.UUID | None,
    day: date | None,
    status: str | None,
    after: list[Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Return the tenant's routes by (scheduled date, id) after the key ``after``."""
    return list(
        await conn.fetch(
            f"""{_SELECT}
            WHERE tenant_id = $1 AND ($2::uuid IS NULL OR driver_id = $2)
              AND ($3::date IS NULL OR scheduled_date = $3)
              AND ($4::text IS NULL OR status = $4)
              AND ($5::date IS NULL OR (scheduled_date, id) > ($5, $6::uuid))
            ORDER BY scheduled_date, id LIMIT $7""",
            tenant,
            driver_id,
            day,
            status,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


async def active_route(conn: Conn, tenant: str, driver_id: uuid.UUID) -> asyncpg.Record | None:
    """Return the driver's route in progress (the latest scheduled), or None."""
    return await conn.fetchrow(
        f"""{_SELECT} WHERE tenant_id = $1 AND driver_id = $2 AND status = 'in_progress'
            ORDER BY scheduled_date DESC, started_at DESC NULLS LAST LIMIT 1""",
        tenant,
        driver_id,
    )


async def routes_of_day(
    conn: Conn, tenant: str, driver_id: uuid.UUID, day: date
) -> list[asyncpg.Record]:
    """Return the driver's routes scheduled on a day, in creation order."""
    return list(
        await conn.fetch(
            f"""{_SELECT} WHERE tenant_id = $1 AND driver_id = $2 AND scheduled_date = $3
            ORDER BY created_at, id""",
            tenant,
            driver_id,
            day,
        )
    )


async def set_route_status(conn: Conn, row: asyncpg.Record, status: str) -> None:
    """Move a (locked) route to status; Conflict, with the allowed ones, when not allowed."""
    allowed = ROUTE_ALLOWED[row["status"]]
    if status not in allowed:
        raise Conflict(
            f"a route cannot go from {row['status']} to {status}",
            details={
                "current": row["status"],
                "requested": status,
                "allowedNext": sorted(allowed),
            },
        )
    await conn.execute(
        """UPDATE routes SET status = $2, updated_at = now(),
               started_at = CASE WHEN $2 = 'in_progress' THEN now() ELSE started_at END,
               completed_at = CASE WHEN $2 IN ('completed', 'cancelled') THEN now()
                                   ELSE completed_at END
           WHERE id = $1""",
        row["id"],
        status,
    )


async def set_route_name(conn: Conn, route_id: uuid.UUID, name: str | None) -> None:
    """Rename a route."""
    await conn.execute(
        "UPDATE routes SET name = $2, updated_at = now() WHERE id = $1", route_id, name
    )


async def set_route_path(conn: Conn, route_id: uuid.UUID, wkt: str | None) -> None:
    """Store a planned path (WKT), or with None derive it from the visits again."""
    if wkt is not None:
        await conn.execute(
            """UPDATE routes SET planned_geom = ST_GeomFromText($2, 4326),
                   geom_source = 'planned', updated_at = now() WHERE id = $1""",
            route_id,
            wkt,
        )
    else:
        await conn.execute(
            "UPDATE routes SET geom_source = NULL, planned_geom = NULL WHERE id = $1", route_id
        )
        await derive_route_path(conn, route_id)
