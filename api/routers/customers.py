"""Customers of the tenant (a cache of the source of truth, kept fresh by CDC): read only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.dependencies import ConnDep, StaffDep
from api.pagination import PageDep, paginated_responses
from api.records import customers as records
from api.records.customers import customer_json

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


def active_filter(
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones")] = None,
) -> bool | None:
    """``?active=`` of the customer list (a dependency: after the page's parameters)."""
    return active


@router.get(
    "",
    summary="List the tenant's customers (cursor-paginated by id)",
    responses=paginated_responses([CUSTOMER_EXAMPLE]),
)
async def list_customers(
    user: StaffDep,
    conn: ConnDep,
    page: PageDep,
    active: Annotated[bool | None, Depends(active_filter)],
) -> list[dict[str, Any]]:
    after = page.after([int])
    rows = await records.list_customers(
        conn, user.tenant_id, after=after[0] if after else None, active=active, limit=page.fetch
    )
    return [customer_json(r) for r in page.of(rows, lambda r: [r["id"]])]


@router.get(
    "/{customer_id}",
    summary="A customer of the tenant",
    responses={200: {"content": {"application/json": {"example": CUSTOMER_EXAMPLE}}}},
)
async def get_customer(customer_id: str, user: StaffDep, conn: ConnDep) -> dict[str, Any]:
    return customer_json(await records.fetch_customer(conn, user.tenant_id, customer_id))
