"""Apply one change event to the PostgreSQL cache, only if it is newer than what is there.

Every cached row keeps the source position of the change it holds (``source_position``,
bigint[] = {binlog file seq, pos, row}); a delete leaves a tombstone with its position. An
event at or before the stored position is a replay and changes nothing, so the consumer can
be killed anywhere and restarted (at-least-once delivery, exactly-once effect).
"""

from __future__ import annotations

from typing import Any

from infrastructure.postgres import Conn
from ingest.cdc.events import ChangeEvent, Position

# Columns of the plain cache tables, in the order of their INSERT parameters.
_PLAIN: dict[str, tuple[str, tuple[str, ...]]] = {
    "accounts": (
        "accounts_cache",
        ("id", "tenant_id", "name", "account_type", "settings", "created_at", "updated_at"),
    ),
    "products": (
        "products_cache",
        (
            "id",
            "tenant_id",
            "sku",
            "name",
            "description",
            "unit_price",
            "weight_kg",
            "active",
            "created_at",
            "updated_at",
        ),
    ),
    "orders": (
        "orders_cache",
        (
            "id",
            "tenant_id",
            "customer_id",
            "order_number",
            "status",
            "total",
            "currency",
            "scheduled_date",
            "items",
            "notes",
            "created_at",
            "updated_at",
        ),
    ),
}


def _upsert_sql(table: str, columns: tuple[str, ...]) -> str:
    n = len(columns)
    values = ", ".join(f"${i}" for i in range(1, n + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])
    return f"""
        INSERT INTO {table} ({", ".join(columns)}, source_position, source_ts, synced_at)
        VALUES ({values}, ${n + 1}, ${n + 2}, clock_timestamp())
        ON CONFLICT (id) DO UPDATE SET {updates},
            source_position = EXCLUDED.source_position,
            source_ts = EXCLUDED.source_ts, synced_at = EXCLUDED.synced_at
        WHERE {table}.source_position < EXCLUDED.source_position"""


_UPSERT = {t: _upsert_sql(table, cols) for t, (table, cols) in _PLAIN.items()}

_CUSTOMER_UPSERT = """
    INSERT INTO customers (id, tenant_id, account_id, name, address, lat, lng,
                           geofence_radius_m, customer_type, contact_name, contact_phone,
                           contact_email, active, updated_at, source_position, source_ts,
                           synced_at, deleted_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, coalesce($14, now()), $15,
            $16, clock_timestamp(), NULL)
    ON CONFLICT (id) DO UPDATE SET
        tenant_id = EXCLUDED.tenant_id, account_id = EXCLUDED.account_id,
        name = EXCLUDED.name, address = EXCLUDED.address, lat = EXCLUDED.lat,
        lng = EXCLUDED.lng, geofence_radius_m = EXCLUDED.geofence_radius_m,
        customer_type = EXCLUDED.customer_type, contact_name = EXCLUDED.contact_name,
        contact_phone = EXCLUDED.contact_phone, contact_email = EXCLUDED.contact_email,
        active = EXCLUDED.active, updated_at = EXCLUDED.updated_at,
        source_position = EXCLUDED.source_position, source_ts = EXCLUDED.source_ts,
        synced_at = EXCLUDED.synced_at, deleted_at = NULL
    WHERE customers.source_position IS NULL
       OR customers.source_position < EXCLUDED.source_position"""

# The customer's circle as a polygon buffered on the spheroid (metres), as the seed does.
_GEOFENCE_UPSERT = """
    INSERT INTO geofences (tenant_id, customer_id, name, kind, center, radius_m, geom)
    SELECT c.tenant_id, c.id, c.name, 'circle',
           ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326), c.geofence_radius_m,
           ST_Buffer(ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326)::geography,
                     c.geofence_radius_m, 'quad_segs=16')::geometry
    FROM customers c WHERE c.id = $1
    ON CONFLICT (customer_id) DO UPDATE SET
        tenant_id = EXCLUDED.tenant_id, name = EXCLUDED.name, center = EXCLUDED.center,
        radius_m = EXCLUDED.radius_m, geom = EXCLUDED.geom, updated_at = now()"""


