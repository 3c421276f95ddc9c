"""Running N simulated drivers concurrently against the real receivers, with time compression.

Simulated time runs ``speedup`` times faster than the wall clock. Fix times are simulated
time, so the system's state machines see realistic gaps (60 s of dwell is 60 s of fix time,
even if it took one second of wall time). The simulated clock starts in the past so that it
catches up with the wall clock at the end of the run and no fix is ever in the future.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson

from simulator.driving import Driver, DrivingConfig, Fix
from simulator.network import RoadNetwork, load_network
from simulator.planning import (
    Customer,
    RoutePlan,
    TravelTimes,
    pick_depots,
    place_customers,
    plan_route,
)
from simulator.protocols import Sender
from simulator.setup import CUSTOMER_ID_BASE
from simulator.traffic import TrafficModel


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to simulate (times in simulated seconds)."""

    drivers: int = 10
    seed: int = 1
    interval_s: float = 5.0
    speedup: float = 1.0
    duration_s: float | None = None  # None: until every route is done
    start_spread_s: float = 120.0  # vans leave their depots within this window
    min_stops: int = 8
    max_stops: int = 20
    customers: int = 400  # at most; fewer when the network has no room (min gap 120 m)
    depots: int = 4
    device_prefix: str = "SIM"
    driving: DrivingConfig = field(default_factory=DrivingConfig)
    network: str = "helsinki"  # simulator.network.NETWORKS, or an .osm.pbf path
    traffic: bool = True  # congestion by time of day and road (simulator.traffic)
    # Which roads congest how much is the world's, not the run's: a history generated with the
    # same traffic seed is the past of the same roads (simulator.history).
    traffic_seed: int = 1
    # free-flow seconds per leg; None: by network (a region REGIONAL_LEG_S, a city centre any)
    leg_s: tuple[float, float] | None = None

    def legs_for(self, net: RoadNetwork) -> tuple[float, float] | None:
        """The leg range to plan with on ``net``."""
        if self.leg_s is not None:
            return self.leg_s
        return REGIONAL_LEG_S if net.profile == "regional" else None

    def device_id(self, i: int) -> str:
        return f"{self.device_prefix}{i + 1:05d}"


REGIONAL_LEG_S = (300.0, 1800.0)  # 5–30 min of free-flow driving between stops
STOP_RETRY_S = 10.0  # after a stop, how long a failing post is still retried


class SimClock:
    """Simulated epoch milliseconds as a function of the monotonic wall clock."""

    def __init__(self, sim0_ms: int, speedup: float) -> None:
        self.sim0_ms = sim0_ms
        self.speedup = speedup
        self.wall0 = time.monotonic()

    def now_ms(self) -> int:
        return self.sim0_ms + int((time.monotonic() - self.wall0) * self.speedup * 1000)

    def wall_delay_s(self, sim_ms: int) -> float:
        """Wall seconds until the simulated clock shows ``sim_ms`` (negative: late)."""
        due = self.wall0 + (sim_ms - self.sim0_ms) / 1000 / self.speedup
        return due - time.monotonic()


def start_of_run_ms(cfg: FleetConfig, now_ms: int | None = None) -> int:
    """Where simulated time starts: so that it reaches the wall clock when the run ends."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if cfg.duration_s is None or cfg.speedup <= 1.0:
        return now
    sim_span = cfg.duration_s * 1000
    return int(now + sim_span / cfg.speedup - sim_span) - 5_000


@dataclass
class Fleet:
    """The plans and drivers of one run (no I/O: ``build_fleet`` is pure and seeded)."""

    cfg: FleetConfig
    net: RoadNetwork
    customers: list[Customer]
    plans: list[RoutePlan]
    drivers: list[Driver]
    start_ms: int
    driver_seeds: list[int]
    traffic: TrafficModel

    @property
    def day(self) -> date:
        return datetime.fromtimestamp(self.start_ms / 1000, tz=UTC).date()

    def starting_at(self, start_ms: int) -> Fleet:
        """The same plans and drivers (same seeds), with the day starting at ``start_ms``."""
        drivers = [
            _driver(self.cfg, i, plan, self.net, seed, start_ms, self.traffic)
            for i, (plan, seed) in enumerate(zip(self.plans, self.driver_seeds, strict=True))
        ]
        return replace(self, drivers=drivers, start_ms=start_ms)


def _driver(
    cfg: FleetConfig,
    i: int,
    plan: RoutePlan,
    net: RoadNetwork,
    seed: int,
    start_ms: int,
    traffic: TrafficModel,
) -> Driver:
    # drivers leave the depot spread over start_spread_s, so the load is not one wave
    offset = int(random.Random(seed + 1).uniform(0, cfg.start_spread_s) * 1000)
    return Driver(cfg.device_id(i), plan, net, cfg.driving, seed, start_ms + offset, traffic)


def traffic_model(cfg: FleetConfig, net: RoadNetwork) -> TrafficModel:
    """The run's traffic (its own seed: the same roads congest the same way in every run)."""
    return TrafficModel(net, seed=cfg.traffic_seed, driving=cfg.driving, enabled=cfg.traffic)


