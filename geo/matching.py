"""Map matching: which directed road segments a vehicle drove, and when, from noisy fixes.

A hidden Markov model in the manner of Newson & Krumm (2009): the hidden states are points on
road segments near each fix (candidates within ``search_m``), the emission is Gaussian in the
distance from the fix to the candidate, and the transition between candidates of consecutive
fixes is exponential in the difference between the driving distance and the great-circle
distance (|d_route − d_line| / β): a vehicle rarely drives far more than the straight line.
Viterbi picks the most likely sequence; where no candidate can reach the next fix the chain
breaks and starts again (a gap, a tunnel, a road missing from the map).

From the matched points the driven path is rebuilt (shortest paths between them), and the
time at every segment boundary is interpolated along it. A segment driven from its start to
its end is a :class:`Traversal`: the entry and exit times are what learned travel times are
made of. A trip's first and last segments (entered or left midway) are not traversals.

Everything is computed in a local plane (metres) around the network's centre: the networks
this serves span tens of kilometres, where an equirectangular plane errs by well under 1 %.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely

from geo.distance import metres_per_degree

EdgeKey = tuple[int, int]  # (source node, target node) of a directed road segment


@dataclass(frozen=True, slots=True)
class RoadSegment:
    """One directed road segment: its end nodes and its polyline (lon, lat) from source."""

    source: int
    target: int
    coords: tuple[tuple[float, float], ...]

    @property
    def key(self) -> EdgeKey:
        return (self.source, self.target)


@dataclass(frozen=True, slots=True)
class MatchFix:
    """A fix to match: time (epoch ms), position, the phone's accuracy (m) and speed if known."""

    t_ms: int
    lon: float
    lat: float
    accuracy_m: float | None = None
    speed_kmh: float | None = None


@dataclass(frozen=True, slots=True)
class MatchParams:
    """Newson & Krumm's parameters, for phone-grade GPS (σ ≈ 5–15 m) sampled every 1–10 s."""

    sigma_m: float = 10.0  # GPS noise when a fix says nothing about its accuracy
    beta_m: float = 15.0  # scale of |d_route − d_line|
    search_m: float = 50.0  # candidates within this distance of a fix
    max_candidates: int = 4  # 6 cost 60 % more on Liechtenstein and matched no better
    max_speed_ms: float = 55.0  # a transition faster than this is impossible
    # fixes closer than this to the last kept one are dropped: a waiting vehicle's jitter
    # would otherwise be read as driving back and forth (N&K drop fixes within 2σ)
    min_step_m: float = 20.0
    # a fix reporting less than this is a waiting vehicle: its position is only noise
    min_speed_kmh: float = 3.0
    max_gap_s: float = 120.0  # a longer silence breaks the chain
    # a fix this far behind the previous one on the same segment is noise, not reversing
    backward_m: float = 25.0
    # log-probability cost of turning back onto the reverse of the segment just driven: a
    # two-way street's two directions lie at the same place, and without it noise reads
    # as a van doing U-turns
    uturn_penalty: float = 20.0


@dataclass(frozen=True, slots=True)
class Traversal:
    """A segment driven from its start to its end: entry and exit time (epoch ms)."""

    key: EdgeKey
    enter_ms: int
    exit_ms: int

    @property
    def travel_s(self) -> float:
        return (self.exit_ms - self.enter_ms) / 1000


@dataclass(frozen=True, slots=True)
class MatchedPoint:
    """Where a kept fix was placed: the segment's index and the distance along it."""

    t_ms: int
    edge: int
    offset_m: float
    distance_m: float  # from the fix to the road


@dataclass
class MatchResult:
    points: list[MatchedPoint] = field(default_factory=list)
    traversals: list[Traversal] = field(default_factory=list)
    kept: int = 0  # fixes that entered the model after thinning
    breaks: int = 0  # times the chain broke and restarted


