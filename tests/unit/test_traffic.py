"""The simulator's traffic: peaks at the right local hours, main roads slower, reproducible."""

from __future__ import annotations

from datetime import datetime
from statistics import mean
from zoneinfo import ZoneInfo

import pytest

from simulator.driving import Driver, DrivingConfig
from simulator.fleet import FleetConfig, build_fleet
from simulator.network import RoadNetwork, load_network
from simulator.traffic import MIN_FACTOR, TrafficModel, congestion

HELSINKI = ZoneInfo("Europe/Helsinki")


def _ms(day: int, hour: int, minute: int = 0) -> int:
    """Epoch ms of a local Helsinki time in the week of Monday 2026-03-02 (day 0 = Monday)."""
    return int(datetime(2026, 3, 2 + day, hour, minute, tzinfo=HELSINKI).timestamp() * 1000)


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return load_network("helsinki")


def test_congestion_peaks_on_working_days_and_is_quiet_at_night_and_on_sundays() -> None:
    weekday = [congestion(2, h / 4) for h in range(96)]
    morning = max(range(96), key=lambda i: weekday[i] if i < 48 else -1) / 4
    evening = max(range(48, 96), key=lambda i: weekday[i]) / 4
    assert 7.0 <= morning <= 8.5 and 16.5 <= evening <= 18.0
    assert congestion(2, 3.0) < 0.05 and congestion(2, 23.0) < 0.05
    assert congestion(2, 7.75) > 0.9 and congestion(2, 12.5) < congestion(2, 17.25)
    assert max(congestion(6, h / 4) for h in range(96)) < 0.15  # Sunday
    assert max(congestion(5, h / 4) for h in range(96)) < congestion(2, 7.75) / 2  # Saturday


