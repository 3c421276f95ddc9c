"""A plan reload reuses the route line built from the same geometry and stops."""

from __future__ import annotations

from typing import Any

import orjson

from ingest.plans import _plan_from_row

PATH = [(24.940, 60.170), (24.945, 60.170), (24.945, 60.173)]


def row(path: list[tuple[float, float]], stops: list[tuple[float, float]], status: str) -> Any:
    visits = [
        {"id": f"00000000-0000-0000-0000-00000000000{i}", "seq": i + 1, "status": status,
         "customer_id": i + 1, "customer_name": f"c{i}", "geofence_id": None,
         "lon": lon, "lat": lat, "reached_ms": None}
        for i, (lon, lat) in enumerate(stops)
    ]  # fmt: skip
    geom = orjson.dumps({"type": "LineString", "coordinates": path}).decode()
    return {"driver_id": "d", "route_id": "r", "route_status": "in_progress",
            "visits": visits, "geom": geom}  # fmt: skip


def test_the_same_geometry_and_stops_share_one_line_and_a_change_builds_a_new_one() -> None:
    lines: dict[Any, Any] = {}
    stops = [(24.945, 60.170), (24.945, 60.173)]
    first = _plan_from_row(row(PATH, stops, "pending"), lines)
    # reloaded after the TTL, or after a visit's status changed: same line object
    again = _plan_from_row(row(PATH, stops, "arrived"), lines)
    assert first.line is not None and again.line is first.line
    assert again.stops[0].status == "arrived"
    # a new geometry, or moved stops, get their own line, measured on the new path
    longer = [*PATH, (24.950, 60.173)]
    rerouted = _plan_from_row(row(longer, stops, "pending"), lines)
    moved = _plan_from_row(row(PATH, [(24.945, 60.171), (24.945, 60.173)], "pending"), lines)
    assert rerouted.line is not None and moved.line is not None
    assert rerouted.line is not first.line and moved.line is not first.line
    assert rerouted.line.cum[-1] > first.line.cum[-1] + 200
    assert moved.line.stop_along_m[0] > first.line.stop_along_m[0] + 50