class RoadGraph:
    """Segments in a local plane, a spatial index over them and who follows whom."""

    def __init__(self, segments: Sequence[RoadSegment]) -> None:
        if not segments:
            raise ValueError("a road graph needs at least one segment")
        lons = [c[0] for s in segments for c in s.coords]
        lats = [c[1] for s in segments for c in s.coords]
        self.lon0 = (min(lons) + max(lons)) / 2
        self.lat0 = (min(lats) + max(lats)) / 2
        self.kx, self.ky = metres_per_degree(self.lat0)
        self.keys: list[EdgeKey] = [s.key for s in segments]
        self.index: dict[EdgeKey, int] = {k: i for i, k in enumerate(self.keys)}
        self.lines = np.array(
            [shapely.LineString([self.to_xy(lon, lat) for lon, lat in s.coords]) for s in segments]
        )
        self.lengths: list[float] = shapely.length(self.lines).tolist()
        self.sources = [s.source for s in segments]
        self.targets = [s.target for s in segments]
        self.leaving: dict[int, list[int]] = {}
        for i, s in enumerate(segments):
            self.leaving.setdefault(s.source, []).append(i)
        self.tree = shapely.STRtree(self.lines)
        # the plane is the degrees scaled (kx, ky > 0): its corners are the extent's corners
        self.bounds = (*self.to_xy(min(lons), min(lats)), *self.to_xy(max(lons), max(lats)))

    def to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky)

    def covers(self, lon: float, lat: float, margin_m: float = 200.0) -> bool:
        """Whether a point lies within the graph's extent (plus a margin)."""
        x, y = self.to_xy(lon, lat)
        x0, y0, x1, y1 = self.bounds
        return x0 - margin_m <= x <= x1 + margin_m and y0 - margin_m <= y <= y1 + margin_m

    def candidates(
        self, xy: np.ndarray, radius_m: float, limit: int
    ) -> list[list[tuple[int, float, float]]]:
        """Per point: up to ``limit`` (segment, offset along, distance), nearest first."""
        points = shapely.points(xy)
        pidx, gidx = self.tree.query(points, predicate="dwithin", distance=radius_m)
        out: list[list[tuple[int, float, float]]] = [[] for _ in range(len(xy))]
        if len(pidx) == 0:
            return out
        lines, pts = self.lines[gidx], points[pidx]
        dist = shapely.distance(lines, pts)
        along = shapely.line_locate_point(lines, pts)
        for p, g, d, a in zip(
            pidx.tolist(), gidx.tolist(), dist.tolist(), along.tolist(), strict=True
        ):
            out[p].append((g, a, d))
        for found in out:
            found.sort(key=lambda c: c[2])
            del found[limit:]
        return out

    def is_reverse(self, a: int, b: int) -> bool:
        """Whether segment b is segment a driven the other way."""
        return self.sources[a] == self.targets[b] and self.targets[a] == self.sources[b]

    def distances_to(
        self, node: int, targets: frozenset[int], limit_m: float
    ) -> tuple[dict[int, float], dict[int, int]]:
        """Dijkstra from ``node`` until every target is settled or ``limit_m`` is passed:
        the driving distance to each target reached (only those), and the segment by which
        each node on the way was reached."""
        dist = {node: 0.0}
        via: dict[int, int] = {}
        found: dict[int, float] = {}
        left = set(targets)
        heap = [(0.0, node)]
        while heap and left:
            d, n = heapq.heappop(heap)
            if d > dist.get(n, math.inf):
                continue
            if d > limit_m:
                break
            if n in left:
                left.discard(n)
                found[n] = d
            for e in self.leaving.get(n, ()):
                t = self.targets[e]
                nd = d + self.lengths[e]
                if nd < dist.get(t, math.inf) and nd <= limit_m:
                    dist[t] = nd
                    via[t] = e
                    heapq.heappush(heap, (nd, t))
        return found, via


def thin(fixes: Sequence[MatchFix], graph: RoadGraph, params: MatchParams) -> list[MatchFix]:
    kept: list[MatchFix] = []
    last_xy: tuple[float, float] | None = None
    for f in fixes:
        if f.speed_kmh is not None and f.speed_kmh < params.min_speed_kmh:
            continue
        xy = graph.to_xy(f.lon, f.lat)
        if last_xy is None or math.dist(xy, last_xy) >= params.min_step_m:
            kept.append(f)
            last_xy = xy
    return kept


