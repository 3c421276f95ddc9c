"""Traffic the simulated vans drive in: slower at the peaks, on main roads, reproducibly.

The true speed on an edge is ``free-flow × factor(edge, time) × the driver's own factor``,
taken when the van enters the edge. ``factor = 1 − susceptibility(edge) × congestion(time)``:

* **congestion(time)**, 0..1, by local time of day (the network's time zone): on working
  days a morning peak (about 07:45) and a longer evening peak (about 17:15), a moderate
  midday plateau, quiet nights; Saturday a broad late-morning hump, Sunday almost nothing.
* **susceptibility(edge)**: how much a road slows down at full congestion: main roads more
  (primary 0.55, secondary 0.45, tertiary 0.35, unclassified 0.2, residential 0.12), times a
  per-edge draw in 0.6–1.4 from the edge's key and the seed (so two primary roads differ, the
  same road stays the same), capped so that no edge falls below ``MIN_FACTOR``.

Nothing is random at run time: the same seed, the same factors. A model that learns speeds by
edge and time of week can recover this; a free-flow model is wrong by up to ~2× at the peaks.
``expected_traversal_s`` is the ground truth a learned model should approach: the mean time
through an edge entered at a time, with the mean driver and the mean light/junction wait.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from simulator.driving import DrivingConfig
from simulator.network import Edge, RoadNetwork, Segment

MIN_FACTOR = 0.3

# Full-congestion slowdown by road class (before the per-edge draw).
CLASS_SUSCEPTIBILITY: dict[str, float] = {
    "motorway": 0.5,
    "trunk": 0.55,
    "primary": 0.55,
    "secondary": 0.45,
    "tertiary": 0.35,
    "unclassified": 0.2,
    "road": 0.2,
    "residential": 0.12,
    "living_street": 0.05,
    "service": 0.05,
}
DEFAULT_SUSCEPTIBILITY = 0.12


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def congestion(weekday: int, hour: float) -> float:
    """How congested the roads are, 0..1, at a local ``hour`` (0..24) of a ``weekday`` (0=Mon)."""
    if weekday < 5:
        level = (
            1.0 * _bump(hour, 7.75, 0.8)
            + 0.9 * _bump(hour, 17.25, 1.1)
            + 0.3 * _bump(hour, 12.5, 2.0)
        )
    elif weekday == 5:
        level = 0.4 * _bump(hour, 11.5, 2.5)
    else:
        level = 0.1 * _bump(hour, 15.0, 3.0)
    return min(level, 1.0)


@dataclass(frozen=True, slots=True)
class TrafficModel:
    """Congestion factors by edge and time for one network and seed (see the module doc)."""

    net: RoadNetwork
    seed: int = 1
    driving: DrivingConfig = DrivingConfig()
    enabled: bool = True
    _susceptibility: dict[tuple[int, int], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.net.timezone)

    def congestion_at(self, t_ms: int) -> float:
        """congestion(time) at an epoch time, in the network's local time."""
        local = datetime.fromtimestamp(t_ms / 1000, self.zone)
        hour = local.hour + local.minute / 60 + local.second / 3600
        return congestion(local.weekday(), hour)

    def susceptibility(self, edge_key: tuple[int, int]) -> float:
        """How much this edge slows down at full congestion (0..1 − MIN_FACTOR)."""
        known = self._susceptibility.get(edge_key)
        if known is not None:
            return known
        e = self.net.edge(*edge_key)
        base = CLASS_SUSCEPTIBILITY.get(e.highway.removesuffix("_link"), DEFAULT_SUSCEPTIBILITY)
        value = min(base * (0.6 + 0.8 * _unit(self.seed, edge_key)), 1.0 - MIN_FACTOR)
        self._susceptibility[edge_key] = value
        return value

    def factor(self, edge_key: tuple[int, int], t_ms: int) -> float:
        """Share of free-flow speed driven on the edge entered at ``t_ms`` (MIN_FACTOR..1)."""
        if not self.enabled:
            return 1.0
        return 1.0 - self.susceptibility(edge_key) * self.congestion_at(t_ms)

    def speed_ms(self, edge: Edge, t_ms: int) -> float:
        """The edge's congested speed for the mean driver (free flow × factor)."""
        return edge.speed_ms * self.factor(edge.key, t_ms)

    def node_delay_s(self, node: int) -> float:
        """Mean wait at a node the van drives through: a red light or giving way."""
        cfg = self.driving
        if node in self.net.signals:
            return cfg.red_light_prob * sum(cfg.red_light_s) / 2
        if node in self.net.junctions:
            return cfg.give_way_prob * sum(cfg.give_way_s) / 2
        return 0.0

    def expected_traversal_s(self, edge: Edge, t_ms: int) -> float:
        """Ground-truth mean seconds through ``edge`` entered at ``t_ms``: its length at the
        congested speed of the mean driver, plus the mean wait at its end node (lights or
        giving way, when the van drives on through it). Acceleration is not included."""
        mean_driver = (self.driving.speed_factor_min + self.driving.speed_factor_max) / 2
        drive = edge.length_m / (self.speed_ms(edge, t_ms) * mean_driver)
        return drive + self.node_delay_s(edge.v)

    def expected_segment_s(self, segment: Segment, t_ms: int) -> float:
        """Ground-truth mean seconds through a ``Segment`` entered at ``t_ms``: its edges one
        after the other, each at the traffic of the time the van reaches it."""
        t = float(t_ms)
        for e in segment.edges:
            t += 1000 * self.expected_traversal_s(e, int(t))
        return (t - t_ms) / 1000


def _unit(seed: int, key: tuple[int, int]) -> float:
    """A uniform 0..1 number fixed by the seed and the edge (stable across processes)."""
    digest = hashlib.blake2b(
        struct.pack("<QQQ", *(x % 2**64 for x in (seed, *key))), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") / 2**64


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
