"""Fleet exports: the tenant's raw fixes over a window (and a bbox) as GeoParquet."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from analytics import geoparquet
from api.dependencies import ConnDep, StateDep, UserDep, fleet_reader
from api.exports import parquet_response
from api.params import query_bbox, time_window

router = APIRouter(prefix="/api", tags=["analytics"])


@router.get("/exports/fleet", summary="Export the fleet's fixes in a window: GeoParquet")
async def fleet_export(
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    from_: Annotated[str, Query(alias="from")],
    to: Annotated[str, Query()],
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    format: Annotated[Literal["geoparquet"], Query()] = "geoparquet",
) -> Response:
    """Every raw fix of the caller's tenant in [from, to) (at most
    ``FLEETPULSE_ANALYTICS__EXPORT_MAX_WINDOW_DAYS``, 7), optionally inside ``bbox``, as
    one GeoParquet file (a row per fix, WKB points, EPSG:4326) ordered by time then driver.
    More than ``EXPORT_MAX_ROWS`` matching fixes is a 400: narrow the window or the box."""
    tenant = fleet_reader(user)
    limits = state.settings.analytics
    start, end = time_window(from_, to, timedelta(days=limits.export_max_window_days))
    box = None if bbox is None else query_bbox(bbox)
    body, rows = await geoparquet.export_fixes(
        conn, tenant=tenant, start=start, end=end, bbox=box, max_rows=limits.export_max_rows
    )
    stamp = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    return parquet_response(body, f"fleet-{tenant}-{stamp}", rows)
