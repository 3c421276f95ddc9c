"""Customers (a cache of the source of truth kept fresh by CDC): read-only SQL and JSON."""

from __future__ import annotations

from typing import Any

import asyncpg

from api.errors import NotFound
from infrastructure.postgres import Conn

_SELECT = """SELECT c.id, c.tenant_id, c.account_id, c.name, c.address, c.lat, c.lng,
                    c.geofence_radius_m, c.customer_type, c.active, c.updated_at,
                    g.id AS geofence_id
             FROM customers c
             LEFT JOIN geofences g ON g.customer_id = c.id AND g.tenant_id = c.tenant_id"""


def customer_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a customers row with its geofence id."""
    return {
        "id": r["id"],
        "tenantId": r["tenant_id"],
        "accountId": r["account_id"],
        "name": r["name"],
        "address": r["address"],
        "lat": r["lat"],
        "lng": r["lng"],
        "geofenceRadiusM": r["geofence_radius_m"],
        "customerType": r["customer_type"],
        "active": r["active"],
        "geofenceId": r["geofence_id"],
        "updatedAt": r["updated_at"].isoformat(),
    }


def nearby_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a row of ``nearest_customers``."""
    return {
        "id": r["id"],
        "name": r["name"],
        "address": r["address"],
        "lat": r["lat"],
        "lng": r["lng"],
        "customerType": r["customer_type"],
        "distanceM": round(float(r["distance_m"]), 2),
    }


async def list_customers(
    conn: Conn, tenant: str, *, after: int | None, active: bool | None, limit: int
) -> list[asyncpg.Record]:
    """Return the tenant's customers by id after ``after``."""
    return list(
        await conn.fetch(
            f"""{_SELECT} WHERE c.tenant_id = $1 AND ($2::bigint IS NULL OR c.id > $2)
              AND ($3::boolean IS NULL OR c.active = $3)
            ORDER BY c.id LIMIT $4""",
            tenant,
            after,
            active,
            limit,
        )
    )


async def fetch_customer(conn: Conn, tenant: str, customer_id: str) -> asyncpg.Record:
    """Return the tenant's customer by its id as text; NotFound otherwise."""
    if not customer_id.isdigit() or len(customer_id) > 18:
        raise NotFound("customer not found")
    row = await conn.fetchrow(
        f"{_SELECT} WHERE c.id = $1 AND c.tenant_id = $2", int(customer_id), tenant
    )
    if row is None:
        raise NotFound("customer not found")
    return row


async def check_customer(conn: Conn, tenant: str, customer_id: int | None) -> None:
    """Raise NotFound unless customer_id (when given) is the tenant's customer."""
    if customer_id is None:
        return
    if not await conn.fetchval(
        "SELECT 1 FROM customers WHERE id = $1 AND tenant_id = $2", customer_id, tenant
    ):
        raise NotFound("customer not found")


async def nearest_customers(
    conn: Conn, tenant: str, *, lon: float, lat: float, limit: int
) -> list[asyncpg.Record]:
    """Return the tenant's active customers nearest to (lon, lat), with ``distance_m``."""
    return list(
        await conn.fetch(
            """WITH p AS (SELECT ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography AS g)
           SELECT c.id, c.name, c.address, c.lat, c.lng, c.customer_type,
                  ST_Distance(ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326)::geography, p.g)
                      AS distance_m
           FROM customers c, p
           WHERE c.tenant_id = $1 AND c.active
           ORDER BY distance_m, c.id
           LIMIT $4""",
            tenant,
            lon,
            lat,
            limit,
        )
    )


async def customer_name(conn: Conn, customer_id: int) -> str | None:
    """Return a customer's name (None when unknown)."""
    name: str | None = await conn.fetchval("SELECT name FROM customers WHERE id = $1", customer_id)
    return name
