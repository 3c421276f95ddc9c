"""Drivers: the SQL of the drivers table and its JSON."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.errors import Conflict, NotFound
from infrastructure.postgres import Conn

# The demo's first driver: the id the OpenAPI examples use.
JOHN = "a1b2c3d4-0001-4000-8000-000000000001"

# API field -> column, for partial updates
COLUMNS = {
    "name": "name",
    "deviceId": "device_unique_id",
    "phone": "phone",
    "email": "email",
    "vehicleType": "vehicle_type",
    "vehiclePlate": "vehicle_plate",
    "status": "status",
    "active": "active",
}
_FIELDS = """id, tenant_id, name, device_unique_id, phone, email, vehicle_type,
                    vehicle_plate, status, active, created_at, updated_at"""
_SELECT = f"SELECT {_FIELDS} FROM drivers"
_DUPLICATE = "a driver with this deviceId is already registered"


def driver_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a drivers row."""
    return {
        "id": str(r["id"]),
        "tenantId": r["tenant_id"],
        "name": r["name"],
        "deviceId": r["device_unique_id"],
        "phone": r["phone"],
        "email": r["email"],
        "vehicleType": r["vehicle_type"],
        "vehiclePlate": r["vehicle_plate"],
        "status": r["status"],
        "active": r["active"],
        "createdAt": r["created_at"].isoformat(),
        "updatedAt": r["updated_at"].isoformat(),
    }


async def fetch_driver(conn: Conn, tenant: str, driver_id: uuid.UUID) -> asyncpg.Record:
    """Return the tenant's driver or raise NotFound (also for another tenant's)."""
    row = await conn.fetchrow(f"{_SELECT} WHERE id = $1 AND tenant_id = $2", driver_id, tenant)
    if row is None:
        raise NotFound("driver not found")
    return row


async def check_driver(conn: Conn, tenant: str, driver_id: uuid.UUID) -> None:
    """Raise NotFound unless the driver is the tenant's."""
    exists = await conn.fetchval(
        "SELECT 1 FROM drivers WHERE id = $1 AND tenant_id = $2", driver_id, tenant
    )
    if not exists:
        raise NotFound("driver not found")


async def driver_tenant(conn: Conn, driver_id: uuid.UUID) -> str | None:
    """Return the tenant of a driver, or None when there is no such driver."""
    tenant: str | None = await conn.fetchval(
        "SELECT tenant_id FROM drivers WHERE id = $1", driver_id
    )
    return tenant


async def list_drivers(
    conn: Conn, tenant: str, *, after: uuid.UUID | None, active: bool | None, limit: int
) -> list[asyncpg.Record]:
    """Return the tenant's drivers by id after ``after``; at most ``limit``."""
    return list(
        await conn.fetch(
            f"""{_SELECT} WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2)
                AND ($3::boolean IS NULL OR active = $3) ORDER BY id LIMIT $4""",
            tenant,
            after,
            active,
            limit,
        )
    )


async def create_driver(conn: Conn, tenant: str, fields: dict[str, Any]) -> asyncpg.Record:
    """Insert a driver (API field names); Conflict when the device id is taken."""
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO drivers (tenant_id, name, device_unique_id, phone, email,
                                    vehicle_type, vehicle_plate, status, active)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               RETURNING {_FIELDS}""",
            tenant,
            *(fields[k] for k in COLUMNS),
        )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(_DUPLICATE) from exc
    assert row is not None
    return row


async def update_driver(
    conn: Conn, tenant: str, driver_id: uuid.UUID, changes: dict[str, Any]
) -> asyncpg.Record:
    """Set the changed fields (API names); NotFound, or Conflict when the device id is taken."""
    sets = ", ".join(f"{COLUMNS[k]} = ${i}" for i, k in enumerate(changes, start=3))
    try:
        row = await conn.fetchrow(
            f"""UPDATE drivers SET {sets}, updated_at = now()
                WHERE id = $1 AND tenant_id = $2
                RETURNING {_FIELDS}""",
            driver_id,
            tenant,
            *changes.values(),
        )
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(_DUPLICATE) from exc
    if row is None:
        raise NotFound("driver not found")
    return row


async def room_owner(conn: Conn, kind: str, target: uuid.UUID) -> tuple[str, str] | None:
    """Return (tenant, driver id) owning a live room's driver or route, None when unknown."""
    if kind == "driver":
        sql = "SELECT tenant_id, id::text AS driver_id FROM drivers WHERE id = $1::uuid"
    else:
        sql = "SELECT tenant_id, driver_id::text AS driver_id FROM routes WHERE id = $1::uuid"
    row = await conn.fetchrow(sql, target)
    return None if row is None else (row["tenant_id"], row["driver_id"])


async def snapshot_position(conn: Conn, driver_id: uuid.UUID) -> asyncpg.Record | None:
    """Return the driver's latest stored position (lat, lon, fix_time), None when none."""
    return await conn.fetchrow(
        "SELECT lat, lon, fix_time FROM driver_positions WHERE driver_id = $1", driver_id
    )


async def drivers_with_snapshot(conn: Conn, tenant: str) -> list[asyncpg.Record]:
    """Return the tenant's drivers by name, each with its latest stored position (or NULLs)."""
    return list(
        await conn.fetch(
            """SELECT d.id, d.name, d.device_unique_id, d.status, d.active,
                  p.fix_time, p.lat, p.lon, p.speed_kmh, p.course
           FROM drivers d LEFT JOIN driver_positions p ON p.driver_id = d.id
           WHERE d.tenant_id = $1 ORDER BY d.name, d.id""",
            tenant,
        )
    )
