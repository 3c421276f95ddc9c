"""What the enrichment worker knows for the learned ETA, reloaded from the database now and then.

* the road segments (``road_edges``) as a :class:`geo.eta.RoadIndex`, to cut each route's path
  into pieces on known segments;
* per tenant, the :class:`geo.eta.SpeedProfile` learned from the last weeks of map-matched
  traversals (``edge_speeds_1h``, a continuous aggregate on TimescaleDB);
* per tenant, the median service time at a stop (arrival to departure) of the same weeks.

A tenant learns from its own drivers only. Reloads happen between batches, every
``FLEETPULSE_ETA__PROFILE_RELOAD_S``; a failed reload keeps the previous knowledge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import shapely

from geo.cells import point_to_cell
from geo.eta import PROFILE_CELL_RESOLUTION, RoadIndex, SpeedProfile, SpeedSample
from infrastructure.postgres import Conn, road_edges_signature
from infrastructure.settings import Settings

log = logging.getLogger(__name__)

_ROADS = """
SELECT network, source, target, highway, speed_kmh, ST_AsBinary(geom) AS wkb,
       ST_X(ST_LineInterpolatePoint(geom, 0.5)) AS mid_lon,
       ST_Y(ST_LineInterpolatePoint(geom, 0.5)) AS mid_lat
FROM road_edges
"""

_SAMPLES = """
SELECT s.tenant_id, s.source, s.target,
       ((floor(extract(epoch FROM s.bucket) / 3600)::bigint - 96) % 168)::integer AS hour,
       sum(s.traversals)::bigint AS traversals, sum(s.length_m) AS length_m,
       sum(s.travel_s) AS travel_s
FROM edge_speeds_1h s
WHERE s.bucket >= now() - make_interval(weeks => $1)
GROUP BY 1, 2, 3, 4
"""

_SERVICE = """
SELECT tenant_id,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM departed_at - arrived_at)) AS median_s
FROM planned_visits
WHERE arrived_at IS NOT NULL AND departed_at > arrived_at
  AND arrived_at >= now() - make_interval(weeks => $1)
GROUP BY tenant_id
"""


def road_class(network: str, highway: str) -> str:
    """The class level of the fallback chain: the OSM class within its network."""
    return f"{network}/{highway}"


def profile_cell(lon: float, lat: float) -> int:
    """The H3 cell a piece of road counts in for the cell level of the fallback chain."""
    return point_to_cell(lon, lat, PROFILE_CELL_RESOLUTION)


@dataclass
class EtaKnowledge:
    """Road index, learned profiles and service times, with when they were loaded."""

    planning_speed_ms: float
    min_samples: int
    roads: RoadIndex = field(default_factory=lambda: RoadIndex((), profile_cell))
    profiles: dict[str, SpeedProfile] = field(default_factory=dict)
    service_s: dict[str, float] = field(default_factory=dict)
    version: int = 0  # bumped by every reload: routes' clocks are rebuilt against it
    loaded_at: float = -1.0
    road_attrs: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    roads_signature: tuple[int, str] = (-1, "")  # road_edges' row count and last load
    # nothing learned, the planning speed everywhere: the clock of a route that the tenant's
    # history does not cover, which only spaces the stops after the next one
    planning_only: SpeedProfile = field(init=False)

    def __post_init__(self) -> None:
        self.planning_only = SpeedProfile.empty(self.planning_speed_ms, self.min_samples)

    def profile(self, tenant: str) -> SpeedProfile:
        """What the tenant's drivers taught (the planning-only profile if nothing yet)."""
        return self.profiles.get(tenant, self.planning_only)


