"""The enrichment tracker's in-memory per-driver state (ingest/movement.py), without services."""

from __future__ import annotations

import dataclasses

from geo.eta import Pace
from geo.movement import step_motion
from geo.route_progress import RouteLine, SpeedEstimate
from ingest.movement import Runtime, _copy, _next_open, _passed
from ingest.plans import LineKey, Plan, Stop, _plan_from_row


def test_a_runtime_copy_keeps_every_field_and_is_independent() -> None:
    # _copy lists the fields by hand (it runs per driver per batch): a new field must be added
    # there too, and this fails until it is
    values = {
        "last_fix_ms": 1_000,
        "last_lon": 24.9,
        "last_lat": 60.1,
        "speed": SpeedEstimate(50.0, 5.0),
        "route_id": "r-1",
        "progress_m": 12.5,
        "motion": step_motion(None, 1.0, 24.9, 60.1, 0.0)[0],
        "pace": Pace(120.0, 100.0),
        "stops_at_ms": 900,
        "stops_next": "visit-2",
    }
    assert {f.name for f in dataclasses.fields(Runtime)} == set(values)
    rt = Runtime(**values)
    copy = _copy(rt)
    assert copy == rt and copy is not rt
    copy.progress_m = 99.0
    assert rt.progress_m == 12.5
    assert copy.motion is not None and rt.motion is not None
    step_motion(copy.motion, 2.0, 24.91, 60.1, 30.0)  # moves the copy's state in place
    assert rt.motion.t == 1.0 and copy.motion.t == 2.0
    assert _copy(None) == Runtime()


def _plan(*statuses: str) -> tuple[Plan, dict[str, str]]:
    stops = [
        Stop(f"v{i}", i, status, 100 + i, f"Customer {i}", 10 + i, 24.9 + i / 100, 60.1)
        for i, status in enumerate(statuses, start=1)
    ]
    return Plan("d-1", "r-1", "in_progress", None, stops), {s.visit_id: s.status for s in stops}


def _next(*statuses: str, anchor: str | None = None) -> str | None:
    plan, stops = _plan(*statuses)
    nxt = _next_open(plan, stops, anchor)
    return None if nxt is None else nxt.visit_id


def test_the_next_stop_follows_the_plan_when_the_driver_does() -> None:
    assert _next("pending", "pending", "pending") == "v1"
    assert _next("departed", "pending", "pending", anchor="v1") == "v2"
    assert _next("completed", "skipped", "pending", anchor="v1") == "v3"  # a dispatcher's skip
    assert _next("departed", "arrived", "pending", anchor="v2") == "v2"  # being served
    assert _next("departed", "completed", "cancelled", anchor="v2") is None


def test_the_next_stop_is_after_the_stop_reached_last() -> None:
    # v2 passed by, v3 served out of order: v4 is next, v2 is behind the driver
    assert _next("departed", "pending", "departed", "pending", anchor="v3") == "v4"
    assert _next("departed", "pending", "arrived", "pending", anchor="v3") == "v3"
    assert _next("pending", "pending", "completed", "pending", anchor="v3") == "v4"
    assert _next("departed", "pending", "failed", "pending", anchor="v3") == "v4"
    plan, stops = _plan("departed", "pending", "departed", "pending")
    assert [s.visit_id for s in _passed(plan, stops, 3)] == ["v2"]
    # nothing left after it: back to the first stop passed by
    assert _next("departed", "pending", "departed", "completed", anchor="v4") == "v2"
    assert _next("pending", "departed", anchor="v2") == "v1"
    # reached last, not planned last: v4 served early (waiting there at the start), then v1
    # in the planned order: v2 is next, not v5
    assert _next("departed", "pending", "pending", "departed", "pending", anchor="v1") == "v2"


def test_the_plan_names_the_stop_reached_last_by_time() -> None:
    def row(*visits: tuple[str, str, int | None]) -> dict[str, object]:
        return {
            "driver_id": "d-1",
            "route_id": "r-1",
            "route_status": "in_progress",
            "geom": None,
            "visits": [
                {
                    "id": vid,
                    "seq": seq,
                    "status": status,
                    "customer_id": seq,
                    "customer_name": "c",
                    "geofence_id": None,
                    "lon": 24.9,
                    "lat": 60.1,
                    "reached_ms": reached,
                }
                for seq, (vid, status, reached) in enumerate(visits, start=1)
            ],
        }

    lines: dict[LineKey, RouteLine] = {}
    plan = _plan_from_row(
        row(("v1", "departed", 2_000), ("v2", "pending", None), ("v3", "departed", 1_000)),
        lines,
    )
    assert plan.anchor == "v1"
    # a dispatcher's skip stamps completed_at, but says nothing about where the driver is
    plan = _plan_from_row(row(("v1", "departed", 1_000), ("v2", "skipped", 5_000)), lines)
    assert plan.anchor == "v1"
    assert _plan_from_row(row(("v1", "pending", None)), lines).anchor is None
