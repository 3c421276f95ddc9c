"""Playback: one driver's track in a window, and the whole fleet's inside a box."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from analytics import queries
from analytics.errors import InvalidQuery
from api.dependencies import ConnDep, StateDep, UserDep
from api.errors import BadRequest, Forbidden, NotFound
from api.security import Principal
from infrastructure.postgres import Conn

router = APIRouter(prefix="/api", tags=["playback"])

FLEET_MAX_WINDOW = timedelta(hours=24)


def parse_time(name: str, value: str) -> datetime:
    """Parse an ISO-8601 time (UTC when it has no offset) or raise BadRequest."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an ISO-8601 time, got {value!r}") from exc
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def parse_date(name: str, value: str) -> date:
    """Parse a YYYY-MM-DD date or raise BadRequest."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


def parse_bbox(value: str | None) -> queries.BBox | None:
    """Parse 'minLon,minLat,maxLon,maxLat' or raise BadRequest."""
    if value is None:
        return None
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError as exc:
        raise BadRequest("bbox must be four numbers: minLon,minLat,maxLon,maxLat") from exc
    if len(parts) != 4 or any(p != p for p in parts):
        raise BadRequest("bbox must be four numbers: minLon,minLat,maxLon,maxLat")
    bbox = (parts[0], parts[1], parts[2], parts[3])
    try:
        queries.check_bbox(bbox)
    except InvalidQuery as exc:
        raise BadRequest(str(exc)) from exc
    return bbox


def check_window(start: datetime, end: datetime, max_window: timedelta) -> None:
    """Raise BadRequest unless from < to and the window is short enough."""
    try:
        queries.check_window(start, end, max_window)
    except InvalidQuery as exc:
        raise BadRequest(str(exc)) from exc


async def driver_in_scope(conn: Conn, user: Principal, driver_id: str) -> uuid.UUID:
    """Return the driver's id when the caller may read it; 404 otherwise (also for another
    tenant's driver, and for a driver-role caller asking about someone else)."""
    try:
        did = uuid.UUID(driver_id)
    except ValueError as exc:
        raise NotFound("driver not found") from exc
    if await queries.driver_tenant(conn, did) != user.tenant_id:
        raise NotFound("driver not found")
    if user.role == "driver" and str(user.driver_id) != str(did):
        raise NotFound("driver not found")
    return did


def fleet_reader(user: Principal) -> str:
    """Return the caller's tenant when it may read fleet-wide analytics (not drivers)."""
    if user.role == "driver":
        raise Forbidden("fleet analytics need the admin or dispatcher role")
    return user.tenant_id


@router.get("/drivers/{driver_id}/playback", summary="A driver's track for replay (columnar)")
async def driver_playback(
    driver_id: str,
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    from_: Annotated[str, Query(alias="from")],
    to: Annotated[str, Query()],
    max_points: Annotated[int, Query(ge=2, le=20_000)] = 2_000,
) -> dict[str, Any]:
    """The driver's fixes in [from, to) as arrays t (epoch ms), lon, lat, speed (km/h),
    heading (degrees), downsampled to at most ``max_points`` with Douglas-Peucker (first and
    last fix exact); raw fixes for windows up to a day, the per-minute rollup beyond. Visit
    and geofence events of the window in ``events``."""
    start, end = parse_time("from", from_), parse_time("to", to)
    cfg = state.settings.analytics
    check_window(start, end, timedelta(days=cfg.max_window_days))
    did = await driver_in_scope(conn, user, driver_id)
    return await queries.playback(
        conn,
        driver_id=did,
        start=start,
        end=end,
        max_points=max_points,
        raw_max=timedelta(seconds=cfg.playback_raw_max_s),
    )


@router.get("/playback", summary="Every driver's track inside a box (fleet replay)")
async def fleet_playback(
    conn: ConnDep,
    user: UserDep,
    from_: Annotated[str, Query(alias="from")],
    to: Annotated[str, Query()],
    bbox: Annotated[str, Query(description="minLon,minLat,maxLon,maxLat")],
    max_points: Annotated[int, Query(ge=2, le=5_000)] = 500,
) -> dict[str, Any]:
    """Each of the tenant's drivers with fixes inside ``bbox`` in [from, to) (at most 24 h):
    their fixes inside the box, columnar, at most ``max_points`` per driver. Windows over
    two hours read the per-minute rollup."""
    tenant = fleet_reader(user)
    start, end = parse_time("from", from_), parse_time("to", to)
    check_window(start, end, FLEET_MAX_WINDOW)
    box = parse_bbox(bbox)
    assert box is not None
    return await queries.fleet_playback(
        conn, tenant=tenant, start=start, end=end, bbox=box, max_points_per_driver=max_points
    )
