"""Weeks of past driving for the simulated fleet, so learned speeds exist before a run starts.

Each driver drives one route a day for every day of the ``weeks`` before ``end_day`` (all
seven days: the learned speeds are by time of week, and Sunday's quiet roads are part of it),
leaving the depot at a local time drawn in ``start_hours`` (06:30–11:30 by default, so that
days cover the morning peak, midday and the evening peak). Everything the live simulator
uses is used here too: the network, the fleet's customers and depots (the same seed, the same
places), the planning (legs of 5–30 min on a region), the traffic model with the world's
``traffic_seed`` (the same roads congest the same way as in the live run), the driving model
(lights, junctions, dwell) and the phone (GPS noise, dropouts). Each driver-day has its own
seed, so no two days are the same.

Pure: ``history_days`` yields each driver-day's fixes as arrays; writing them through the
storage path (COPY into ``positions`` with the worker's movement labels) is the caller's
(``api.cli_history``). Kafka is not in the way: weeks of fixes through the receivers and the
enrichment worker would take hours.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from simulator.driving import Driver, VisitTruth
from simulator.fleet import FleetConfig, fleet_places, traffic_model
from simulator.network import RoadNetwork, load_network
from simulator.planning import TravelTimes, plan_route

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """What past to generate: the fleet (drivers, network, seeds, interval) and the days."""

    fleet: FleetConfig = field(default_factory=lambda: FleetConfig(network="liechtenstein"))
    weeks: float = 4.0
    end_day: date | None = None  # the day after the last generated one (default: today, local)
    start_hours: tuple[float, float] = (6.5, 11.5)  # local time a driver leaves the depot

    @property
    def days(self) -> int:
        return max(1, round(self.weeks * 7))


@dataclass(frozen=True, slots=True)
class DriverDay:
    """One driver's fixes of one day (sorted by time, one per fix time) and the truth."""

    device_id: str
    day: date
    t: FloatArray  # epoch seconds
    lon: FloatArray
    lat: FloatArray
    speed_kmh: FloatArray
    course: FloatArray
    accuracy: FloatArray
    visits: list[VisitTruth]


def day_seed(seed: int, device_id: str, day: date) -> int:
    """The seed of one driver-day (plan, driving, phone): stable across processes."""
    return random.Random(f"{seed}:{device_id}:{day.isoformat()}").randrange(2**31)


def history_plan(cfg: HistoryConfig, net: RoadNetwork) -> list[tuple[date, int]]:
    """Every (day, driver index) to generate, oldest day first."""
    end = cfg.end_day or datetime.now(ZoneInfo(net.timezone)).date()
    first = end - timedelta(days=cfg.days)
    return [
        (first + timedelta(days=d), i) for d in range(cfg.days) for i in range(cfg.fleet.drivers)
    ]


def history_days(
    cfg: HistoryConfig,
    net: RoadNetwork | None = None,
    *,
    only: list[tuple[date, int]] | None = None,
) -> Iterator[DriverDay]:
    """Yield the driver-days of ``history_plan`` (or ``only`` those), in that order."""
    fleet = cfg.fleet
    net = net or load_network(fleet.network)
    zone = ZoneInfo(net.timezone)
    traffic = traffic_model(fleet, net)
    customers, depots = fleet_places(fleet, net)
    times = TravelTimes(net)
    interval_ms = int(fleet.interval_s * 1000)
    for day, i in only if only is not None else history_plan(cfg, net):
        device = fleet.device_id(i)
        seed = day_seed(fleet.seed, device, day)
        rng = random.Random(seed)
        plan = plan_route(
            net,
            times,
            customers,
            rng,
            depots,
            min_stops=fleet.min_stops,
            max_stops=fleet.max_stops,
            leg_s=fleet.legs_for(net),
        )
        hour = rng.uniform(*cfg.start_hours)
        local = datetime.combine(day, time(0), zone) + timedelta(hours=hour)
        start_ms = int(local.timestamp() * 1000)
        driver = Driver(device, plan, net, fleet.driving, seed, start_ms, traffic)
        driver.keep_history_ms = 0  # memory: only the current leg is needed
        fixes = []
        t = start_ms
        while not driver.done_at(t):
            fixes += driver.report(t)
            t += interval_ms
        fixes += driver.flush()
        fixes.sort(key=lambda f: f.fix_ms)
        rows = [f for k, f in enumerate(fixes) if k == 0 or f.fix_ms != fixes[k - 1].fix_ms]
        yield DriverDay(
            device,
            day,
            np.array([f.fix_ms / 1000 for f in rows]),
            np.array([f.lon for f in rows]),
            np.array([f.lat for f in rows]),
            np.array([f.speed_kmh for f in rows]),
            np.array([f.course for f in rows]),
            np.array([f.accuracy for f in rows]),
            driver.visits,
        )