async def ensure_tenant(conn: Conn, tenant_id: str, name: str | None = None) -> None:
    """Create the tenant row a cached row points to, if missing (its name: the id)."""
    await conn.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        tenant_id,
        name or tenant_id,
    )


async def _tombstoned(conn: Conn, table: str, source_id: int, position: Position) -> bool:
    """Return whether a delete at or after ``position`` is recorded for this row."""
    found = await conn.fetchval(
        """SELECT 1 FROM cdc_tombstones
           WHERE table_name = $1 AND source_id = $2 AND source_position >= $3""",
        table,
        source_id,
        list(position),
    )
    return found is not None


async def _tombstone(conn: Conn, ev: ChangeEvent) -> None:
    await conn.execute(
        """INSERT INTO cdc_tombstones (table_name, source_id, source_position)
           VALUES ($1, $2, $3)
           ON CONFLICT (table_name, source_id) DO UPDATE
               SET source_position = EXCLUDED.source_position, deleted_at = now()
           WHERE cdc_tombstones.source_position < EXCLUDED.source_position""",
        ev.table,
        ev.id,
        list(ev.position),
    )


async def _untombstone(conn: Conn, ev: ChangeEvent) -> None:
    await conn.execute(
        "DELETE FROM cdc_tombstones WHERE table_name = $1 AND source_id = $2", ev.table, ev.id
    )


async def apply_event(conn: Conn, ev: ChangeEvent) -> bool:
    """Apply one event inside the caller's transaction; return False when it was stale."""
    if await _tombstoned(conn, ev.table, ev.id, ev.position):
        return False
    if ev.table == "customers":
        return await _apply_customer(conn, ev)
    if ev.table == "users":
        return await _apply_user(conn, ev)
    return await _apply_plain(conn, ev)


async def _apply_plain(conn: Conn, ev: ChangeEvent) -> bool:
    table, columns = _PLAIN[ev.table]
    if ev.row is None:
        newer = await conn.fetchval(
            f"SELECT 1 FROM {table} WHERE id = $1 AND source_position >= $2",
            ev.id,
            list(ev.position),
        )
        if newer:
            return False
        await conn.execute(f"DELETE FROM {table} WHERE id = $1", ev.id)
        await _tombstone(conn, ev)
        return True
    row = ev.row
    name = row["name"] if ev.table == "accounts" else None
    await ensure_tenant(conn, row["tenant_id"], name)
    status = await conn.execute(
        _UPSERT[ev.table], *(row[c] for c in columns), list(ev.position), ev.source_ts
    )
    if status.endswith(" 0"):
        return False
    await _untombstone(conn, ev)
    return True


async def _apply_customer(conn: Conn, ev: ChangeEvent) -> bool:
    if ev.row is None:
        return await _delete_customer(conn, ev)
    r = ev.row
    await ensure_tenant(conn, r["tenant_id"])
    status = await conn.execute(
        _CUSTOMER_UPSERT,
        r["id"],
        r["tenant_id"],
        r["account_id"],
        r["name"],
        r["address"],
        r["lat"],
        r["lng"],
        r["geofence_radius"],
        r["customer_type"],
        r["contact_name"],
        r["contact_phone"],
        r["contact_email"],
        r["active"],
        r["updated_at"],
        list(ev.position),
        ev.source_ts,
    )
    if status.endswith(" 0"):
        return False
    await _untombstone(conn, ev)
    if r["active"]:
        await conn.execute(_GEOFENCE_UPSERT, ev.id)
    else:
        await _drop_geofence(conn, ev.id)
    return True