def fleet_places(cfg: FleetConfig, net: RoadNetwork) -> tuple[list[Customer], list[int]]:
    """The customers and depots of a seed: the same as ``build_fleet``'s."""
    return _places(cfg, net, random.Random(cfg.seed))


def _places(
    cfg: FleetConfig, net: RoadNetwork, rng: random.Random
) -> tuple[list[Customer], list[int]]:
    customers = place_customers(
        net, cfg.customers, random.Random(rng.random()), first_id=CUSTOMER_ID_BASE
    )
    depots = pick_depots(net, cfg.depots, random.Random(rng.random()))
    return customers, depots


def build_fleet(cfg: FleetConfig, start_ms: int, net: RoadNetwork | None = None) -> Fleet:
    """Customers, depots, routes and drivers for a seed; the same seed, the same fleet."""
    net = net or load_network(cfg.network)
    traffic = traffic_model(cfg, net)
    rng = random.Random(cfg.seed)
    customers, depots = _places(cfg, net, rng)
    times = TravelTimes(net)
    plans, drivers, seeds = [], [], []
    for i in range(cfg.drivers):
        seed = rng.randrange(2**31)
        plan = plan_route(
            net,
            times,
            customers,
            random.Random(seed),
            depots,
            min_stops=cfg.min_stops,
            max_stops=cfg.max_stops,
            leg_s=cfg.legs_for(net),
        )
        plans.append(plan)
        seeds.append(seed)
        drivers.append(_driver(cfg, i, plan, net, seed, start_ms, traffic))
    return Fleet(cfg, net, customers, plans, drivers, start_ms, seeds, traffic)


class Reporter(Protocol):
    """What drive_fleet needs of a driver: a simulated one, or one replaying its reports."""

    device_id: str
    start_ms: int
    dropped: int

    def done_at(self, t_ms: int) -> bool: ...
    def report(self, t_ms: int) -> list[Fix]: ...
    def flush(self) -> list[Fix]: ...


def report_times(d: Reporter, interval_ms: int, end_ms: int) -> Iterator[int]:
    """When a driver reports: every interval from a start spread over the first interval (so
    the load is even), until the end or the driver's day is done."""
    t = d.start_ms + random.Random(d.device_id).randrange(max(interval_ms, 1))
    while t <= end_ms and not d.done_at(t):
        yield t
        t += interval_ms


def run_end_ms(fleet: Fleet) -> int:
    duration_s = fleet.cfg.duration_s
    return fleet.start_ms + int(duration_s * 1000) if duration_s is not None else 2**62


