"""Customers of the tenant (a cache of the source of truth, kept fresh by CDC): read only."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Query, Request, Response

from api.dependencies import ConnDep, StaffDep
from api.errors import NotFound
from api.pagination import CursorQuery, LimitQuery, decode_cursor, paginate, paginated_responses

router = APIRouter(prefix="/api/customers", tags=["customers"])

CUSTOMER_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "tenantId": "tenant-1",
    "accountId": None,
    "name": "Downtown Warehouse",
    "address": "1 Centre St, New York",
    "lat": 40.7128,
    "lng": -74.006,
    "geofenceRadiusM": 150,
    "customerType": "warehouse",
    "active": True,
    "geofenceId": 1,
    "updatedAt": "2026-02-06T17:00:00+00:00",
}

_SELECT = """SELECT c.id, c.tenant_id, c.account_id, c.name, c.address, c.lat, c.lng,
                    c.geofence_radius_m, c.customer_type, c.active, c.updated_at,
                    g.id AS geofence_id
             FROM customers c
             LEFT JOIN geofences g ON g.customer_id = c.id AND g.tenant_id = c.tenant_id"""


def customer_json(r: asyncpg.Record) -> dict[str, Any]:
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


@router.get(
    "",
    summary="List the tenant's customers (cursor-paginated by id)",
    responses=paginated_responses([CUSTOMER_EXAMPLE]),
)
async def list_customers(
    user: StaffDep,
    conn: ConnDep,
    request: Request,
    response: Response,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones")] = None,
) -> list[dict[str, Any]]:
    after = decode_cursor(cursor, [int])
    rows = await conn.fetch(
        f"""{_SELECT} WHERE c.tenant_id = $1 AND ($2::bigint IS NULL OR c.id > $2)
              AND ($3::boolean IS NULL OR c.active = $3)
            ORDER BY c.id LIMIT $4""",
        user.tenant_id,
        after[0] if after else None,
        active,
        limit + 1,
    )
    page = paginate(rows, limit, lambda r: [r["id"]], request, response)
    return [customer_json(r) for r in page]


@router.get(
    "/{customer_id}",
    summary="A customer of the tenant",
    responses={200: {"content": {"application/json": {"example": CUSTOMER_EXAMPLE}}}},
)
async def get_customer(customer_id: str, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    if not customer_id.isdigit() or len(customer_id) > 18:
        raise NotFound("customer not found")
    row = await conn.fetchrow(
        f"{_SELECT} WHERE c.id = $1 AND c.tenant_id = $2", int(customer_id), user.tenant_id
    )
    if row is None:
        raise NotFound("customer not found")
    return customer_json(row)
