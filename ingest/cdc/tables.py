"""The PostgreSQL cache tables CDC keeps, read in the seed's ``/api/sync`` shape.

One SELECT per table with the seed's camelCase names; ``list_rows`` and ``fetch_row`` scope
every read to a tenant, ``cached_customer`` is the customer cache's PostgreSQL level.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

from infrastructure.postgres import Conn

ACCOUNTS = """SELECT id, tenant_id AS "tenantId", name, account_type AS "accountType", settings,
                     created_at AS "createdAt", updated_at AS "updatedAt",
                     synced_at AS "syncedAt"
              FROM accounts_cache"""
PRODUCTS = """SELECT id, tenant_id AS "tenantId", sku, name, description,
                     unit_price::text AS "unitPrice", weight_kg::text AS "weightKg", active,
                     created_at AS "createdAt", updated_at AS "updatedAt",
                     synced_at AS "syncedAt"
              FROM products_cache"""
ORDERS = """SELECT id, tenant_id AS "tenantId", customer_id AS "customerId",
                   order_number AS "orderNumber", status, total::text AS total, currency,
                   scheduled_date AS "scheduledDate", items, notes,
                   created_at AS "createdAt", updated_at AS "updatedAt",
                   synced_at AS "syncedAt"
            FROM orders_cache"""
CUSTOMERS = """SELECT id, tenant_id AS "tenantId", account_id AS "accountId", name, address,
                      lat, lng, geofence_radius_m AS "geofenceRadius",
                      customer_type AS "customerType", contact_name AS "contactName",
                      contact_phone AS "contactPhone", contact_email AS "contactEmail",
                      active, updated_at AS "updatedAt", synced_at AS "syncedAt"
               FROM customers"""


def row_json(row: asyncpg.Record) -> dict[str, Any]:
    """Render a cache row: its columns as named, times ISO-8601 (milliseconds)."""
    return {k: _iso(v) for k, v in row.items()}


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat(timespec="milliseconds")
    return v.isoformat() if isinstance(v, date) else v


async def list_rows(
    conn: Conn, table_sql: str, tenant: str, *, limit: int, offset: int, extra: str = ""
) -> list[dict[str, Any]]:
    """The tenant's rows of one table (``ACCOUNTS``, ...) by id; ``extra`` narrows (AND ...)."""
    rows = await conn.fetch(
        f"{table_sql} WHERE tenant_id = $1 {extra} ORDER BY id LIMIT $2 OFFSET $3",
        tenant,
        limit,
        offset,
    )
    return [row_json(r) for r in rows]


async def fetch_row(conn: Conn, table_sql: str, tenant: str, id_: int) -> dict[str, Any] | None:
    """The tenant's row of one table by id, None when it has none."""
    row = await conn.fetchrow(f"{table_sql} WHERE id = $1 AND tenant_id = $2", id_, tenant)
    return None if row is None else row_json(row)


async def cached_customer(conn: Conn, customer_id: int) -> dict[str, Any] | None:
    """A customer of any tenant from the cache table (the caller checks the tenant), None
    when unknown or deleted."""
    row = await conn.fetchrow(f"{CUSTOMERS} WHERE id = $1 AND deleted_at IS NULL", customer_id)
    return None if row is None else row_json(row)
