"""The enrichment tracker's in-memory per-driver state (ingest/movement.py), without services."""

from __future__ import annotations

import dataclasses

from geo.eta import Pace
from geo.movement import step_motion
from geo.route_progress import SpeedEstimate
from ingest.movement import Runtime, _copy


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
