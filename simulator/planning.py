"""Customers on real streets and each driver's day: stops in a sensible order, path along streets.

Customers sit on graph nodes in the middle of a street (not at junctions, where a geofence
would catch every passing car). A route starts at a depot node and visits 8–20 customers,
following the shortest paths (by free-flow time) between consecutive stops. Two ways to pick
and order them:

* a city centre (Helsinki, 1.5 km across): random customers in the order nearest-neighbour
  (by driving time) improved by 2-opt — every leg is short, that is the place;
* a region (Liechtenstein): legs of a given free-flow length (``leg_s``, 5–30 min): each next
  stop is drawn among the customers that far from the current one, so the ETA horizons of
  10–20 min exist at all.

Everything is deterministic for a seed.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

import networkx as nx
import numpy as np
import numpy.typing as npt

from simulator.network import Edge, RoadNetwork


@dataclass(frozen=True, slots=True)
class Customer:
    """A place to visit: a node of the network."""

    id: int
    node: int
    lon: float
    lat: float
    name: str


@dataclass(frozen=True, slots=True)
class Leg:
    """The drive from one stop (or the depot) to the next."""

    nodes: tuple[int, ...]
    edges: tuple[Edge, ...]

    @property
    def length_m(self) -> float:
        return sum(e.length_m for e in self.edges)


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """One driver's day: depot, customers in visiting order and the legs between them."""

    depot: int
    stops: tuple[Customer, ...]
    legs: tuple[Leg, ...]  # legs[i] ends at stops[i]

    def geometry(self) -> list[tuple[float, float]]:
        """The planned path as (lon, lat) coordinates, consecutive duplicates removed."""
        out: list[tuple[float, float]] = []
        for leg in self.legs:
            for e in leg.edges:
                for c in e.coords:
                    if not out or out[-1] != c:
                        out.append(c)
        return out


class TravelTimes:
    """Shortest free-flow driving times and paths between nodes, computed once per source.

    Per source it keeps a distance and a predecessor per node in arrays (about 120 KB on
    Liechtenstein's 10,000 nodes), not every path: 400 customers' full path dicts there took
    gigabytes. Dijkstra runs on integer adjacency lists (~4x networkx's speed: the 404
    sources of 1,000 Liechtenstein routes took networkx ~40 s).
    """

    def __init__(self, net: RoadNetwork) -> None:
        self.net = net
        self._nodes = list(net.graph.nodes)
        self._index = {n: i for i, n in enumerate(self._nodes)}
        index = self._index
        self._adj: list[list[tuple[int, float]]] = [
            [(index[v], float(d["time"])) for v, d in net.graph.adj[u].items()] for u in self._nodes
        ]
        self._time: dict[int, npt.NDArray[np.float64]] = {}
        self._pred: dict[int, npt.NDArray[np.int32]] = {}

    def _from(self, source: int) -> None:
        if source in self._time:
            return
        n = len(self._nodes)
        dist = [math.inf] * n
        pred = [-1] * n
        start = self._index[source]
        dist[start] = 0.0
        heap = [(0.0, start)]
        adj = self._adj
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in adj[u]:
                nd = d + w
                if nd < dist[v]:
                    dist[v] = nd
                    pred[v] = u
                    heapq.heappush(heap, (nd, v))
        self._time[source] = np.array(dist)
        self._pred[source] = np.array(pred, np.int32)

    def time(self, a: int, b: int) -> float:
        self._from(a)
        return float(self._time[a][self._index[b]])

    def times_from(self, a: int, nodes: list[int]) -> list[float]:
        """Free-flow seconds from ``a`` to each of ``nodes``."""
        self._from(a)
        row = self._time[a]
        return [float(row[self._index[n]]) for n in nodes]

    def path(self, a: int, b: int) -> list[int]:
        self._from(a)
        preds, i, start = self._pred[a], self._index[b], self._index[a]
        out = [i]
        while i != start:
            i = int(preds[i])
            if i < 0:
                raise nx.NetworkXNoPath(f"no path from {a} to {b}")
            out.append(i)
        return [self._nodes[j] for j in reversed(out)]


