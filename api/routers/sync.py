"""CDC sync routes (seed-compatible): status, lag (admin), and the cached business data.

Every read is scoped to the caller's tenant (from the token): another tenant's id is a 404,
exactly like an unknown one. Customers by id go through the read-through cache
(memory -> Redis -> PostgreSQL -> MariaDB); lists read the PostgreSQL cache tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request

from api.dependencies import AdminDep, ConnDep, OperatorDep, StateDep
from api.errors import NotFound, ServiceUnavailable
from ingest.cdc.customers import CustomerCache
from ingest.cdc.lag import lag_snapshot, sync_rows
from ingest.cdc.tables import ACCOUNTS, CUSTOMERS, ORDERS, PRODUCTS, fetch_row, list_rows

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


async def _list(
    conn: ConnDep, table_sql: str, tenant: str, limit: int, offset: int, extra: str = ""
) -> dict[str, Any]:
    items = await list_rows(conn, table_sql, tenant, limit=limit, offset=offset, extra=extra)
    return {"items": items, "count": len(items), "limit": limit, "offset": offset}


async def _one(conn: ConnDep, table_sql: str, tenant: str, id_: int, what: str) -> dict[str, Any]:
    row = await fetch_row(conn, table_sql, tenant, id_)
    if row is None:
        raise NotFound(f"{what} {id_} not found")
    return row


@router.get("/accounts")
async def accounts(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached accounts of the caller's tenant."""
    return await _list(conn, ACCOUNTS, user.tenant_id, limit, offset)


@router.get("/accounts/{account_id}")
async def account(conn: ConnDep, user: AdminDep, account_id: IdPath) -> dict[str, Any]:
    """One cached account of the caller's tenant."""
    return await _one(conn, ACCOUNTS, user.tenant_id, account_id, "account")


@router.get("/customers")
async def customers(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached customers of the caller's tenant (the PostgreSQL cache, deleted ones left out)."""
    return await _list(conn, CUSTOMERS, user.tenant_id, limit, offset, "AND deleted_at IS NULL")


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
    return await _list(conn, PRODUCTS, user.tenant_id, limit, offset)


@router.get("/products/{product_id}")
async def product(conn: ConnDep, user: AdminDep, product_id: IdPath) -> dict[str, Any]:
    """One cached product of the caller's tenant."""
    return await _one(conn, PRODUCTS, user.tenant_id, product_id, "product")


@router.get("/orders")
async def orders(
    conn: ConnDep, user: AdminDep, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Cached orders of the caller's tenant."""
    return await _list(conn, ORDERS, user.tenant_id, limit, offset)


@router.get("/orders/{order_id}")
async def order(conn: ConnDep, user: AdminDep, order_id: IdPath) -> dict[str, Any]:
    """One cached order of the caller's tenant."""
    return await _one(conn, ORDERS, user.tenant_id, order_id, "order")
