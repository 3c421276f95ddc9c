"""Cost of map matching and of the learned ETA per fix, on the simulator's Liechtenstein days.

No services: the simulator's history generator (``simulator.history``) drives ``--days``
driver-days on the network with GPS noise; each day is matched whole (``geo.matching.match``,
as the maintenance pass matches a driver's trips), its traversals build a learned profile
(``geo.eta.SpeedProfile``), and then every fix of the days that lies on its route walks the
route's remaining stops with ``geo.eta.stop_etas`` (what the enrichment worker adds per fix).
Prints one JSON document: fixes, kept fixes, traversals, µs per fix for matching and ETA, and
how many traversals were on the true path. Example::

    .venv/bin/python -m bench.matching --days 20 --network liechtenstein
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import date

from geo.eta import RoadIndex, RouteClock, SpeedProfile, SpeedSample, hour_of_week, stop_etas
from geo.matching import MatchFix, RoadGraph, RoadSegment, match
from geo.route_progress import RouteLine
from simulator.fleet import FleetConfig
from simulator.history import HistoryConfig, history_days, history_plan
from simulator.network import load_network
from simulator.planning import TravelTimes, place_customers, plan_route


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--network", default="liechtenstein")
    ap.add_argument("--days", type=int, default=20, help="driver-days to match")
    ap.add_argument("--interval", type=float, default=5.0)
    args = ap.parse_args()

    net = load_network(args.network)
    graph = RoadGraph([RoadSegment(e.u, e.v, e.coords) for e in net.edges()])
    fleet = FleetConfig(network=args.network, drivers=10, interval_s=args.interval)
    cfg = HistoryConfig(fleet=fleet, weeks=args.days / 70 + 0.1, end_day=date(2026, 11, 30))
    plan = history_plan(cfg, net)[: args.days]
    fixes = kept = traversals = 0
    match_s = 0.0
    samples: list[SpeedSample] = []
    days = list(history_days(cfg, net, only=plan))
    for day in days:
        track = [
            MatchFix(int(t * 1000), float(x), float(y), float(a), float(v))
            for t, x, y, a, v in zip(
                day.t, day.lon, day.lat, day.accuracy, day.speed_kmh, strict=True
            )
        ]
        began = time.perf_counter()
        result = match(graph, track)
        match_s += time.perf_counter() - began
        fixes += len(track)
        kept += result.kept
        traversals += len(result.traversals)
        for tr in result.traversals:
            e = net.edge(*tr.key)
            hour = hour_of_week(tr.enter_ms / 1000)
            samples.append(SpeedSample(tr.key, e.highway, None, hour, e.length_m, tr.travel_s, 1))

    # The ETA: a route of the network walked from every fix of a day along it.
    profile = SpeedProfile.learn(samples, 20 / 3.6, min_samples=3)
    index = RoadIndex(
        [(e.key, e.highway, e.speed_ms, e.coords) for e in net.edges()], cell_of=lambda lon, lat: 0
    )
    rng = random.Random(1)
    route = plan_route(
        net,
        TravelTimes(net),
        place_customers(net, 60, rng, first_id=1),
        rng,
        [min(net.graph.nodes)],
        min_stops=10,
        max_stops=10,
        leg_s=fleet.legs_for(net),
    )
    coords = route.geometry()
    line = RouteLine.from_lonlat(coords, [(c.lon, c.lat) for c in route.stops])
    clock = RouteClock(index.route_roads(line.lonlat, line.cum), profile)
    stops = list(line.stop_along_m)
    step = max(line.length_m / 2_000, 1.0)
    eta_us = []
    now = 1_764_576_000.0  # a Monday morning
    for k in range(2_000):
        along = k * step
        ahead = [s for s in stops if s > along]
        began = time.perf_counter()
        stop_etas(clock, along, now + k * 5, ahead, [300.0] * len(ahead), pace=1.1)
        eta_us.append((time.perf_counter() - began) * 1e6)
    out = {
        "network": args.network,
        "driver_days": len(days),
        "fixes": fixes,
        "kept_fixes": kept,
        "traversals": traversals,
        "match_us_per_fix": round(1e6 * match_s / fixes, 1) if fixes else None,
        "match_us_per_kept_fix": round(1e6 * match_s / kept, 1) if kept else None,
        "route_km": round(line.length_m / 1000, 1),
        "route_stops": len(stops),
        "eta_all_stops_us_p50": round(statistics.median(eta_us), 1),
        "eta_all_stops_us_mean": round(statistics.fmean(eta_us), 1),
        "profile_segments": len(profile.segment_any),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