class Routes:
    """Driving distances between candidates of consecutive fixes, with the paths behind them.

    A step searches from each previous candidate's end node until every node where a current
    candidate's segment starts is settled (or the step's bound is passed): the next fix's
    candidates are a few hundred metres away at most, so the search stays small. Searches are
    kept per (node, targets, bound) for the step and for rebuilding the chosen paths.
    """

    def __init__(self, graph: RoadGraph, backward_m: float) -> None:
        self.graph = graph
        self.backward_m = backward_m
        self.cache: dict[
            tuple[int, frozenset[int], float], tuple[dict[int, float], dict[int, int]]
        ] = {}

    def _search(
        self, node: int, targets: frozenset[int], limit_m: float
    ) -> tuple[dict[int, float], dict[int, int]]:
        key = (node, targets, limit_m)
        found = self.cache.get(key)
        if found is None:
            found = self.graph.distances_to(node, targets, limit_m)
            self.cache[key] = found
        return found

    def distance(
        self,
        a: tuple[int, float],
        b: tuple[int, float],
        limit_m: float,
        targets: frozenset[int] | None = None,
    ) -> float:
        """Driving distance from candidate a to candidate b within ``limit_m`` (else inf);
        ``targets``: every start node searched for in the same step (b's among them)."""
        g = self.graph
        ea, oa = a
        eb, ob = b
        if ea == eb and ob >= oa - self.backward_m:  # the same segment, forward (or jitter)
            return max(ob - oa, 0.0)
        rest = g.lengths[ea] - oa
        if rest > limit_m:
            return math.inf
        wanted = targets if targets is not None else frozenset((g.sources[eb],))
        d = self._search(g.targets[ea], wanted, limit_m)[0].get(g.sources[eb])
        return math.inf if d is None else rest + d + ob

    def path(self, a: tuple[int, float], b: tuple[int, float], limit_m: float) -> list[int]:
        """The segments strictly between a's segment and b's (empty when they are adjacent)."""
        g = self.graph
        ea, eb = a[0], b[0]
        if ea == eb and b[1] >= a[1] - self.backward_m:
            return []
        start = g.targets[ea]
        via = self._search(start, frozenset((g.sources[eb],)), limit_m)[1]
        node, out = g.sources[eb], []
        while node != start:
            e = via[node]
            out.append(e)
            node = g.sources[e]
        out.reverse()
        return out


def match(
    graph: RoadGraph, fixes: Sequence[MatchFix], params: MatchParams = MatchParams()
) -> MatchResult:
    """Match one vehicle's fixes (in time order) and return the points and full traversals."""
    result = MatchResult()
    kept = thin(sorted(fixes, key=lambda f: f.t_ms), graph, params)
    result.kept = len(kept)
    if len(kept) < 2:
        return result
    xy = np.array([graph.to_xy(f.lon, f.lat) for f in kept])
    cands = graph.candidates(xy, params.search_m, params.max_candidates)
    routes = Routes(graph, params.backward_m)
    runs: list[list[tuple[int, tuple[int, float], float]]] = []  # (fix index, cand, distance)

    # Viterbi over runs of fixes that stay connected
    prev: list[tuple[int, float, float]] = []
    score: list[float] = []
    back: list[list[int]] = []
    run_start = 0

    def close_run(end: int) -> None:
        if not back or end <= run_start:
            return
        k = int(np.argmax(score))
        seq = []
        for i in range(end - 1, run_start - 1, -1):
            c = cands[i][k]
            seq.append((i, (c[0], c[1]), c[2]))
            k = back[i - run_start][k]
        seq.reverse()
        runs.append(seq)

    def emission(i: int, d: float) -> float:
        return emission_score(kept[i], d, params)

    for i in range(len(kept)):
        here = cands[i]
        if not here:
            close_run(i)
            prev, score, back, run_start = [], [], [], i + 1
            result.breaks += 1
            continue
        if not prev:
            prev, run_start = here, i
            score = [emission(i, c[2]) for c in here]
            back = [[-1] * len(here)]
            continue
        dt = (kept[i].t_ms - kept[i - 1].t_ms) / 1000
        line = float(np.hypot(*(xy[i] - xy[i - 1])))
        new_score, new_back = [], []
        targets = frozenset(graph.sources[c[0]] for c in here)
        for c in here:
            best, arg = -math.inf, -1
            for j, p in enumerate(prev):
                if score[j] == -math.inf:
                    continue
                step = transition_score(
                    routes, (p[0], p[1]), (c[0], c[1]), line, dt, params, targets
                )
                if step == -math.inf:
                    continue
                s = score[j] + step
                if s > best:
                    best, arg = s, j
            new_score.append(best + emission(i, c[2]) if arg >= 0 else -math.inf)
            new_back.append(arg)
        if all(s == -math.inf for s in new_score):  # nothing connects: break and restart here
            close_run(i)
            result.breaks += 1
            prev, run_start = here, i
            score = [emission(i, c[2]) for c in here]
            back = [[-1] * len(here)]
            continue
        prev, score = here, new_score
        back.append(new_back)
    close_run(len(kept))

    for seq in runs:
        for i, (e, o), d in seq:
            result.points.append(MatchedPoint(kept[i].t_ms, e, o, d))
        result.traversals += _traversals(graph, routes, kept, xy, seq, params)
    return result


