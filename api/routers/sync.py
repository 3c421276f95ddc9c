"""CDC sync routes (seed-compatible): status, lag (admin), and the cached business data.

Every read is scoped to the caller's tenant (from the token): another tenant's id is a 404,
exactly like an unknown one. Customers by id go through the read-through cache
(memory -> Redis -> PostgreSQL -> MariaDB); lists read the PostgreSQL cache tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request

from analytics.customers import CustomerCache
from api.dependencies import AdminDep, ConnDep, OperatorDep, StateDep
from api.errors import NotFound, ServiceUnavailable
from ingest.cdc_lag import lag_snapshot, sync_rows

MAX_ID = 2**63 - 1


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the customer cache (runs inside the app's lifespan: its state exists)."""
    state = app.state.fleetpulse
    cache = CustomerCache(state.settings, state.pool, state.redis)
    await cache.start()
    app.state.customer_cache = cache
    try:
        yield
    finally:
        await cache.close()


router = APIRouter(prefix="/api/sync", tags=["sync"], lifespan=lifespan)


def customer_cache(request: Request) -> CustomerCache:
    cache: CustomerCache | None = getattr(request.app.state, "customer_cache", None)
    if cache is None:
        raise ServiceUnavailable("the customer cache is not started")
    return cache


IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="the source row's id")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("/status")
async def status(conn: ConnDep, user: OperatorDep, request: Request) -> dict[str, Any]:
    """Sync state per table (events, errors, last source time, last applied time)."""
    rows = await sync_rows(conn)
    for row in rows.values():
        row.pop("_applied", None)
    return {"tables": list(rows.values()), "customerCache": customer_cache(request).stats.as_dict()}


@router.get("/lag")
async def lag(conn: ConnDep, user: OperatorDep, state: StateDep) -> dict[str, Any]:
    """The CdcLagSnapshot: per-table lag, Kafka consumer lag per partition, totals (admin)."""
    return await lag_snapshot(conn, state.settings)


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds")
    return v.isoformat() if isinstance(v, date) else v


_ACCOUNT = """SELECT id, tenant_id AS "tenantId", name, account_type AS "accountType", settings,
                     created_at AS "createdAt", updated_at AS "updatedAt",
                     synced_at AS "syncedAt"
              FROM accounts_cache"""
_PRODUCT = """SELECT id, tenant_id AS "tenantId", sku, name, description,
                     unit_price::text AS "unitPrice", weight_kg::text AS "weightKg", active,
                     created_at AS "createdAt", updated_at AS "updatedAt",
                     synced_at AS "syncedAt"
              FROM products_cache"""
_ORDER = """SELECT id, tenant_id AS "tenantId", customer_id AS "customerId",
                   order_number AS "orderNumber", status, total::text AS total, currency,
                   scheduled_date AS "scheduledDate", items, notes,
                   created_at AS "createdAt", updated_at AS "updatedAt",
                   synced_at AS "syncedAt"
            FROM orders_cache"""
_CUSTOMER = """SELECT id, tenant_id AS "tenantId", account_id AS "accountId", name, address,
                      lat, lng, geofence_radius_m AS "geofenceRadius",
                      customer_type AS "customerType", contact_name AS "contactName",
                      contact_phone AS "contactPhone", contact_email AS "contactEmail",
                      active, updated_at AS "updatedAt", synced_at AS "syncedAt"
               FROM customers"""


async def _list(
    conn: ConnDep, sql: str, tenant: str, limit: int, offset: int, extra: str = ""
) -> dict[str, Any]:
    rows = await conn.fetch(
        f"{sql} WHERE tenant_id = $1 {extra} ORDER BY id LIMIT $2 OFFSET $3",
        tenant,
        limit,
        offset,
    )
    items = [{k: _iso(v) for k, v in r.items()} for r in rows]
    return {"items": items, "count": len(items), "limit": limit, "offset": offset}


async def _one(conn: ConnDep, sql: str, tenant: str, id_: int, what: str) -> dict[str, Any]:
    row = await conn.fetchrow(f"{sql} WHERE id = $1 AND tenant_id = $2", id_, tenant)
    if row is None:
        raise NotFound(f"{what} {id_} not found")
    return {k: _iso(v) for k, v in row.items()}


@router.get("/accounts")
async def accounts(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached accounts of the caller's tenant."""
    return await _list(conn, _ACCOUNT, user.tenant_id, limit, offset)


@router.get("/accounts/{account_id}")
async def account(conn: ConnDep, user: AdminDep, account_id: IdPath) -> dict[str, Any]:
    """One cached account of the caller's tenant."""
    return await _one(conn, _ACCOUNT, user.tenant_id, account_id, "account")


@router.get("/customers")
async def customers(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached customers of the caller's tenant (the PostgreSQL cache, deleted ones left out)."""
    return await _list(conn, _CUSTOMER, user.tenant_id, limit, offset, "AND deleted_at IS NULL")


@router.get("/customers/{customer_id}")
async def customer(user: AdminDep, customer_id: IdPath, request: Request) -> dict[str, Any]:
    """One customer through the read-through cache (memory, Redis, PostgreSQL, MariaDB)."""
    found = await customer_cache(request).get(user.tenant_id, customer_id)
    if found is None:
        raise NotFound(f"customer {customer_id} not found")
    return found


@router.get("/products")
async def products(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached products of the caller's tenant."""
    return await _list(conn, _PRODUCT, user.tenant_id, limit, offset)


@router.get("/products/{product_id}")
async def product(conn: ConnDep, user: AdminDep, product_id: IdPath) -> dict[str, Any]:
    """One cached product of the caller's tenant."""
    return await _one(conn, _PRODUCT, user.tenant_id, product_id, "product")


@router.get("/orders")
async def orders(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached orders of the caller's tenant."""
    return await _list(conn, _ORDER, user.tenant_id, limit, offset)


@router.get("/orders/{order_id}")
async def order(conn: ConnDep, user: AdminDep, order_id: IdPath) -> dict[str, Any]:
    """One cached order of the caller's tenant."""
    return await _one(conn, _ORDER, user.tenant_id, order_id, "order")
