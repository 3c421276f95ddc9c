"""The Liechtenstein network (fetched once from Debian, then cached) and routes planned on it.

Integration: the first run on a machine downloads the extract (infrastructure.osm_extracts).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from geo.distance import haversine_m
from simulator.fleet import REGIONAL_LEG_S, FleetConfig, build_fleet
from simulator.network import RoadNetwork, load_network
from simulator.planning import TravelTimes
from simulator.roads import load_road_edges

pytestmark = pytest.mark.integration

T0 = 1_780_000_000_000


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return load_network("liechtenstein")


def test_the_network_is_the_country(net: RoadNetwork) -> None:
    assert (net.name, net.profile, net.timezone) == ("liechtenstein", "regional", "Europe/Vaduz")
    lon0, lat0, lon1, lat1 = net.bbox
    assert 9.47 < lon0 < lon1 < 9.62 and 47.05 < lat0 < lat1 < 47.26
    assert net.graph.number_of_nodes() > 10_000
    km = sum(e.length_m for e in net.edges()) / 1000  # both directions of two-way roads
    assert 650 < km < 720
    limits = [e for e in net.edges() if e.maxspeed_kmh is not None]
    assert len(limits) > 2_000
    # a signed limit is the free-flow speed on a regional network (links: at most 40 km/h)
    roads = [e for e in limits if not e.highway.endswith("_link")]
    assert all(e.speed_ms * 3.6 == pytest.approx(e.maxspeed_kmh) for e in roads)
    residential = [e for e in net.edges() if e.highway == "residential" and not e.maxspeed_kmh]
    assert residential and all(e.speed_ms * 3.6 == pytest.approx(30.0) for e in residential)


def test_legs_last_5_to_30_minutes_of_free_flow(net: RoadNetwork) -> None:
    fleet = build_fleet(FleetConfig(drivers=6, seed=4, network="liechtenstein"), T0, net)
    lo, hi = REGIONAL_LEG_S
    times = TravelTimes(net)
    legs = 0
    for plan in fleet.plans:
        assert 8 <= len(plan.stops) <= 20
        assert len({s.id for s in plan.stops}) == len(plan.stops)
        here = plan.depot
        for leg, stop in zip(plan.legs, plan.stops, strict=True):
            assert leg.nodes[0] == here and leg.nodes[-1] == stop.node
            free_flow = sum(e.length_m / e.speed_ms for e in leg.edges)
            assert lo <= free_flow <= hi
            assert free_flow == pytest.approx(times.time(here, stop.node))  # the shortest path
            here = stop.node
            legs += 1
    assert legs >= 48
    # customers spread over the country, apart from each other
    cs = random.Random(0).sample(fleet.customers, 40)
    assert all(haversine_m(a.lon, a.lat, b.lon, b.lat) >= 120 for a in cs for b in cs if a != b)


def test_driven_legs_take_the_planned_time_plus_traffic_and_waits(net: RoadNetwork) -> None:
    """The true time of a leg is at least its free-flow time (the driver's factor aside) and
    at most a few times it: congestion, junctions and lights, accelerating."""
    cfg = FleetConfig(drivers=2, seed=9, network="liechtenstein")
    fleet = build_fleet(cfg, T0, net)
    for d, plan in zip(fleet.drivers, fleet.plans, strict=True):
        d.keep_history_ms = 10**12
        t = d.start_ms
        while not d.done_at(t):
            t += 30_000
        previous_leave = d.start_ms
        for v, leg in zip(d.visits, plan.legs, strict=True):
            assert v.arrive_ms is not None and v.leave_ms is not None
            driven = (v.arrive_ms - previous_leave) / 1000
            free_flow = sum(e.length_m / e.speed_ms for e in leg.edges)
            assert free_flow / cfg.driving.speed_factor_max <= driven <= 3 * free_flow + 120
            assert 120 <= (v.leave_ms - v.arrive_ms) / 1000 <= 600
            previous_leave = v.leave_ms


async def test_road_edges_as_osm_segments_or_simplified(net: RoadNetwork, pg: Any) -> None:
    segments = net.segments()
    assert 3_500 < len(segments) < 4_500  # DESIGN.md: ~4,000 edges after simplification
    async with pg.acquire() as conn:
        detailed = await load_road_edges(conn, net, network="li-test-detailed")
        merged = await load_road_edges(conn, net, network="li-test-merged", simplify=True)
        rows = await conn.fetch(
            """SELECT network, count(*) AS n, sum(length_m) AS m, sum(cost_s) AS s,
                      bool_and(abs(ST_Length(geom::geography) - length_m) < 0.01 * length_m + 1)
                          AS geom_ok
               FROM road_edges WHERE network LIKE 'li-test-%' GROUP BY network"""
        )
        await conn.execute("DELETE FROM road_edges WHERE network LIKE 'li-test-%'")
    by = {r["network"]: r for r in rows}
    assert (detailed, merged) == (net.graph.number_of_edges(), len(segments))
    assert by["li-test-detailed"]["n"] == detailed and by["li-test-merged"]["n"] == merged
    # the same roads either way: total length and free-flow time agree
    assert by["li-test-merged"]["m"] == pytest.approx(by["li-test-detailed"]["m"])
    assert by["li-test-merged"]["s"] == pytest.approx(by["li-test-detailed"]["s"])
    assert by["li-test-merged"]["geom_ok"] and by["li-test-detailed"]["geom_ok"]
