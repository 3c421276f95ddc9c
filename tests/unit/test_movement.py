"""geo.movement: distances, trips and stops of scripted days, downsampling; no services."""

from __future__ import annotations

from datetime import UTC, datetime

import h3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.generate import Drive, Leg, Stop, script_day
from geo.movement import (
    haversine_m,
    segment_trips,
    simplify_indices,
    step_lengths_m,
    summarize_day,
)

START = datetime(2026, 3, 2, 8, tzinfo=UTC)
LON0, LAT0 = -74.0, 40.72

SCRIPT: list[Leg] = [
    Stop(1800),
    Drive(5_000, 36, pauses_s=(0, 0, 60, 45)),  # traffic lights are not stops
    Stop(1200),
    Drive(2_500, 30),
    Stop(600),
    Drive(3_000, 40, pauses_s=(0, 0, 90)),
    Stop(900),
]


def test_haversine_one_degree_of_latitude() -> None:
    assert float(haversine_m(0, 0, 0, 1)) == pytest.approx(111_195, rel=1e-4)
    assert float(haversine_m(10, 50, 10, 50)) == 0.0


def test_scripted_day_segments_match_the_script() -> None:
    track = script_day(SCRIPT, start=START, lon0=LON0, lat0=LAT0, interval_s=10, noise_m=8)
    segments = segment_trips(track.t, track.lon, track.lat, track.speed_kmh)
    assert [s.kind for s in segments] == [tr[0] for tr in track.truth]
    for seg, (kind, start, end, dist, lon, lat) in zip(segments, track.truth, strict=True):
        # A trip's end is detected at the first fix within 200 m of the stop: up to 200 m of
        # driving (<= 24 s at 30 km/h) plus one sampling interval early.
        assert seg.start_time == pytest.approx(start, abs=40), kind
        assert seg.end_time == pytest.approx(end, abs=40), kind
        if kind == "trip":
            # sampling every 10 s cuts the grid's corners: a few per cent short; noise adds a little
            assert dist * 0.94 < seg.distance_m < dist * 1.03
        else:
            assert float(haversine_m(seg.lon, seg.lat, lon, lat)) < 20


def test_day_summary_of_the_script() -> None:
    track = script_day(SCRIPT, start=START, lon0=LON0, lat0=LAT0, interval_s=10, noise_m=8)
    day = summarize_day(track.t, track.lon, track.lat, track.speed_kmh)
    assert day.trips == 3 and day.stops == 4
    assert 10_500 * 0.94 < day.distance_m < 10_500 * 1.03
    assert day.stopped_s == pytest.approx(1800 + 1200 + 600 + 900, abs=4 * 60)
    assert day.idle_s == pytest.approx(60 + 45 + 90, abs=60)
    total = track.t[-1] - track.t[0]
    assert day.moving_s + day.idle_s + day.stopped_s == pytest.approx(total)
    assert day.max_speed_kmh is not None and 38 < day.max_speed_kmh < 50


def test_jitter_while_parked_adds_no_distance() -> None:
    track = script_day([Stop(4 * 3600)], start=START, lon0=LON0, lat0=LAT0, noise_m=15)
    assert float(np.sum(step_lengths_m(track.lon, track.lat))) > 5_000  # raw sum is jitter
    day = summarize_day(track.t, track.lon, track.lat, track.speed_kmh)
    assert day.distance_m == 0 and day.trips == 0 and day.stops == 1


def test_a_long_gap_splits_a_trip() -> None:
    t = np.array([0, 30, 60, 90, 90 + 7200, 7320.0])
    lon = LON0 + np.array([0, 0.005, 0.01, 0.015, 0.03, 0.035])
    lat = np.full(6, LAT0)
    kinds = [s.kind for s in segment_trips(t, lon, lat)]
    assert kinds == ["trip", "stop", "trip"]


def test_h3_parent_bit_arithmetic_matches_h3() -> None:
    """The SQL function fleetpulse_h3_parent uses this arithmetic; check it against h3."""
    rng = np.random.default_rng(1)
    for lat, lon in zip(rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500), strict=True):
        cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 10))
        for res in (0, 5, 9, 10):
            bits = (cell & ~(15 << 52)) | (res << 52) | ((1 << (3 * (15 - res))) - 1)
            assert bits == h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), res))


coords = st.lists(
    st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)), min_size=2, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(points=coords, budget=st.integers(2, 50))
def test_simplify_keeps_ends_and_budget(points: list[tuple[float, float]], budget: int) -> None:
    lon = np.array([LON0 + p[0] for p in points])
    lat = np.array([LAT0 + p[1] for p in points])
    idx = simplify_indices(lon, lat, budget)
    assert len(idx) <= budget
    assert idx[0] == 0 and idx[-1] == len(points) - 1
    assert np.all(np.diff(idx) > 0)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.floats(0, 500), min_size=1, max_size=100),
    start=st.floats(-1000, 1000),
)
def test_trip_distance_never_exceeds_the_raw_path(steps: list[float], start: float) -> None:
    t = np.arange(len(steps) + 1) * 30.0
    lon = LON0 + np.cumsum([start / 1e5, *[s / 84_000 for s in steps]])
    lat = np.full(lon.size, LAT0)
    segments = segment_trips(t, lon, lat)
    raw = float(np.sum(step_lengths_m(lon, lat)))
    assert sum(s.distance_m for s in segments) <= raw + 1e-6
    # segments tile the day: each starts where the previous ended
    for a, b in zip(segments, segments[1:], strict=False):
        assert b.start == a.end


def test_simplify_keeps_a_corner() -> None:
    lon = np.concatenate([np.linspace(0, 0.01, 100), np.full(100, 0.01)]) + LON0
    lat = np.concatenate([np.full(100, 0.0), np.linspace(0, 0.01, 100)]) + LAT0
    idx = simplify_indices(lon, lat, 3)
    assert list(idx) == [0, 99, 199]
