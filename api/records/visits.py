"""Planned visits: the SQL of the planned_visits table and its JSON.

Status changes are not here: they follow the visit lifecycle (``ingest.visit_lifecycle``),
which the API and the enrichment worker share.
"""

from __future__ import annotations

import uuid
from datetime import date, time
from typing import Any

import asyncpg

from api.errors import Conflict, NotFound
from infrastructure.postgres import Conn
from ingest.visit_lifecycle import allowed_next

VISIT_SELECT = """SELECT id, tenant_id, route_id, driver_id, customer_id, sequence_number,
                         visit_type, scheduled_date, time_window_start, time_window_end, status,
                         arrived_at, departed_at, completed_at, notes, geofence_id, eta_at,
                         created_at, updated_at
                  FROM planned_visits"""


def _hhmm(t: time | None) -> str | None:
    if t is None:
        return None
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


def visit_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a planned_visits row, with the statuses that may follow its own."""

    def ts(name: str) -> str | None:
        v = r[name]
        return v.isoformat() if v is not None else None

    return {
        "id": str(r["id"]),
        "tenantId": r["tenant_id"],
        "routeId": str(r["route_id"]),
        "driverId": str(r["driver_id"]),
        "customerId": r["customer_id"],
        "sequenceNumber": r["sequence_number"],
        "visitType": r["visit_type"],
        "scheduledDate": r["scheduled_date"].isoformat(),
        "timeWindowStart": _hhmm(r["time_window_start"]),
        "timeWindowEnd": _hhmm(r["time_window_end"]),
        "status": r["status"],
        "allowedNext": sorted(allowed_next(r["status"])),
        "arrivedAt": ts("arrived_at"),
        "departedAt": ts("departed_at"),
        "completedAt": ts("completed_at"),
        "notes": r["notes"],
        "geofenceId": r["geofence_id"],
        "etaAt": ts("eta_at"),
        "createdAt": ts("created_at"),
        "updatedAt": ts("updated_at"),
    }


async def fetch_visit(
    conn: Conn, tenant: str, visit_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record:
    """Return the tenant's visit or raise NotFound (also for another tenant's)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"{VISIT_SELECT} WHERE id = $1 AND tenant_id = $2{lock}", visit_id, tenant
    )
    if row is None:
        raise NotFound("visit not found")
    return row


async def visits_of_route(conn: Conn, route_id: uuid.UUID) -> list[asyncpg.Record]:
    """Return a route's visits in sequence order."""
    return list(
        await conn.fetch(f"{VISIT_SELECT} WHERE route_id = $1 ORDER BY sequence_number", route_id)
    )


async def customer_geofence(conn: Conn, tenant: str, customer_id: int) -> int | None:
    """Return the geofence of the tenant's customer (None: it has none); NotFound when the
    customer is not the tenant's."""
    customer = await conn.fetchrow(
        """SELECT c.id, g.id AS geofence_id FROM customers c
           LEFT JOIN geofences g ON g.customer_id = c.id AND g.tenant_id = c.tenant_id
           WHERE c.id = $1 AND c.tenant_id = $2""",
        customer_id,
        tenant,
    )
    if customer is None:
        raise NotFound("customer not found")
    geofence_id: int | None = customer["geofence_id"]
    return geofence_id


async def insert_visit(
    conn: Conn, tenant: str, route: asyncpg.Record, fields: dict[str, Any]
) -> uuid.UUID:
    """Insert a visit on a route (its driver and, by default, its date); Conflict when the
    sequence number is taken. ``fields``: customer_id, sequence_number, visit_type,
    scheduled_date, time_window_start, time_window_end, notes, geofence_id."""
    try:
        async with conn.transaction():
            vid: uuid.UUID = await conn.fetchval(
                """INSERT INTO planned_visits (tenant_id, route_id, driver_id, customer_id,
                       sequence_number, visit_type, scheduled_date, time_window_start,
                       time_window_end, notes, geofence_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
                tenant,
                route["id"],
                route["driver_id"],
                fields["customer_id"],
                fields["sequence_number"],
                fields["visit_type"],
                fields["scheduled_date"] or route["scheduled_date"],
                fields["time_window_start"],
                fields["time_window_end"],
                fields["notes"],
                fields["geofence_id"],
            )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(
            f"sequence number {fields['sequence_number']} is already used on this route"
        ) from exc
    return vid


async def visits_by_route(
    conn: Conn, tenant: str, route_id: uuid.UUID, *, after: int | None, limit: int
) -> list[asyncpg.Record]:
    """Return a route's visits by sequence number after ``after``."""
    return list(
        await conn.fetch(
            f"""{VISIT_SELECT} WHERE route_id = $1 AND tenant_id = $2
              AND ($3::int IS NULL OR sequence_number > $3)
            ORDER BY sequence_number LIMIT $4""",
            route_id,
            tenant,
            after,
            limit,
        )
    )


async def visits_by_driver(
    conn: Conn,
    tenant: str,
    driver_id: uuid.UUID,
    *,
    day: date | None,
    status: str | None,
    after: list[Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Return a driver's visits by (scheduled date, sequence, id) after the key ``after``."""
    return list(
        await conn.fetch(
            f"""{VISIT_SELECT} WHERE driver_id = $1 AND tenant_id = $2
              AND ($3::date IS NULL OR scheduled_date = $3)
              AND ($4::text IS NULL OR status = $4)
              AND ($5::date IS NULL OR (scheduled_date, sequence_number, id) > ($5, $6, $7))
            ORDER BY scheduled_date, sequence_number, id LIMIT $8""",
            driver_id,
            tenant,
            day,
            status,
            after[0] if after else None,
            after[1] if after else None,
            after[2] if after else None,
            limit,
        )
    )