async def _drop_geofence(conn: Conn, customer_id: int) -> None:
    """Remove a customer's geofence; keep it if planned visits still point at it."""
    try:
        async with conn.transaction():
            await conn.execute("DELETE FROM geofences WHERE customer_id = $1", customer_id)
    except Exception as exc:  # noqa: BLE001 - only a foreign-key violation is expected
        if getattr(exc, "sqlstate", None) != "23503":
            raise


async def _delete_customer(conn: Conn, ev: ChangeEvent) -> bool:
    pos = list(ev.position)
    current = await conn.fetchrow(
        "SELECT source_position FROM customers WHERE id = $1 FOR UPDATE", ev.id
    )
    if current is not None and current["source_position"] is not None:
        if list(current["source_position"]) >= pos:
            return False
    if current is not None:
        try:
            async with conn.transaction():
                await conn.execute("DELETE FROM customers WHERE id = $1", ev.id)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "sqlstate", None) != "23503":
                raise
            # Planned visits still reference it: keep the row, marked deleted and inactive.
            await conn.execute(
                """UPDATE customers SET deleted_at = now(), active = false,
                       source_position = $2, source_ts = $3, synced_at = clock_timestamp()
                   WHERE id = $1""",
                ev.id,
                pos,
                ev.source_ts,
            )
            await _drop_geofence(conn, ev.id)
    await _tombstone(conn, ev)
    return True


async def _apply_user(conn: Conn, ev: ChangeEvent) -> bool:
    pos = list(ev.position)
    current = await conn.fetchrow(
        "SELECT id, source_position FROM users WHERE source_id = $1 FOR UPDATE", ev.id
    )
    if current is None and ev.row is not None:
        # The local seed inserts the demo admins without a source id: adopt them.
        current = await conn.fetchrow(
            """SELECT id, source_position FROM users
               WHERE tenant_id = $1 AND lower(email) = lower($2) AND source_id IS NULL
               FOR UPDATE""",
            ev.row["tenant_id"],
            ev.row["email"],
        )
    if current is not None and current["source_position"] is not None:
        if list(current["source_position"]) >= pos:
            return False
    if ev.row is None:
        if current is not None:
            await conn.execute(
                """UPDATE users SET active = false, source_position = $2, source_ts = $3,
                       synced_at = clock_timestamp(), updated_at = now() WHERE id = $1""",
                current["id"],
                pos,
                ev.source_ts,
            )
            await _revoke_refresh_tokens(conn, current["id"])
        await _tombstone(conn, ev)
        return True
    r = ev.row
    await ensure_tenant(conn, r["tenant_id"])
    driver_id = await _existing_driver(conn, r["driver_id"])
    values: list[Any] = [
        ev.id,
        r["tenant_id"],
        r["email"],
        r["password_hash"],
        r["name"],
        r["role"],
        driver_id,
        r["active"],
        pos,
        ev.source_ts,
    ]
    if current is None:
        user_id = await conn.fetchval(
            """INSERT INTO users (source_id, tenant_id, email, password_hash, name, role,
                                  driver_id, active, source_position, source_ts, synced_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())
               RETURNING id""",
            *values,
        )
    else:
        user_id = current["id"]
        await conn.execute(
            """UPDATE users SET source_id = $1, tenant_id = $2, email = $3,
                   password_hash = $4, name = $5, role = $6, driver_id = $7, active = $8,
                   source_position = $9, source_ts = $10, synced_at = clock_timestamp(),
                   updated_at = now()
               WHERE id = $11""",
            *values,
            user_id,
        )
    await _untombstone(conn, ev)
    if not r["active"]:
        await _revoke_refresh_tokens(conn, user_id)
    return True


async def _existing_driver(conn: Conn, driver_id: str | None) -> str | None:
    """Return the driver id if that driver exists here (users.driver_id is a foreign key)."""
    if driver_id is None:
        return None
    found = await conn.fetchval("SELECT id::text FROM drivers WHERE id = $1::uuid", driver_id)
    return str(found) if found is not None else None


async def _revoke_refresh_tokens(conn: Conn, user_id: Any) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
