"""``fleetpulse simulate``: the simulated fleet against a running api (see docs/simulator.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

import httpx

from infrastructure.event_loop import run as run_on_event_loop
from infrastructure.progress import Progress
from infrastructure.settings import Settings


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _read_json(path: str) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="simulated drivers on the Helsinki road network (docs/simulator.md)"
    )
    p.add_argument("--drivers", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval", type=float, default=5.0, help="reporting interval, 1-30 s")
    p.add_argument("--speedup", type=float, default=1.0, help="time compression, e.g. 60")
    p.add_argument(
        "--duration", type=float, default=None, help="simulated seconds (default: whole routes)"
    )
    p.add_argument("--protocol", choices=["osmand", "traccar", "batch"], default="osmand")
    p.add_argument("--url", help="api base URL (default http://localhost:<http_port>)")
    p.add_argument("--osmand-url", help="OsmAnd receiver (default http://localhost:5055/)")
    p.add_argument("--sigma", type=float, default=8.0, help="GPS noise σ, metres")
    p.add_argument("--dropout", type=float, default=0.003, help="per-fix outage probability")
    p.add_argument("--late", type=float, default=0.003, help="per-fix buffering probability")
    p.add_argument("--dwell", type=float, nargs=2, default=[120.0, 600.0], metavar=("MIN", "MAX"))
    p.add_argument("--radius", type=float, default=40.0, help="customer geofence radius, m")
    p.add_argument("--min-stops", type=int, default=8)
    p.add_argument("--max-stops", type=int, default=20)
    p.add_argument("--truth", default="simulation-truth.json", help="ground truth file")
    p.add_argument("--positions", help="also write every true/reported position (NDJSON)")
    p.add_argument("--score", action="store_true", help="score the run against the system")
    p.add_argument("--score-only", metavar="TRUTH", help="score an earlier run's truth file")
    p.add_argument("--load-roads", action="store_true", help="load road_edges into PostGIS")
    p.add_argument("--wait-api", type=float, default=0.0, help="wait this long for the api")
    p.add_argument("--max-in-flight", type=int, default=64)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return run_on_event_loop(_main(settings, args))
    except KeyboardInterrupt:
        return 130


async def _wait_for_api(client: httpx.AsyncClient, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await client.get("/api/health")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _wait_stored(conn: Any, truth: dict[str, Any], timeout_s: float = 120.0) -> int:
    from simulator.scoring import count_stored

    ids = [d["driverId"] for d in truth["drivers"] if d["driverId"]]
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        stored = await count_stored(conn, ids, truth["startMs"], truth["endMs"] + 3_600_000)
        if stored >= truth["sent"]:
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(3.0)  # visit transitions of the last batch
    return stored


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    from infrastructure.postgres import connect
    from simulator.driving import DrivingConfig
    from simulator.fleet import FleetConfig
    from simulator.network import load_network
    from simulator.roads import load_road_edges
    from simulator.run import RunOptions, score_run, simulate

    conn = await connect(settings.pg)
    try:
        if args.load_roads:
            n = await load_road_edges(conn, load_network())
            _say(f"road_edges: {n} directed street segments of the Helsinki network loaded")
            if args.drivers == 0:
                return 0
        if args.score_only:
            truth = await asyncio.to_thread(_read_json, args.score_only)
            report = await score_run(
                conn, truth, arrival_dwell_s=settings.geofence.visit_arrival_dwell_s
            )
            _say(json.dumps(report, indent=2))
            return 0
        if not 1 <= args.interval <= 30:
            sys.stderr.write("--interval must be between 1 and 30 seconds\n")
            return 2
        cfg = FleetConfig(
            drivers=args.drivers,
            seed=args.seed,
            interval_s=args.interval,
            speedup=args.speedup,
            duration_s=args.duration,
            min_stops=args.min_stops,
            max_stops=args.max_stops,
            driving=DrivingConfig(
                dwell_min_s=args.dwell[0],
                dwell_max_s=args.dwell[1],
                gps_sigma_m=args.sigma,
                dropout_prob=args.dropout,
                buffer_prob=args.late,
                geofence_radius_m=args.radius,
            ),
        )
        base = args.url or f"http://localhost:{settings.http_port}"
        osmand = args.osmand_url or f"http://localhost:{settings.ingest.osmand_port}/"
        opts = RunOptions(
            fleet=cfg,
            protocol=args.protocol,
            osmand_url=osmand,
            api_key=(
                settings.auth.traccar_api_key.get_secret_value()
                if settings.auth.traccar_api_key
                else "traccar-shared-key"
            ),
            truth_path=args.truth,
            positions_path=args.positions,
            max_in_flight=args.max_in_flight,
            progress=Progress,  # a line per step from the first second (docs/operations.md)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        from simulator.protocols import HttpPoster

        ingest = HttpPoster(base, connections=args.max_in_flight)
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30.0)) as api:
            if args.wait_api:
                await _wait_for_api(api, args.wait_api)
            started = time.monotonic()
            _say(
                f"simulator: {cfg.drivers} drivers, seed {cfg.seed}, every {cfg.interval_s:g} s, "
                f"{cfg.speedup:g}x, protocol {args.protocol}; setting up routes through the API",
            )
            ready = asyncio.Event()
            task = asyncio.create_task(simulate(api, ingest, conn, opts, stop=stop, ready=ready))
            stopper = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set() and not ready.is_set():
                    # Ctrl-C during the set-up: nothing is driving yet, just stop
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    _say("simulator: stopped during set-up")
                    return 130
                result = await task
            finally:
                stopper.cancel()
                await ingest.close()
        s = result.send
        _say(
            json.dumps(
                {
                    "drivers": cfg.drivers,
                    "wall_s": round(time.monotonic() - started, 1),
                    "sent": s.sent,
                    "accepted": s.accepted,
                    "rejected": s.rejected,
                    "retries": s.retries,
                    "unsent": s.unsent,
                    "dropped_by_gps": result.stats.dropped,
                    "sender_lag_s": result.stats.lag_summary(),
                    "truth": args.truth,
                }
            ),
        )
        if args.score:
            stored = await _wait_stored(conn, result.truth)
            report = await score_run(
                conn, result.truth, arrival_dwell_s=settings.geofence.visit_arrival_dwell_s
            )
            report["stored_after_wait"] = stored
            _say(json.dumps(report, indent=2))
    finally:
        await conn.close()
    return 0
