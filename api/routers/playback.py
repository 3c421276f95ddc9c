"""Playback: one driver's track in a window, and the whole fleet's inside a box."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from analytics import queries
from api.dependencies import ConnDep, StateDep, UserDep, driver_in_scope, fleet_reader
from api.params import query_bbox, time_window

router = APIRouter(prefix="/api", tags=["playback"])

FLEET_MAX_WINDOW = timedelta(hours=24)


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
    cfg = state.settings.analytics
    start, end = time_window(from_, to, timedelta(days=cfg.max_window_days))
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
    start, end = time_window(from_, to, FLEET_MAX_WINDOW)
    box = query_bbox(bbox)
    return await queries.fleet_playback(
        conn, tenant=tenant, start=start, end=end, bbox=box, max_points_per_driver=max_points
    )
