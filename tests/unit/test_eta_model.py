"""The learned ETA's pure parts (geo.eta): hours of the week, the fallback chain, the route
clock across hour boundaries, ETAs of every stop, the driver's pace, and learning from matched
traversals that recovers a simulated congestion profile."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import numpy as np
import pytest

from geo.eta import (
    SOURCE_CELL_HOUR,
    SOURCE_CLASS_HOUR,
    SOURCE_PLANNING,
    SOURCE_SEGMENT_HOUR,
    SOURCE_SEGMENT_SCALED,
    Pace,
    RoadIndex,
    RoadPiece,
    RouteClock,
    RouteRoads,
    SpeedProfile,
    SpeedSample,
    hour_of_week,
    paced,
    stop_etas,
)
from geo.matching import match
from tests.unit.test_matching import drive, grid, noisy, random_path

MONDAY = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def test_hours_of_the_week() -> None:
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY + 3599) == 0
    assert hour_of_week(MONDAY + 3600) == 1
    assert hour_of_week(MONDAY + 6 * 86400 + 23 * 3600 + 59) == 167
    assert hour_of_week(MONDAY + 7 * 86400) == 0
    assert hour_of_week(datetime(2000, 1, 3, 5, tzinfo=UTC).timestamp()) == 5  # a Monday


def sample(key, hour, speed, n, highway="primary", cell=1):
    return SpeedSample(key, highway, cell, hour, 100.0 * n, 100.0 * n / speed, n)


def test_the_fallback_chain_and_the_minimum_samples() -> None:
    p = SpeedProfile.learn(
        [
            sample((1, 2), 8, 5.0, 4),  # enough at 08:00
            sample((1, 2), 9, 9.0, 2),  # too few at 09:00 alone
            sample((3, 4), 8, 10.0, 3, cell=2),
            sample((3, 4), 9, 20.0, 3, cell=2),
        ],
        planning_speed_ms=7.0,
        min_samples=3,
    )
    assert p.speed((1, 2), "primary", 1, 8) == (pytest.approx(5.0), SOURCE_SEGMENT_HOUR)
    # 09:00: the segment's all-hours speed (600 m in 120 + 22.2 s) times primary's 09:00
    # factor (primary at 09:00 over primary overall)
    speed, source = p.speed((1, 2), "primary", 1, 9)
    assert source == SOURCE_SEGMENT_SCALED
    seg_any = 600 / (80 + 200 / 9)
    cls_any = 1200 / (80 + 200 / 9 + 30 + 15)
    cls_9 = 500 / (200 / 9 + 15)
    assert speed == pytest.approx(seg_any * cls_9 / cls_any)
    # a segment never driven: its cell at that hour, else its class, else planning
    assert p.speed((9, 9), "primary", 2, 8) == (pytest.approx(10.0), SOURCE_CELL_HOUR)
    assert p.speed((9, 9), "primary", 5, 8)[1] == SOURCE_CLASS_HOUR
    assert p.speed((9, 9), "residential", 5, 8) == (7.0, SOURCE_PLANNING)
    assert p.speed(None, None, None, 8) == (7.0, SOURCE_PLANNING)
    assert p.speed((9, 9), "primary", 5, 3) == (7.0, SOURCE_PLANNING)  # nobody drove at 03:00


def test_a_routes_speeds_at_once_equal_the_chain_piece_by_piece() -> None:
    """The clock reads whole routes from SpeedProfile.tables; every level and every gap of the
    chain must answer there exactly as SpeedProfile.speed does for one piece."""
    rng = random.Random(7)
    keys = [(i, i + 1) for i in range(40)]
    classes = ["primary", "residential", "track", None]
    samples = [
        sample(
            k,
            rng.randrange(168),
            rng.uniform(2.0, 30.0),
            rng.randrange(1, 6),  # some hours below the minimum of 3
            highway=rng.choice(classes[:3]),
            cell=rng.choice([1, 2, 3]),
        )
        for k in keys[:30]
        for _ in range(60)
    ]
    profile = SpeedProfile.learn(samples, planning_speed_ms=7.0, min_samples=3)
    pieces = tuple(
        RoadPiece(
            rng.choice([*keys, None]),  # driven, never driven, or off the road index
            rng.choice(classes),
            rng.choice([1, 2, 3, 4, None]),
            None,
        )
        for _ in range(300)
    )
    clock = RouteClock(RouteRoads(np.arange(300) * 10.0, np.full(300, 10.0), pieces), profile)
    for hour in range(168):
        expected = [profile.speed(p.key, p.highway, p.cell, hour)[0] for p in pieces]
        assert clock.speeds(hour) == pytest.approx(expected, rel=1e-12)


def straight_route(pieces: int, piece_m: float, speeds_by_hour: dict[int, float]) -> RouteClock:
    keys = [(i, i + 1) for i in range(pieces)]
    samples = [
        SpeedSample(k, "primary", None, h, 100.0 * 5, 100.0 * 5 / v, 5)
        for k in keys
        for h, v in speeds_by_hour.items()
    ]
    roads = RouteRoads(
        np.arange(pieces) * piece_m,
        np.full(pieces, piece_m),
        tuple(RoadPiece(k, "primary", None, 25.0) for k in keys),
    )
    return RouteClock(roads, SpeedProfile.learn(samples, 5.0, 3))


def test_the_clock_switches_speed_when_the_hour_turns() -> None:
    clock = straight_route(120, 100.0, {8: 10.0, 9: 5.0})
    start = MONDAY + 8 * 3600 + 50 * 60  # 10 minutes before 09:00
    # 6 km in the 600 s left at 10 m/s, the other 6 km at 5 m/s
    assert clock.travel_s(0.0, 12_000.0, start) == pytest.approx(600 + 1200)
    assert clock.travel_s(0.0, 3_000.0, start) == pytest.approx(300)
    assert clock.travel_s(500.0, 500.0, start) == 0.0
    # a stretch between two fixes: at its first hour's speeds
    assert clock.stretch_s(0.0, 3_000.0, start) == pytest.approx(300)
    assert clock.stretch_s(1_000.0, 1_050.0, MONDAY + 9 * 3600) == pytest.approx(10)
    assert clock.stretch_s(1_050.0, 1_000.0, start) == 0.0
    # from 09:00 on, all at 5 m/s
    assert clock.travel_s(0.0, 12_000.0, MONDAY + 9 * 3600) == pytest.approx(2400)
    free = RouteClock(clock.roads, clock.profile, free_flow=True)
    assert free.travel_s(0.0, 12_000.0, start) == pytest.approx(12_000 / 25.0)


def test_every_stop_gets_an_eta_with_service_times() -> None:
    clock = straight_route(100, 100.0, dict.fromkeys(range(168), 10.0))
    etas = stop_etas(clock, 1_000.0, MONDAY, [2_000.0, 5_000.0, 9_000.0], [300.0, 120.0, 0.0])
    assert etas == pytest.approx([100.0, 100 + 300 + 300, 700 + 120 + 400])
    # serving a stop with 200 s of service left: the later stops count from then
    etas = stop_etas(clock, 2_000.0, MONDAY, [5_000.0, 6_000.0], [60.0, 0.0], ready_in_s=200.0)
    assert etas == pytest.approx([200 + 300, 500 + 60 + 100])


def test_pace_applies_now_and_fades_with_the_horizon() -> None:
    pace = Pace()
    for _ in range(20):  # 20 minutes at 1.25 times the expected time
        pace = pace.observe(75.0, 60.0, half_life_s=600.0)
    ratio = pace.ratio(prior_s=120.0)
    assert 1.2 < ratio < 1.25
    assert paced(0.0, 60.0, ratio, 900.0) == pytest.approx((ratio - 1) * 60, rel=0.05)
    far = paced(3000.0, 3060.0, ratio, 900.0)
    assert 0 < far < 0.05 * (ratio - 1) * 60
    assert paced(0.0, 60.0, 1.0, 900.0) == 0.0
    assert Pace().ratio(prior_s=120.0) == 1.0


def test_route_roads_from_the_road_index() -> None:
    a, b, c = (9.5, 47.1), (9.501, 47.1), (9.502, 47.1)
    index = RoadIndex([((1, 2), "secondary", 15.0, [a, b])], cell_of=lambda lon, lat: 42)
    roads = index.route_roads([a, b, c], np.array([0.0, 75.9, 151.8]))
    assert [p.key for p in roads.pieces] == [(1, 2), None]
    assert roads.pieces[0].highway == "secondary" and roads.pieces[0].cell == 42
    assert roads.matched_share == pytest.approx(0.5)
    # a segment's pieces count in the cell its traversals were learned in
    index = RoadIndex(
        [((1, 2), "secondary", 15.0, [a, b])], cell_of=lambda lon, lat: 42, cells={(1, 2): 7}
    )
    roads = index.route_roads([a, b, c], np.array([0.0, 75.9, 151.8]))
    assert [p.cell for p in roads.pieces] == [7, 42]
    # vertices 0.2 m apart, either side of the prime meridian and the equator, stay apart
    west, east = (-0.000001, -0.000001), (0.000001, 0.000001)
    index = RoadIndex([((3, 4), "primary", 20.0, [west, east])], cell_of=lambda lon, lat: 0)
    assert index.route_roads([west, east], np.array([0.0, 0.1])).pieces[0].key == (3, 4)
    assert index.route_roads([east, west], np.array([0.0, 0.1])).pieces[0].key is None


def congestion(hour: int) -> float:
    """The simulated truth: rush hours at 08:00 and 17:00 on weekdays."""
    day, h = divmod(hour, 24)
    if day >= 5:
        return 1.0
    return 1.0 - 0.5 * math.exp(-((h - 8) ** 2) / 2) - 0.4 * math.exp(-((h - 17) ** 2) / 2)


def test_learning_recovers_the_congestion_profile() -> None:
    """Drives at many hours, GPS noise, map matching, learning: the learned speed of each
    hour follows the simulated congestion within 10 %."""
    rng = random.Random(5)
    graph = grid()
    free = 14.0
    samples: list[SpeedSample] = []
    hours = [h for d in (0, 2, 5) for h in (3, 8, 12, 17)]
    for hour in hours:
        for run in range(6):
            speed = free * congestion(hour) * rng.uniform(0.95, 1.05)
            start = int((MONDAY + hour * 3600 + run * 400) * 1000)
            track, _ = drive(random_path(rng, 12), speed, start)
            for t in match(graph, noisy(track, 3.0, 8.0, rng)).traversals:
                samples.append(
                    SpeedSample(
                        t.key,
                        "residential",
                        None,
                        hour_of_week(t.enter_ms / 1000),
                        graph.lengths[graph.index[t.key]],
                        t.travel_s,
                        1,
                    )
                )
    profile = SpeedProfile.learn(samples, 5.0, min_samples=3)
    for hour in hours:
        learned = profile.class_hour["residential"][hour]
        assert learned == pytest.approx(free * congestion(hour), rel=0.10), hour
