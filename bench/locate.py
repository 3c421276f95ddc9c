"""Cost of locating a fix on its route (``RouteLine.locate_xy``), the worker's per-fix search.

No services: delivery routes are planned on the simulator's network (Helsinki by default,
what ``bench/ingest.py`` drives), and a van drives each one: a fix every ``--step-m`` metres
with σ ``--sigma-m`` GPS noise, each located from the previous progress in the worker's
window (150 m ahead), as ``ingest.movement`` does. Prints one JSON document: the routes'
vertices and the simplified path's (``LOCATE_TOLERANCE_M``), µs per located fix, ms per route
built (``RouteLine.from_lonlat``, once per route and worker), and how far the located progress
was from the truth. Example::

    .venv/bin/python -m bench.locate --routes 100
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import numpy as np

from geo.route_progress import RouteLine
from simulator.fleet import FleetConfig
from simulator.network import load_network
from simulator.planning import TravelTimes, place_customers, plan_route


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--network", default="helsinki")
    ap.add_argument("--routes", type=int, default=100)
    ap.add_argument("--step-m", type=float, default=5.0, help="metres driven between fixes")
    ap.add_argument("--sigma-m", type=float, default=10.0, help="GPS noise (per axis)")
    args = ap.parse_args()

    net = load_network(args.network)
    times = TravelTimes(net)
    fleet = FleetConfig(network=args.network)
    rng = random.Random(1)
    customers = place_customers(net, 200, rng, first_id=1)
    depots = [min(net.graph.nodes)]
    lines, build_ms = [], []
    for _ in range(args.routes):
        route = plan_route(
            net, times, customers, rng, depots, min_stops=8, max_stops=12, leg_s=fleet.legs_for(net)
        )
        coords = route.geometry()
        began = time.perf_counter()
        line = RouteLine.from_lonlat(coords, [(c.lon, c.lat) for c in route.stops])
        build_ms.append((time.perf_counter() - began) * 1000)
        lines.append(line)

    located_s, fixes = 0.0, 0
    errors: list[float] = []
    for line in lines:
        drive = [k * args.step_m for k in range(int(line.length_m / args.step_m))]
        truth = [
            (
                float(np.interp(a, line.cum, line.xy[:, 0])) + rng.gauss(0.0, args.sigma_m),
                float(np.interp(a, line.cum, line.xy[:, 1])) + rng.gauss(0.0, args.sigma_m),
            )
            for a in drive
        ]
        progress = 0.0
        began = time.perf_counter()
        for x, y in truth:
            progress, _ = line.locate_xy(x, y, near_m=progress, window_m=150.0)
        located_s += time.perf_counter() - began
        fixes += len(truth)
        errors.append(abs(progress - drive[-1]) if drive else 0.0)

    out = {
        "network": args.network,
        "routes": len(lines),
        "route_km_mean": round(statistics.fmean(ln.length_m for ln in lines) / 1000, 2),
        "vertices_mean": round(statistics.fmean(len(ln.cum) for ln in lines), 1),
        "simplified_vertices_mean": round(statistics.fmean(len(ln.cum_list) for ln in lines), 1),
        "fixes": fixes,
        "locate_us_per_fix": round(1e6 * located_s / fixes, 2) if fixes else None,
        "build_ms_per_route": round(statistics.fmean(build_ms), 2),
        # how far the progress at each route's last fix is from the truth
        "final_progress_error_m_p50": round(statistics.median(errors), 1),
        "final_progress_error_m_max": round(max(errors), 1),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
