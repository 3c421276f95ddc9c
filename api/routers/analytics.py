"""Analytics routes: heatmaps, daily statistics, trips and stops, driver-day exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from analytics import queries
from analytics.export import track_to_csv, track_to_geojson, track_to_gpx
from api.dependencies import ConnDep, StateDep, UserDep, driver_in_scope, fleet_reader
from api.errors import BadRequest
from api.exports import driver_day_geoparquet
from api.params import parse_date, query_bbox, time_window
from api.responses import GeoJSONResponse, OrjsonResponse
from geo.cells import cell_to_string, cells_to_features

router = APIRouter(prefix="/api", tags=["analytics"])


@router.get("/analytics/heatmap", summary="H3 cells with a metric over a window")
async def heatmap(
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    from_: Annotated[str, Query(alias="from")],
    to: Annotated[str, Query()],
    resolution: Annotated[int, Query(ge=0, le=9)] = 9,
    metric: Annotated[str, Query()] = "positions",
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    format: Annotated[Literal["json", "geojson"], Query()] = "json",
) -> Response:
    """The tenant's H3 cells at ``resolution`` (0..9) in the whole hours covering
    [from, to) with ``metric``: positions (fix count), dwell (seconds), speed (mean km/h) or
    drivers (distinct). JSON ``{"cells": [{"cell", "value"}]}`` or, with ``format=geojson``,
    a FeatureCollection of hexagons (application/geo+json)."""
    tenant = fleet_reader(user)
    queries.check_metric(metric)
    start, end = time_window(from_, to, timedelta(days=state.settings.analytics.max_window_days))
    box = None if bbox is None else query_bbox(bbox)
    cells = await queries.heatmap(
        conn,
        tenant=tenant,
        start=start,
        end=end,
        resolution=resolution,
        metric=metric,
        bbox=box,
    )
    meta = {"from": start, "to": end, "resolution": resolution, "metric": metric}
    if format == "geojson":
        features = cells_to_features(cells)
        return GeoJSONResponse({"type": "FeatureCollection", "features": features, **meta})
    return OrjsonResponse(
        {**meta, "cells": [{"cell": cell_to_string(c), "value": v} for c, v in cells]}
    )


@router.get("/analytics/drivers/daily", summary="Daily statistics of the tenant's drivers")
async def drivers_daily(
    conn: ConnDep, user: UserDep, date: Annotated[str, Query()]
) -> dict[str, Any]:
    """Per driver, for one UTC day: distance (jitter filtered), moving/idle/stopped seconds,
    mean/max speed, trips, stops, visits planned/completed, on-time share."""
    tenant = fleet_reader(user)
    day = parse_date("date", date)
    return {"date": day, "drivers": await queries.daily_stats(conn, tenant=tenant, day=day)}


@router.get("/drivers/{driver_id}/stats", summary="A driver's daily statistics over days")
async def driver_stats(
    driver_id: str,
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    from_: Annotated[str, Query(alias="from")],
    to: Annotated[str, Query()],
) -> dict[str, Any]:
    """One row per UTC day from ``from`` to ``to`` (dates, inclusive) plus totals."""
    first, last = parse_date("from", from_), parse_date("to", to)
    if first > last:
        raise BadRequest("from must not be after to")
    if (last - first).days + 1 > state.settings.analytics.max_window_days:
        raise BadRequest(f"at most {state.settings.analytics.max_window_days} days")
    did = await driver_in_scope(conn, user, driver_id)
    days = await queries.driver_stats(conn, driver_id=did, first=first, last=last)
    totals = {
        k: sum(d[k] for d in days)
        for k in ("positions", "distance_m", "moving_s", "idle_s", "stopped_s", "trips", "stops")
    }
    totals["visits_completed"] = sum(d["visits_completed"] for d in days)
    totals["max_speed_kmh"] = max(
        (d["max_speed_kmh"] for d in days if d["max_speed_kmh"] is not None), default=None
    )
    return {"driverId": str(did), "from": first, "to": last, "days": days, "totals": totals}


@router.get("/drivers/{driver_id}/trips", summary="A driver's trips and stops of a day")
async def driver_trips(
    driver_id: str, conn: ConnDep, user: UserDep, date: Annotated[str, Query()]
) -> dict[str, Any]:
    """Trips and stops of one UTC day, Traccar-comparable: a trip starts 200 m away from the
    stop, ends after 180 s within 200 m, and a data gap over 3600 s splits."""
    day = parse_date("date", date)
    did = await driver_in_scope(conn, user, driver_id)
    _, segments = await queries.trips(conn, driver_id=did, day=day)
    return {
        "driverId": str(did),
        "date": day,
        "trips": [queries.segment_to_json(s) for s in segments if s.kind == "trip"],
        "stops": [queries.segment_to_json(s) for s in segments if s.kind == "stop"],
    }


@router.get(
    "/drivers/{driver_id}/export", summary="Export a driver-day: GeoJSON, GPX, CSV, GeoParquet"
)
async def driver_export(
    driver_id: str,
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    date: Annotated[str, Query()],
    format: Annotated[Literal["geojson", "gpx", "csv", "geoparquet"], Query()] = "geojson",
) -> Response:
    """Every fix of one UTC day (raw, not downsampled) in the chosen format (GeoParquet:
    the fleet export's schema, a row per fix)."""
    day = parse_date("date", date)
    did = await driver_in_scope(conn, user, driver_id)
    if format == "geoparquet":
        return await driver_day_geoparquet(conn, user, did, day, state.settings)
    track, segments = await queries.trips(conn, driver_id=did, day=day)
    name = f"driver-{did}-{day}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
    if format == "gpx":
        return Response(
            track_to_gpx(track, name), media_type="application/gpx+xml", headers=disposition
        )
    if format == "csv":
        return Response(track_to_csv(track), media_type="text/csv", headers=disposition)
    body = track_to_geojson(track, segments, {"driverId": str(did), "date": str(day)})
    return GeoJSONResponse(body, headers=disposition)


@router.get(
    "/analytics/road-speeds",
    summary="Learned speeds by road segment (what the ETA knows)",
)
async def road_speeds(
    conn: ConnDep,
    state: StateDep,
    user: UserDep,
    network: Annotated[str | None, Query(max_length=64)] = None,
    hour_of_week: Annotated[
        int | None, Query(ge=0, le=167, description="UTC, Monday 00:00 = 0; all hours if absent")
    ] = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat")] = None,
    min_traversals: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The directed road segments the tenant's vehicles drove whole in the last
    ``FLEETPULSE_ETA__LEARN_WEEKS`` weeks (map-matched history, ``edge_speeds_1h``): a
    FeatureCollection of lines with the traversals, their space-mean speed (km/h), mean
    travel time and the road's free-flow speed, at one hour of the week or over all hours
    (docs/eta.md)."""
    tenant = fleet_reader(user)
    box = None if bbox is None else query_bbox(bbox)
    since = datetime.now(UTC) - timedelta(weeks=state.settings.eta.learn_weeks)
    features = await queries.road_speeds(
        conn,
        tenant=tenant,
        since=since,
        network=network,
        hour_of_week=hour_of_week,
        bbox=box,
        min_traversals=min_traversals,
    )
    return GeoJSONResponse(
        {
            "type": "FeatureCollection",
            "features": features,
            "since": since,
            "hourOfWeek": hour_of_week,
        }
    )