@dataclass
class RunStats:
    """How the run went: fixes produced, dropped, sent; how far the senders lagged behind."""

    ticks: int = 0
    dropped: int = 0
    lag_s: list[float] = field(default_factory=list)
    end_ms: int = 0

    def lag_summary(self) -> dict[str, float]:
        if not self.lag_s:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        s = sorted(self.lag_s)
        return {
            "p50": round(s[len(s) // 2], 3),
            "p99": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3),
            "max": round(s[-1], 3),
        }


async def drive_fleet(
    fleet: Fleet,
    sender: Sender,
    clock: SimClock,
    *,
    stop: asyncio.Event | None = None,
    on_fixes: Callable[[list[Fix]], None] | None = None,
    drivers: Sequence[Reporter] | None = None,
) -> RunStats:
    """Every driver reports every ``interval_s`` (simulated) until done, the end, or ``stop``.

    ``drivers`` replaces the fleet's own (``record_reports``' replaying drivers)."""
    cfg = fleet.cfg
    stop = stop or asyncio.Event()
    stats = RunStats()
    end_ms = run_end_ms(fleet)
    interval_ms = int(cfg.interval_s * 1000)

    sleeping: set[asyncio.Future[None]] = set()

    async def sleep_unless_stopped(delay: float) -> bool:
        """Sleep; return False if the run was stopped meanwhile. Costs what asyncio.sleep
        does (a future and a timer): wait_for(stop.wait()) made a task per report."""
        fut = asyncio.get_running_loop().create_future()
        timer = fut.get_loop().call_later(delay, _resolve, fut)
        sleeping.add(fut)
        try:
            await fut
        finally:
            timer.cancel()
            sleeping.discard(fut)
        return not stop.is_set()

    async def run_one(d: Reporter) -> None:
        for t in report_times(d, interval_ms, end_ms):
            if stop.is_set():
                break
            delay = clock.wall_delay_s(t)
            if delay > 0:
                if not await sleep_unless_stopped(delay):
                    break
            else:
                stats.lag_s.append(-delay)
            fixes = d.report(t)
            stats.ticks += 1
            if fixes:
                if on_fixes is not None:
                    on_fixes(fixes)
                await sender.send(fixes)
        rest = d.flush()
        if rest:
            if on_fixes is not None:
                on_fixes(rest)
            await sender.send(rest)
        stats.dropped += d.dropped

    def give_up_soon(task: asyncio.Task[bool]) -> None:
        if not task.cancelled():
            sender.retry_until = time.monotonic() + STOP_RETRY_S
            for fut in sleeping:
                _resolve(fut)

    stopping = asyncio.create_task(stop.wait())
    stopping.add_done_callback(give_up_soon)
    try:
        await asyncio.gather(*(run_one(d) for d in (fleet.drivers if drivers is None else drivers)))
        await sender.close()
    finally:
        stopping.cancel()
    stats.end_ms = min(end_ms, clock.now_ms())
    return stats


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def truth_document(
    fleet: Fleet,
    stats: RunStats,
    driver_ids: dict[str, str],
    routes: dict[str, Any],
    sent: int,
) -> dict[str, Any]:
    """The ground truth of a run as JSON-able data (``routes``: device -> CreatedRoute)."""
    cfg = fleet.cfg
    drivers = []
    for d in fleet.drivers:
        created = routes.get(d.device_id)
        visits = []
        for i, v in enumerate(d.visits):
            visits.append(
                {
                    "visitId": created.visit_ids[i] if created else None,
                    "seq": v.seq,
                    "customerId": v.customer_id,
                    "enterMs": v.enter_ms,
                    "arriveMs": v.arrive_ms,
                    "leaveMs": v.leave_ms,
                    "exitMs": v.exit_ms,
                }
            )
        drivers.append(
            {
                "deviceId": d.device_id,
                "driverId": driver_ids.get(d.device_id),
                "routeId": created.route_id if created else None,
                "visits": visits,
            }
        )
    return {
        "schema": 1,
        "seed": cfg.seed,
        "speedup": cfg.speedup,
        "intervalS": cfg.interval_s,
        "startMs": fleet.start_ms,
        "endMs": stats.end_ms,
        "geofenceRadiusM": cfg.driving.geofence_radius_m,
        "gpsSigmaM": cfg.driving.gps_sigma_m,
        "sent": sent,
        "dropped": stats.dropped,
        "drivers": drivers,
    }


def write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


class PositionLog:
    """True and reported positions of every sent fix, as NDJSON (optional, can be big)."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()

    def __call__(self, fixes: list[Fix]) -> None:
        for f in fixes:
            self._f.write(
                orjson.dumps(
                    {
                        "deviceId": f.device_id,
                        "fixMs": f.fix_ms,
                        "lon": f.true_lon,
                        "lat": f.true_lat,
                        "reportedLon": f.lon,
                        "reportedLat": f.lat,
                        "speedKmh": f.speed_kmh,
                    }
                )
                + b"\n"
            )

    def close(self) -> None:
        self._f.close()
