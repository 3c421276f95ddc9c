"""One simulation run end to end: set up through the API, drive, write the truth, score.

The caller owns the HTTP clients (a real URL, or the app in-process for tests) and the
database connection; this module holds no settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from simulator.fleet import (
    Fleet,
    FleetConfig,
    PositionLog,
    RunStats,
    SimClock,
    build_fleet,
    drive_fleet,
    start_of_run_ms,
    truth_document,
    write_json,
)
from simulator.protocols import Poster, Protocol, Sender, SendStats
from simulator.scoring import count_stored, fetch_detected, fetch_etas, score
from simulator.setup import (
    CreatedRoute,
    create_route,
    ensure_drivers,
    ensure_geofences,
    login,
    sql_close_open_routes,
    sql_upsert_customers,
)

log = logging.getLogger(__name__)


class StepProgress(typing.Protocol):
    """Progress of one set-up step (infrastructure.progress.Progress is one)."""

    def advance(self, n: int = 1) -> None: ...

    def close(self, *, failed: bool = False) -> None: ...


# (what, total, unit) -> a StepProgress; the command line passes infrastructure's Progress
# (this package imports only geo). Anything long in simulator/ can take one the same way.
ProgressFactory = Callable[[str, int | None, str], StepProgress]


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self, *, failed: bool = False) -> None:
        pass


def no_progress(what: str, total: int | None, unit: str) -> StepProgress:
    """A ProgressFactory that reports nothing (tests, library use)."""
    return _NoProgress()


@dataclass
class RunOptions:
    fleet: FleetConfig = field(default_factory=FleetConfig)
    protocol: Protocol = "osmand"
    osmand_url: str = "/api/osmand"
    api_key: str = "traccar-shared-key"
    tenant: str = "tenant-1"
    email: str = "admin@tenant1.com"
    password: str = "admin123"
    truth_path: str | None = None
    positions_path: str | None = None
    max_in_flight: int = 64
    progress: ProgressFactory = no_progress


@dataclass
class RunResult:
    fleet: Fleet
    stats: RunStats
    send: SendStats
    truth: dict[str, Any]
    driver_ids: dict[str, str]
    routes: dict[str, CreatedRoute]


async def prepare(
    api: httpx.AsyncClient, conn: asyncpg.Connection, opts: RunOptions, fleet: Fleet
) -> tuple[dict[str, str], dict[str, CreatedRoute]]:
    """Drivers, customers, geofences, and each driver's route with visits, via the API."""
    headers = await login(api, opts.email, opts.password, opts.tenant)
    devices = [d.device_id for d in fleet.drivers]
    radius_m = fleet.cfg.driving.geofence_radius_m
    step = opts.progress("drivers and geofences", len(devices) + len(fleet.customers), "")
    try:
        driver_ids = await ensure_drivers(api, headers, devices)
        step.advance(len(devices))
        await sql_upsert_customers(conn, opts.tenant, fleet.customers, radius_m)
        await ensure_geofences(api, headers, fleet.customers, radius_m)
        step.advance(len(fleet.customers))
        await sql_close_open_routes(conn, list(driver_ids.values()))
    except BaseException:
        step.close(failed=True)
        raise
    step.close()
    routes: dict[str, CreatedRoute] = {}
    sem = asyncio.Semaphore(8)
    visits = opts.progress("routes and visits", sum(len(p.stops) for p in fleet.plans), "visits")

    async def one(i: int) -> None:
        d = fleet.drivers[i]
        async with sem:
            routes[d.device_id] = await create_route(
                api,
                headers,
                driver_ids[d.device_id],
                fleet.day,
                fleet.plans[i],
                f"Simulated route {d.device_id} (seed {fleet.cfg.seed})",
            )
        visits.advance(len(fleet.plans[i].stops))

    try:
        await asyncio.gather(*(one(i) for i in range(len(fleet.drivers))))
    except BaseException:
        visits.close(failed=True)
        raise
    visits.close()
    return driver_ids, routes


async def simulate(
    api: httpx.AsyncClient,
    ingest: httpx.AsyncClient | Poster,
    conn: asyncpg.Connection,
    opts: RunOptions,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> RunResult:
    """Set up, drive until done (or ``stop``), write the ground truth; return the result."""
    start_ms = start_of_run_ms(opts.fleet)
    planning = opts.progress("planning the fleet's routes on the road network", None, "")
    try:
        fleet = await asyncio.to_thread(build_fleet, opts.fleet, start_ms)
    except BaseException:
        planning.close(failed=True)
        raise
    planning.close()
    driver_ids, routes = await prepare(api, conn, opts, fleet)
    if opts.fleet.speedup <= 1.0:
        # Real time: setting up 1,000 drivers through the API takes about a minute; without
        # this every fix of the demo was stamped that much in the past.
        fleet = fleet.starting_at(int(time.time() * 1000))
        start_ms = fleet.start_ms
    if ready is not None:
        ready.set()
    sender = Sender(
        ingest,
        opts.protocol,
        osmand_url=opts.osmand_url,
        api_key=opts.api_key,
        max_in_flight=opts.max_in_flight,
    )
    plog = PositionLog(opts.positions_path) if opts.positions_path else None
    clock = SimClock(start_ms, opts.fleet.speedup)
    try:
        stats = await drive_fleet(fleet, sender, clock, stop=stop, on_fixes=plog)
    finally:
        if plog is not None:
            plog.close()
    truth = truth_document(fleet, stats, driver_ids, routes, sender.stats.accepted)
    if opts.truth_path:
        write_json(opts.truth_path, truth)
    return RunResult(fleet, stats, sender.stats, truth, driver_ids, routes)


async def score_run(
    conn: asyncpg.Connection, truth: dict[str, Any], *, arrival_dwell_s: float = 60.0
) -> dict[str, Any]:
    """Score a run's truth against what the database holds now."""
    route_ids = [d["routeId"] for d in truth["drivers"] if d["routeId"]]
    driver_ids = [d["driverId"] for d in truth["drivers"] if d["driverId"]]
    detected = await fetch_detected(conn, route_ids)
    etas = await fetch_etas(conn, driver_ids, truth["startMs"], truth["endMs"] + 3_600_000)
    result = score(truth, detected, etas, arrival_dwell_s=arrival_dwell_s)
    result["stored"] = await count_stored(
        conn, driver_ids, truth["startMs"], truth["endMs"] + 3_600_000
    )
    result["sent"] = truth["sent"]
    return result
