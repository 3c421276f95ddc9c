"""Progress along a route and the ETA to the next stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geo.distance import haversine_m
from geo.route_progress import (
    LOCATE_TOLERANCE_M,
    RouteLine,
    SpeedEstimate,
    eta_seconds,
    project_points,
    remaining_along_m,
    simplified_vertices,
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


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(-0.002, 0.002), st.floats(-0.001, 0.001)), min_size=1, max_size=30
    ),
    point=st.tuples(st.floats(-0.01, 0.01), st.floats(-0.005, 0.005)),
    window=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_the_plain_python_projection_equals_the_numpy_one(
    steps: list[tuple[float, float]],
    point: tuple[float, float],
    window: tuple[float, float],
) -> None:
    coords = [(24.93, 60.16)]
    for dx, dy in steps:  # repeated vertices (zero-length segments) included
        coords.append((coords[-1][0] + dx, coords[-1][1] + dy))
    line = RouteLine.from_lonlat(coords, [])
    x, y = line.transformer.transform(24.93 + point[0], 60.16 + point[1])
    lo, hi = sorted(w * line.length_m for w in window)
    n = len(line.cum_list)  # the simplified path fixes are located on
    for i0 in range(n - 1):
        for i1 in range(i0 + 1, n):
            along, off = line._project_few(x, y, lo, hi, i0, i1)
            assert off == pytest.approx(line._project_vectorised(x, y, lo, hi, i0, i1)[1])
            # the same nearest distance; with two equally near parts of the line either
            # answer is right, so check the point at ``along`` really is that near
            px = np.interp(along, line.loc_cum, line.loc_xy[:, 0])
            py = np.interp(along, line.loc_cum, line.loc_xy[:, 1])
            assert math.hypot(px - x, py - y) == pytest.approx(off, abs=1e-6)


def _nearest_on(xy: np.ndarray, x: float, y: float) -> float:
    """Brute force: the distance from a point to the nearest point of a polyline."""
    best = math.inf
    for (ax, ay), (bx, by) in zip(xy, xy[1:], strict=False):
        dx, dy = bx - ax, by - ay
        len2 = dx * dx + dy * dy
        t = 0.0 if len2 == 0 else min(max(((x - ax) * dx + (y - ay) * dy) / len2, 0.0), 1.0)
        best = min(best, math.hypot(ax + t * dx - x, ay + t * dy - y))
    return best


@settings(max_examples=200, deadline=None)
@given(
    wiggles=st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=60),
    point=st.tuples(st.floats(-200.0, 1_200.0), st.floats(-100.0, 100.0)),
)
def test_fixes_are_located_on_a_path_within_the_tolerance_of_the_planned_one(
    wiggles: list[float], point: tuple[float, float]
) -> None:
    """A road's vertices every ~14 m, most of them on straight stretches: the simplified path
    drops those within LOCATE_TOLERANCE_M, and a fix's distance off it stays within that of
    its distance off the planned path; its distance along stays the planned path's."""
    lat0, lon0 = 60.17, 24.94
    m_lat, m_lon = 1 / 111_320, 1 / (111_320 * math.cos(math.radians(lat0)))
    # eastwards in 14 m steps, each vertex off the straight line by up to 1 m (wiggles)
    coords = [(lon0 + 14 * i * m_lon, lat0 + w * m_lat) for i, w in enumerate(wiggles)]
    line = RouteLine.from_lonlat(coords, [])
    assert len(line.cum_list) <= len(line.cum)
    assert line.cum_list[0] == 0.0 and line.cum_list[-1] == line.length_m
    x, y = line.transformer.transform(lon0 + point[0] * m_lon, lat0 + point[1] * m_lat)
    along, off = line.locate_xy(x, y)
    assert off == pytest.approx(_nearest_on(line.xy, x, y), abs=LOCATE_TOLERANCE_M + 1e-6)
    assert 0.0 <= along <= line.length_m
    # the planned path's point at that distance along is as near, within the tolerance
    px, py = np.interp(along, line.cum, line.xy[:, 0]), np.interp(along, line.cum, line.xy[:, 1])
    assert math.hypot(px - x, py - y) <= off + 2 * LOCATE_TOLERANCE_M + 0.1


def test_a_straight_road_with_many_vertices_is_located_on_one_segment() -> None:
    lat0, lon0 = 60.17, 24.94
    coords = [(lon0 + i * 14 / (111_320 * math.cos(math.radians(lat0))), lat0) for i in range(30)]
    line = RouteLine.from_lonlat(coords, [coords[-1]])
    assert len(line.cum_list) == 2  # every inner vertex within the tolerance
    assert line.stop_along_m[0] == pytest.approx(line.length_m)