def emission_score(fix: MatchFix, distance_m: float, params: MatchParams) -> float:
    """Log-likelihood (up to a constant) of a fix this far from a candidate: Gaussian noise
    with the fix's own accuracy when it reports one."""
    acc = fix.accuracy_m
    sigma = params.sigma_m if acc is None else min(max(acc, 5.0), 30.0)
    return -0.5 * (distance_m / sigma) ** 2


def transition_score(
    routes: Routes,
    a: tuple[int, float],
    b: tuple[int, float],
    line_m: float,
    dt_s: float,
    params: MatchParams,
    targets: frozenset[int] | None = None,
) -> float:
    """Log-likelihood of driving from candidate a to candidate b between fixes ``line_m``
    apart and ``dt_s`` seconds apart; -inf when it cannot be driven. ``targets``: the start
    nodes of all the step's candidates, searched for together."""
    limit = _search_limit_m(line_m, dt_s, params)
    d = routes.distance(a, b, limit, targets)
    if d == math.inf or dt_s > params.max_gap_s or d > params.max_speed_ms * max(dt_s, 1.0):
        return -math.inf
    score = -abs(d - line_m) / params.beta_m
    if routes.graph.is_reverse(a[0], b[0]):
        score -= params.uturn_penalty
    return score


def _search_limit_m(line_m: float, dt_s: float, params: MatchParams) -> float:
    """How far to search the road network between two fixes: the straight line, plus both
    candidates' offsets from their fixes, plus a detour of 10 β (a path that much longer than
    the line scores e^-10 against one that is not: it never wins); never farther than the
    vehicle could drive in the time between them."""
    reach = line_m + 2 * params.search_m + 10 * params.beta_m
    return min(reach, params.max_speed_ms * max(dt_s, 1.0) + 2 * params.search_m)


def _traversals(
    graph: RoadGraph,
    routes: Routes,
    kept: list[MatchFix],
    xy: np.ndarray,
    seq: list[tuple[int, tuple[int, float], float]],
    params: MatchParams,
) -> list[Traversal]:
    """Entry and exit times of the segments driven whole along one matched run."""
    # (segment, time it was entered or None if entered midway) for the segment being driven
    out: list[Traversal] = []
    current = seq[0][1][0]
    entered: float | None = None
    for (i, a, _), (j, b, _) in zip(seq, seq[1:], strict=False):
        t0, t1 = kept[i].t_ms, kept[j].t_ms
        if a[0] == b[0] and b[1] >= a[1] - params.backward_m:
            continue  # still on the same segment
        # Pieces: rest of a's segment, the whole segments between, the start of b's segment.
        line = float(np.hypot(*(xy[j] - xy[i])))
        middle = routes.path(a, b, _search_limit_m(line, (t1 - t0) / 1000, params))
        pieces = [graph.lengths[a[0]] - a[1]] + [graph.lengths[e] for e in middle] + [b[1]]
        total = sum(pieces)
        if total <= 0:
            continue
        pos = pieces[0]
        boundary_t = t0 + (t1 - t0) * pos / total
        if entered is not None:
            out.append(Traversal(graph.keys[current], round(entered), round(boundary_t)))
        for e, length in zip(middle, pieces[1:-1], strict=True):
            start_t = boundary_t
            pos += length
            boundary_t = t0 + (t1 - t0) * pos / total
            out.append(Traversal(graph.keys[e], round(start_t), round(boundary_t)))
        current, entered = b[0], boundary_t
    return out
