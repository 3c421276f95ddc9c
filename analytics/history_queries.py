"""History reads across drivers and of one driver: positions in a window (and a bbox)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from infrastructure.postgres import Conn

_POSITIONS_IN_BBOX = """
SELECT driver_id, device_unique_id, fix_time, lat, lon, speed_kmh, course, altitude, accuracy,
       valid, h3_cell, route_id
FROM positions
WHERE tenant_id = $1 AND fix_time >= $2 AND fix_time < $3
  AND lon BETWEEN $4 AND $6 AND lat BETWEEN $5 AND $7
  AND ($8::timestamptz IS NULL OR (fix_time, driver_id) > ($8, $9::uuid))
ORDER BY fix_time, driver_id
LIMIT $10
"""


async def positions_in_bbox(
    conn: Conn,
    *,
    tenant_id: str,
    start: datetime,
    end: datetime,
    bbox: tuple[float, float, float, float],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Return the tenant's stored positions with start <= fix_time < end inside bbox
    (minLon, minLat, maxLon, maxLat; edges included), ordered by (fix_time, driver_id),
    starting after the key ``after``; at most ``limit`` rows.

    Examples
    --------
    >>> rows = await positions_in_bbox(conn, tenant_id="tenant-1", start=t0, end=t1,
    ...                                bbox=(-74.02, 40.70, -73.97, 40.75), after=None,
    ...                                limit=1000)  # doctest: +SKIP
    """
    args: list[Any] = [tenant_id, start, end, *bbox]
    args += [after[0], after[1]] if after else [None, None]
    return list(await conn.fetch(_POSITIONS_IN_BBOX, *args, limit))


_DRIVER_TRACK = """
SELECT fix_time, received_at, lat, lon, speed_kmh, course, altitude, accuracy, valid,
       h3_cell, protocol
FROM positions
WHERE driver_id = $1 AND tenant_id = $2 AND fix_time >= $3 AND fix_time < $4
ORDER BY fix_time LIMIT $5
"""


async def driver_positions(
    conn: Conn,
    *,
    tenant_id: str,
    driver_id: uuid.UUID,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[asyncpg.Record]:
    """Return one driver's stored positions with start <= fix_time < end in time order;
    at most ``limit`` rows.

    Examples
    --------
    >>> rows = await driver_positions(conn, tenant_id="tenant-1", driver_id=john,
    ...                               start=t0, end=t1, limit=10_000)  # doctest: +SKIP
    """
    return list(await conn.fetch(_DRIVER_TRACK, driver_id, tenant_id, start, end, limit))