def test_a_lost_thread_is_picked_up_ahead_on_a_route_that_doubles_back() -> None:
    """A street driven out and back (its return lane 6 m from the outbound one): after a jump
    the fix, noisy, lies nearer the outbound pass. The search looks ahead of the last
    progress first, so the van on its way back is not put kilometres behind."""
    lon0, lat0 = 9.52, 47.14
    east = 2_000 / (111_320 * math.cos(math.radians(lat0)))
    north = 6 / 111_320
    line = RouteLine.from_lonlat(
        [(lon0, lat0), (lon0 + east, lat0), (lon0 + east, lat0 + north), (lon0, lat0 + north)],
        [(lon0, lat0 + north)],
    )
    # on the way back; the fix is further along than the window around the last progress
    # reaches, 2 m from the outbound lane and 4 m from the return lane
    fix = (lon0 + east * 0.05, lat0 + north / 3)
    along, off = line.locate(*fix, near_m=2_200.0, window_m=150.0)
    assert along > line.length_m / 2 and off == pytest.approx(4.0, abs=0.5)
    assert along == pytest.approx(line.length_m - 0.05 * 2_000, rel=0.01)


def test_a_batch_projected_at_once_locates_as_each_fix_alone() -> None:
    """``project_points`` groups a batch by projection; each point must come out in its own
    line's metres, in the batch's order, whichever lines share a projection."""
    helsinki = RouteLine.from_lonlat(PATH, [PATH[-1]])
    far = [(lon + 0.5, lat + 0.3) for lon, lat in PATH]  # another region, another projection
    other = RouteLine.from_lonlat(far, [far[-1]])
    assert other.transformer is not helsinki.transformer
    lines = [helsinki, other, helsinki, other, helsinki]
    points = [(24.94, 60.1652), (25.45, 60.4651), (24.952, 60.17), (25.452, 60.47), PATH[0]]
    xy = project_points(lines, [p[0] for p in points], [p[1] for p in points])
    for line, (lon, lat), (x, y) in zip(lines, points, xy, strict=True):
        assert line.locate_xy(x, y) == line.locate(lon, lat)
        assert line.locate_xy(x, y, near_m=300.0, window_m=150.0) == line.locate(
            lon, lat, near_m=300.0, window_m=150.0
        )
    assert project_points([], [], []) == []


def test_stops_at_the_very_end_of_a_route_are_both_at_its_end() -> None:
    """The second stop is searched from the first one's position onwards; with the first at
    the very end, that search starts at the end (it read past the last segment: the bench
    found it on routes whose last two customers share the end of the path)."""
    lat0, lon0 = 60.17, 24.94
    coords = [(lon0 + i * 14 / (111_320 * math.cos(math.radians(lat0))), lat0) for i in range(30)]
    line = RouteLine.from_lonlat(coords, [coords[-1], coords[-1]])
    assert line.stop_along_m == (line.length_m, line.length_m)
    assert line.locate_xy(*line.transformer.transform(*coords[-1]), near_m=line.length_m) == (
        pytest.approx(line.length_m),
        pytest.approx(0.0, abs=1e-6),
    )


def _douglas_peucker(xy: np.ndarray, a: int, b: int, tol: float, out: set[int]) -> None:
    """The textbook recursion, a range at a time (the reference)."""
    out |= {a, b}
    best, at = -1.0, -1
    for i in range(a + 1, b):
        d = xy[b] - xy[a]
        len2 = float(d @ d)
        t = 0.0 if len2 == 0 else min(max(float((xy[i] - xy[a]) @ d) / len2, 0.0), 1.0)
        off = float(np.hypot(*(xy[i] - xy[a] - t * d)))
        if off > best:
            best, at = off, i
    if best > tol:
        _douglas_peucker(xy, a, at, tol, out)
        _douglas_peucker(xy, at, b, tol, out)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 80),
    tol=st.sampled_from([0.0, 0.5, 3.0, 30.0]),
)
def test_the_simplification_keeps_what_the_textbook_recursion_keeps(
    seed: int, n: int, tol: float
) -> None:
    """Random walks (no two distances exactly equal, where the two might break a tie
    differently by a rounding) give the same vertices as the recursion."""
    xy = np.cumsum(np.random.default_rng(seed).normal(0.0, 10.0, (n, 2)), axis=0)
    kept = simplified_vertices(xy, tol)
    reference: set[int] = set()
    _douglas_peucker(xy, 0, n - 1, tol, reference)
    assert kept.tolist() == sorted(reference)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(-20.0, 20.0), st.floats(-20.0, 20.0)), max_size=80),
    tol=st.sampled_from([0.0, 0.5, 3.0]),
)
def test_every_dropped_vertex_is_within_the_tolerance_of_the_simplified_path(
    steps: list[tuple[float, float]], tol: float
) -> None:
    xy = np.cumsum(np.array([(0.0, 0.0), *steps]), axis=0)
    kept = simplified_vertices(xy, tol).tolist()
    assert kept[0] == 0 and kept[-1] == len(xy) - 1
    for a, b in zip(kept, kept[1:], strict=False):
        for i in range(a + 1, b):
            assert _nearest_on(xy[[a, b]], *xy[i]) <= tol + 1e-9