def place_customers(
    net: RoadNetwork, count: int, rng: random.Random, *, first_id: int, min_gap_m: float = 120.0
) -> list[Customer]:
    """Pick up to ``count`` mid-street nodes at least ``min_gap_m`` apart.

    The gap keeps one customer's exit margin (radius + 30 m + 2 × accuracy) clear of the
    next one's circle: a van parked at the next stop must be seen to have left the last.
    Fewer customers come back when the network has no room for more.
    """
    from geo.distance import haversine_m

    candidates = sorted(
        n
        for n in net.graph
        if n not in net.junctions
        and n not in net.signals
        and net.graph.in_degree(n) >= 1
        and net.graph.out_degree(n) >= 1
    )
    rng.shuffle(candidates)
    chosen: list[int] = []
    for n in candidates:
        if len(chosen) >= count:
            break
        lon, lat = net.coords[n]
        if all(haversine_m(lon, lat, *net.coords[c]) >= min_gap_m for c in chosen):
            chosen.append(n)
    out = []
    for n in chosen:
        lon, lat = net.coords[n]
        out.append(Customer(first_id + n, n, lon, lat, f"{_street_name(net, n)} (sim {n})"))
    return out


def _street_name(net: RoadNetwork, node: int) -> str:
    for _, _, d in net.graph.out_edges(node, data=True):
        name = d["edge"].name
        if name:
            return str(name)
    return "Street"


def pick_depots(net: RoadNetwork, count: int, rng: random.Random) -> list[int]:
    """A few depot nodes (vans start there; few depots keep the routing cheap)."""
    return rng.sample(sorted(net.graph.nodes), count)


def order_stops(times: TravelTimes, depot: int, stops: list[Customer]) -> list[Customer]:
    """Nearest neighbour from the depot, then 2-opt on the open path (asymmetric times)."""
    left = list(stops)
    order: list[Customer] = []
    here = depot
    while left:
        nxt = min(left, key=lambda c: (times.time(here, c.node), c.id))
        order.append(nxt)
        left.remove(nxt)
        here = nxt.node

    def cost(seq: list[Customer]) -> float:
        nodes = [depot] + [c.node for c in seq]
        return sum(times.time(a, b) for a, b in zip(nodes, nodes[1:], strict=False))

    best = cost(order)
    improved = True
    while improved:
        improved = False
        for i in range(len(order) - 1):
            for j in range(i + 1, len(order)):
                cand = order[:i] + order[i : j + 1][::-1] + order[j + 1 :]
                c = cost(cand)
                if c < best - 1e-6:
                    order, best, improved = cand, c, True
    return order


def plan_route(
    net: RoadNetwork,
    times: TravelTimes,
    customers: list[Customer],
    rng: random.Random,
    depots: list[int],
    *,
    min_stops: int = 8,
    max_stops: int = 20,
    leg_s: tuple[float, float] | None = None,
) -> RoutePlan:
    """One of the depots and 8–20 distinct customers, ordered, with street paths between them.

    ``leg_s``: each leg's free-flow time within (min, max) seconds where customers allow
    (``chain_stops``); None: random customers, nearest neighbour + 2-opt (``order_stops``).
    """
    count = rng.randint(min(min_stops, len(customers)), min(max_stops, len(customers)))
    if leg_s is None:
        picked = rng.sample(customers, count)
        depot = rng.choice(depots)
        order = order_stops(times, depot, picked)
    else:
        depot = rng.choice(depots)
        order = chain_stops(times, depot, customers, count, rng, leg_s)
    legs = []
    here = depot
    for c in order:
        nodes = times.path(here, c.node)
        legs.append(Leg(tuple(nodes), tuple(net.path_edges(nodes))))
        here = c.node
    return RoutePlan(depot, tuple(order), tuple(legs))


def chain_stops(
    times: TravelTimes,
    depot: int,
    customers: list[Customer],
    count: int,
    rng: random.Random,
    leg_s: tuple[float, float],
) -> list[Customer]:
    """``count`` distinct customers, each drawn among those ``leg_s`` (free-flow) from the last.

    When no unvisited customer is in the range, the one closest to it is taken.
    """
    lo, hi = leg_s
    left = sorted(customers, key=lambda c: c.id)
    order: list[Customer] = []
    here = depot
    for _ in range(min(count, len(left))):
        secs = times.times_from(here, [c.node for c in left])
        fits = [i for i, t in enumerate(secs) if lo <= t <= hi]
        if fits:
            k = rng.choice(fits)
        else:
            k = min(range(len(left)), key=lambda i: max(lo - secs[i], secs[i] - hi))
        order.append(left.pop(k))
        here = order[-1].node
    return order