def test_factor_follows_local_time_and_road_class(net: RoadNetwork) -> None:
    traffic = TrafficModel(net, seed=3)
    edges = net.edges()
    for e in edges:
        assert traffic.factor(e.key, _ms(2, 3)) > 0.97  # Wednesday 03:00
        peak = traffic.factor(e.key, _ms(2, 7, 45))
        assert MIN_FACTOR <= peak < 1.0
    main = [traffic.factor(e.key, _ms(2, 7, 45)) for e in edges if e.highway == "primary"]
    side = [traffic.factor(e.key, _ms(2, 7, 45)) for e in edges if e.highway == "residential"]
    assert main and side and mean(main) < mean(side) - 0.2
    # The time zone counts: 07:45 in Helsinki is 05:45 UTC; 07:45 UTC is already off-peak.
    key = next(e.key for e in edges if e.highway == "primary")
    utc_0745 = int(datetime(2026, 3, 4, 7, 45, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert traffic.factor(key, _ms(2, 7, 45)) < traffic.factor(key, utc_0745)


def test_same_seed_same_factors_other_seed_other_roads(net: RoadNetwork) -> None:
    t = _ms(3, 17, 15)
    a, b, c = (
        TrafficModel(net, seed=1),
        TrafficModel(load_network("helsinki"), 1),
        TrafficModel(net, 2),
    )
    keys = [e.key for e in net.edges()]
    assert [a.factor(k, t) for k in keys] == [b.factor(k, t) for k in keys]
    assert [a.factor(k, t) for k in keys] != [c.factor(k, t) for k in keys]
    # within a class, edges differ (per-edge draw), not just by class
    primary = {round(a.susceptibility(e.key), 6) for e in net.edges() if e.highway == "primary"}
    assert len(primary) > 10
    assert TrafficModel(net, seed=1, enabled=False).factor(keys[0], t) == 1.0


def test_expected_traversal_adds_congestion_and_mean_waits(net: RoadNetwork) -> None:
    cfg = DrivingConfig()
    traffic = TrafficModel(net, seed=1, driving=cfg)
    mean_driver = (cfg.speed_factor_min + cfg.speed_factor_max) / 2
    for e in net.edges()[:200]:
        night = traffic.expected_traversal_s(e, _ms(2, 3))
        peak = traffic.expected_traversal_s(e, _ms(2, 7, 45))
        wait = traffic.node_delay_s(e.v)
        assert night == pytest.approx(
            e.length_m / (e.speed_ms * traffic.factor(e.key, _ms(2, 3)) * mean_driver) + wait
        )
        assert peak > night
        if e.v in net.signals:
            assert wait == pytest.approx(cfg.red_light_prob * sum(cfg.red_light_s) / 2)


def _drive_time(net: RoadNetwork, start_ms: int, traffic: bool) -> float:
    cfg = DrivingConfig(red_light_prob=0.0, give_way_prob=0.0, dwell_min_s=1, dwell_max_s=1)
    fleet = build_fleet(FleetConfig(drivers=1, seed=5, driving=cfg, traffic=traffic), start_ms, net)
    d: Driver = fleet.drivers[0]
    t = d.start_ms
    while not d.done_at(t):
        t += 5_000
    assert d.finished_ms is not None
    return (d.finished_ms - d.start_ms) / 1000


def test_the_same_route_takes_longer_in_the_morning_peak(net: RoadNetwork) -> None:
    night = _drive_time(net, _ms(2, 3), traffic=True)
    peak = _drive_time(net, _ms(2, 7, 30), traffic=True)
    free = _drive_time(net, _ms(2, 7, 30), traffic=False)
    assert night == pytest.approx(free, rel=0.02)
    assert peak > night * 1.08


def test_free_flow_speeds_by_class_and_signed_limit() -> None:
    from simulator.network import SpeedProfile, free_flow_speed_ms, maxspeed_kmh

    def kmh(highway: str, maxspeed: str | None, profile: SpeedProfile) -> float:
        return round(free_flow_speed_ms(highway, maxspeed, profile) * 3.6, 6)

    # a region: the sign wins where there is one, else the class speed
    assert kmh("primary", "80", "regional") == 80 and kmh("primary", None, "regional") == 70
    assert kmh("residential", "50", "regional") == 50
    assert kmh("residential", None, "regional") == 30
    assert kmh("secondary_link", "60", "regional") == 40  # links are slow whatever the sign
    assert kmh("primary", "30 mph", "regional") == pytest.approx(48.28032)
    # a city centre: the class speed, never above the sign
    assert kmh("primary", "80", "city") == 40 and kmh("residential", "20", "city") == 20
    assert (
        maxspeed_kmh("none") is None and maxspeed_kmh("-5") is None and maxspeed_kmh(None) is None
    )


def test_segments_partition_the_edges_into_chains(net: RoadNetwork) -> None:
    segments = net.segments()
    edges = [e.key for s in segments for e in s.edges]
    assert sorted(edges) == sorted(e.key for e in net.edges())  # each edge in exactly one
    assert len({s.key for s in segments}) == len(segments)  # (u, v) is a key
    assert len(segments) < net.graph.number_of_edges() / 3
    ends = {n for s in segments for n in s.key}
    for s in segments:
        assert s.u != s.v and s.edges[0].u == s.u and s.edges[-1].v == s.v
        for a, b in zip(s.edges, s.edges[1:], strict=False):
            assert a.v == b.u and a.v not in ends and a.v not in net.signals
        assert s.coords[0] == s.edges[0].coords[0] and s.coords[-1] == s.edges[-1].coords[-1]
        assert s.main.length_m == max(e.length_m for e in s.edges)


def test_expected_segment_time_walks_its_edges(net: RoadNetwork) -> None:
    traffic = TrafficModel(net, seed=1)
    longest = max(net.segments(), key=lambda s: len(s.edges))
    assert len(longest.edges) >= 3
    night = _ms(2, 3)
    walked = 0.0
    for e in longest.edges:
        walked += traffic.expected_traversal_s(e, night + int(walked * 1000))
    assert traffic.expected_segment_s(longest, night) == pytest.approx(walked, rel=1e-6)
    assert traffic.expected_segment_s(longest, _ms(2, 7, 45)) > walked
