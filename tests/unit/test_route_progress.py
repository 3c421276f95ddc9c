"""Progress along a route and the ETA to the next stop."""

from __future__ import annotations

import math

import pytest
from pyproj import Geod

from geo.route_progress import (
    RouteLine,
    SpeedEstimate,
    eta_seconds,
    haversine_m,
    remaining_along_m,
    straight_line_remaining_m,
)

GEOD = Geod(ellps="WGS84")
# An L-shaped route in central Helsinki: ~1.2 km east, then ~0.9 km north.
PATH = [(24.930, 60.165), (24.952, 60.165), (24.952, 60.173)]


def point_at(path: list[tuple[float, float]], d: float) -> tuple[float, float]:
    """The point d metres along a lon/lat polyline (geodesic), for ground truth."""
    for (lon1, lat1), (lon2, lat2) in zip(path, path[1:], strict=False):
        az, _, seg = GEOD.inv(lon1, lat1, lon2, lat2)
        if d <= seg:
            lon, lat, _ = GEOD.fwd(lon1, lat1, az, d)
            return lon, lat
        d -= seg
    return path[-1]


def test_locate_measures_distance_along_the_line_in_metres() -> None:
    route = RouteLine.from_lonlat(PATH, [PATH[-1]])
    geodesic_len = sum(
        GEOD.inv(a[0], a[1], b[0], b[1])[2] for a, b in zip(PATH, PATH[1:], strict=False)
    )
    assert route.length_m == pytest.approx(geodesic_len, rel=1e-3)
    for d in (0.0, 300.0, 1200.0, 1800.0):
        lon, lat = point_at(PATH, d)
        along, off = route.locate(lon, lat)
        assert along == pytest.approx(d, abs=2.0)
        assert off < 1.0


def test_eta_at_constant_speed_decreases_steadily_and_is_within_5_percent() -> None:
    stop = PATH[-1]
    route = RouteLine.from_lonlat(PATH, [stop])
    speed = 8.0  # m/s
    total = route.length_m
    estimate = SpeedEstimate()
    previous_eta = math.inf
    prev: tuple[float, float] | None = None
    for t in range(0, int(total / speed) - 5):
        lon, lat = point_at(PATH, speed * t)
        if prev is not None:
            estimate = estimate.observe(haversine_m(*prev, lon, lat), 1.0, half_life_s=300)
        prev = (lon, lat)
        along, _ = route.locate(lon, lat, near_m=speed * max(0, t - 1), window_m=150)
        speed_now = estimate.value(prior_ms=5.0, prior_s=15.0)
        eta = eta_seconds(remaining_along_m(route, along, 0), speed_now, planning_speed_ms=5.0)
        truth = (total - speed * t) / speed
        assert eta < previous_eta
        if t >= 150:  # once 2.5 min of driving outweigh the 15 s prior (5 m/s vs 8 m/s)
            assert eta == pytest.approx(truth, rel=0.05), t
        previous_eta = eta


def test_a_route_back_along_the_same_street_keeps_each_stop_on_its_own_pass() -> None:
    out_and_back = [(24.930, 60.165), (24.952, 60.165), (24.930, 60.1651)]
    stops = [(24.941, 60.165), (24.941, 60.1651)]  # the same place, on the way out and back
    route = RouteLine.from_lonlat(out_and_back, stops)
    first, second = route.stop_along_m
    assert first < route.length_m / 2 < second
    # On the way back, near the previous progress, the position is on the second pass.
    along, _ = route.locate(24.945, 60.1651, near_m=route.length_m * 0.6)
    assert along > route.length_m / 2


def test_fallbacks_without_geometry_and_for_a_stopped_driver() -> None:
    d = haversine_m(24.93, 60.165, 24.952, 60.165)
    assert straight_line_remaining_m(24.93, 60.165, 24.952, 60.165) == pytest.approx(d * 1.3)
    assert eta_seconds(1000.0, 0.1, planning_speed_ms=10.0) == pytest.approx(100.0)
    assert eta_seconds(1000.0, 500.0, planning_speed_ms=10.0) == pytest.approx(1000 / (130 / 3.6))
    assert eta_seconds(0.0, 10.0, planning_speed_ms=10.0) == 0.0