class EtaKnowledgeCache:
    """Keeps an :class:`EtaKnowledge` fresh for one worker."""

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings.eta
        self.knowledge = EtaKnowledge(
            settings.enrichment.planning_speed_kmh / 3.6, settings.eta.min_samples
        )

    def service_s(self, tenant: str) -> float:
        return self.knowledge.service_s.get(tenant, self.cfg.service_time_s)

    async def refresh(self, conn: Conn, *, force: bool = False) -> EtaKnowledge:
        """Reload if the last load is older than the reload interval (or ``force``)."""
        k = self.knowledge
        if (
            not force
            and k.loaded_at >= 0
            and time.monotonic() - k.loaded_at < self.cfg.profile_reload_s
        ):
            return k
        try:
            self.knowledge = await load_knowledge(
                conn,
                k.planning_speed_ms,
                self.cfg.min_samples,
                self.cfg.learn_weeks,
                k.version + 1,
                previous=k,
            )
        except Exception:  # keep driving on what we knew; the next batch tries again later
            log.exception("reloading the learned ETA profile failed")
            k.loaded_at = time.monotonic()
        return self.knowledge


async def load_knowledge(
    conn: Conn,
    planning_speed_ms: float,
    min_samples: int,
    weeks: int,
    version: int,
    previous: EtaKnowledge | None = None,
) -> EtaKnowledge:
    """Read road segments, learned speeds and service times.

    The rows are read on the event loop, the index and profiles built on a thread: for a
    region learned over weeks that is seconds of CPU, and a worker whose loop stalls that
    long misses its Kafka heartbeats and is thrown out of its group.
    """
    signature = await road_edges_signature(conn)
    if previous is not None and previous.roads_signature == signature:
        roads = None  # unchanged: the previous index (and every route's pieces) stay
    else:
        roads = await conn.fetch(_ROADS)
    samples = await conn.fetch(_SAMPLES, weeks)
    service = {r["tenant_id"]: float(r["median_s"]) for r in await conn.fetch(_SERVICE, weeks)}
    built = await asyncio.to_thread(
        _build, roads, previous, samples, service, planning_speed_ms, min_samples, version
    )
    built.roads_signature = signature
    return built


def _build(
    road_rows: list[Any] | None,
    previous: EtaKnowledge | None,
    sample_rows: list[Any],
    service: dict[str, float],
    planning_speed_ms: float,
    min_samples: int,
    version: int,
) -> EtaKnowledge:
    if road_rows is None and previous is not None:
        index, attrs = previous.roads, previous.road_attrs
    else:
        index, attrs = _index(road_rows or [])
    by_tenant: dict[str, list[SpeedSample]] = {}
    for r in sample_rows:
        key = (int(r["source"]), int(r["target"]))
        known = attrs.get(key)
        by_tenant.setdefault(r["tenant_id"], []).append(
            SpeedSample(
                key,
                None if known is None else known[0],
                None if known is None else known[1],
                int(r["hour"]),
                float(r["length_m"]),
                float(r["travel_s"]),
                int(r["traversals"]),
            )
        )
    return EtaKnowledge(
        planning_speed_ms,
        min_samples,
        index,
        {
            t: SpeedProfile.learn(samples, planning_speed_ms, min_samples)
            for t, samples in by_tenant.items()
        },
        service,
        version,
        time.monotonic(),
        road_attrs=attrs,
    )


def _index(
    rows: list[Any],
) -> tuple[RoadIndex, dict[tuple[int, int], tuple[str, int]]]:
    """The road index and each segment's (class, cell)."""
    roads = []
    attrs: dict[tuple[int, int], tuple[str, int]] = {}
    for r in rows:
        key = (int(r["source"]), int(r["target"]))
        coords = list(shapely.from_wkb(r["wkb"]).coords)
        # a road class is a class within its network: a city's residential streets and a
        # region's do not share speeds
        highway = road_class(str(r["network"]), str(r["highway"]))
        roads.append((key, highway, float(r["speed_kmh"]) / 3.6, coords))
        attrs[key] = (highway, profile_cell(float(r["mid_lon"]), float(r["mid_lat"])))
    return RoadIndex(roads, profile_cell, {k: cell for k, (_, cell) in attrs.items()}), attrs
