"""Driver read routes of the walking skeleton: live 'near a point' and position history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Query

from api.dependencies import ConnDep, StateDep, TenantDep
from api.errors import BadRequest, NotFound
from ingest.validation import iso_ms

router = APIRouter(prefix="/api/drivers", tags=["drivers"])

MAX_HISTORY_WINDOW = timedelta(days=31)


@router.get("/near")
async def drivers_near(
    state: StateDep,
    tenant: TenantDep,
    lat: Annotated[float, Query(ge=-85.05112878, le=85.05112878)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    radius_m: Annotated[float, Query(gt=0, le=100_000)] = 1_000,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 50,
) -> dict[str, Any]:
    """Drivers of the caller's tenant whose latest position is within radius_m, nearest first."""
    raw_hits = await state.redis.geosearch(
        state.keys.geo(tenant),
        longitude=lon,
        latitude=lat,
        radius=radius_m,
        unit="m",
        sort="ASC",
        count=limit,
        withdist=True,
    )
    hits = cast(list[tuple[bytes, float]], raw_hits)
    ids = [h[0].decode() for h in hits]
    latest = await state.redis.mget([state.keys.latest(i) for i in ids]) if ids else []
    drivers = []
    for (member, dist), raw in zip(hits, latest, strict=True):
        if raw is None:
            continue
        drivers.append(
            {
                "driverId": member.decode(),
                "distanceM": round(float(dist), 1),
                "position": orjson.loads(raw),
            }
        )
    return {"center": {"lat": lat, "lon": lon}, "radiusM": radius_m, "drivers": drivers}


def _parse_time(name: str, value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an ISO-8601 time, got {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


@router.get("/{driver_id}/history")
async def driver_history(
    driver_id: str,
    conn: ConnDep,
    tenant: TenantDep,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """A driver's stored positions between from and to (default: the last 24 hours)."""
    try:
        uuid.UUID(driver_id)
    except ValueError as exc:
        raise NotFound("driver not found") from exc
    now = datetime.now(UTC)
    end = _parse_time("to", to, now)
    start = _parse_time("from", from_, end - timedelta(hours=24))
    if start >= end:
        raise BadRequest("from must be before to")
    if end - start > MAX_HISTORY_WINDOW:
        raise BadRequest("the window may span at most 31 days")
    exists = await conn.fetchval(
        "SELECT 1 FROM drivers WHERE id = $1 AND tenant_id = $2", uuid.UUID(driver_id), tenant
    )
    if not exists:  # another tenant's driver answers 404 too: no existence leak
        raise NotFound("driver not found")
    rows = await conn.fetch(
        """SELECT fix_time, received_at, lat, lon, speed_kmh, course, altitude, accuracy, valid,
                  h3_cell, protocol
           FROM positions
           WHERE driver_id = $1 AND tenant_id = $2 AND fix_time >= $3 AND fix_time < $4
           ORDER BY fix_time LIMIT $5""",
        uuid.UUID(driver_id),
        tenant,
        start,
        end,
        limit,
    )
    return {
        "driverId": driver_id,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "count": len(rows),
        "positions": [
            {
                "time": iso_ms(int(r["fix_time"].timestamp() * 1000)),
                "lat": r["lat"],
                "lon": r["lon"],
                "speed": r["speed_kmh"],
                "course": r["course"],
                "altitude": r["altitude"],
                "accuracy": r["accuracy"],
                "valid": r["valid"],
                "h3Cell": format(r["h3_cell"], "x"),
                "protocol": r["protocol"],
            }
            for r in rows
        ],
    }
