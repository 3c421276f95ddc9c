"""How a simulated van drives its route: kinematics, pauses, dwell, and what its GPS reports.

The true motion is integrated in 0.5 s steps along each leg: accelerate towards the street's
speed — free flow × the traffic factor of that edge at the time the van enters it
(``simulator.traffic``) × the driver's own factor — brake in time for the next stop point, stop at
red traffic lights and at some junctions, then park at the customer for a dwell of 2–10 min.
Legs are computed lazily, one at a time, so a thousand drivers cost little memory.

The phone sees the true position plus Gaussian noise (σ metres per axis), sometimes loses the
signal (those fixes are never sent) and sometimes buffers fixes and sends them late, in one
burst. Everything draws from the driver's own ``random.Random``: the same seed, the same run.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from geo.distance import haversine_m
from simulator.network import Edge, RoadNetwork
from simulator.planning import Leg, RoutePlan

if TYPE_CHECKING:
    from simulator.traffic import TrafficModel

DT_S = 0.5
CRAWL_MS = 0.5  # never creep slower than this towards a stop point
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class DrivingConfig:
    """Knobs of the driving and GPS model (simulated seconds and metres)."""

    dwell_min_s: float = 120.0
    dwell_max_s: float = 600.0
    accel_min: float = 1.0  # m/s²
    accel_max: float = 2.0
    decel: float = 2.5
    speed_factor_min: float = 0.85
    speed_factor_max: float = 1.05
    red_light_prob: float = 0.5
    red_light_s: tuple[float, float] = (5.0, 40.0)
    give_way_prob: float = 0.25
    give_way_s: tuple[float, float] = (2.0, 8.0)
    gps_sigma_m: float = 8.0
    dropout_prob: float = 0.003  # per fix: the signal is lost for dropout_s
    dropout_s: tuple[float, float] = (15.0, 60.0)
    buffer_prob: float = 0.003  # per fix: fixes are held for buffer_s, then sent at once
    buffer_s: tuple[float, float] = (20.0, 90.0)
    geofence_radius_m: float = 40.0


@dataclass(frozen=True, slots=True)
class TrueState:
    t_ms: int
    lon: float
    lat: float
    speed_ms: float
    course: float


@dataclass(frozen=True, slots=True)
class Fix:
    """What the phone reports (noisy), with the truth it came from."""

    device_id: str
    fix_ms: int
    lon: float
    lat: float
    speed_kmh: float
    course: float
    accuracy: float
    true_lon: float
    true_lat: float


@dataclass
class VisitTruth:
    """When the van really reached and left a stop, and crossed its geofence circle."""

    seq: int
    customer_id: int
    enter_ms: int | None = None  # true position entered the geofence circle (last entry)
    arrive_ms: int | None = None  # stopped at the customer
    leave_ms: int | None = None  # drove off
    exit_ms: int | None = None  # true position left the circle


@dataclass
class _Segment:
    """Samples of one phase: a drive along a leg (positions along it) or a dwell."""

    t_ms: list[int]
    s_m: list[float]
    v_ms: list[float]
    xy: list[tuple[float, float]]  # polyline in local metres
    cum: list[float]  # cumulative length at each polyline vertex
    lon0: float
    lat0: float


def _local(lon0: float, lat0: float, lon: float, lat: float) -> tuple[float, float]:
    return (
        (lon - lon0) * M_PER_DEG_LAT * math.cos(math.radians(lat0)),
        (lat - lat0) * M_PER_DEG_LAT,
    )


def _lonlat(lon0: float, lat0: float, x: float, y: float) -> tuple[float, float]:
    return lon0 + x / (M_PER_DEG_LAT * math.cos(math.radians(lat0))), lat0 + y / M_PER_DEG_LAT


class Driver:
    """One simulated van: its plan, its true motion over time and its phone."""

    def __init__(
        self,
        device_id: str,
        plan: RoutePlan,
        net: RoadNetwork,
        cfg: DrivingConfig,
        seed: int,
        start_ms: int,
        traffic: TrafficModel | None = None,
    ) -> None:
        self.device_id = device_id
        self.traffic = traffic
        self.plan = plan
        self.net = net
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.gps_rng = random.Random(seed ^ 0x5EED)
        self.accel = self.rng.uniform(cfg.accel_min, cfg.accel_max)
        self.speed_factor = self.rng.uniform(cfg.speed_factor_min, cfg.speed_factor_max)
        self.start_ms = start_ms
        self.visits = [VisitTruth(i + 1, c.id) for i, c in enumerate(plan.stops)]
        self._segments: list[_Segment] = []
        self._next_leg = 0
        self._end_ms = start_ms
        self._pending_exit: int | None = None  # visit index whose circle exit is awaited
        self.finished_ms: int | None = None  # when the last dwell ends
        self.keep_history_ms = 600_000  # how far back true_state can look
        lon0, lat0 = net.coords[plan.depot]
        self._park(lon0, lat0, start_ms, start_ms)
        # Phone state
        self._outage_until = -1
        self._buffer_until = -1
        self._buffer: list[Fix] = []
        self.dropped = 0

    # ---- true motion -------------------------------------------------------------------

    def _park(self, lon: float, lat: float, t0: int, t1: int) -> None:
        self._segments.append(
            _Segment([t0, t1], [0.0, 0.0], [0.0, 0.0], [(0.0, 0.0)], [0.0], lon, lat)
        )
        self._end_ms = t1

    def _extend(self, until_ms: int) -> None:
        while self._end_ms < until_ms and self._next_leg < len(self.plan.legs):
            i = self._next_leg
            self._drive(self.plan.legs[i], i)
            self._next_leg += 1
            stop = self.plan.stops[i]
            dwell = self.rng.uniform(self.cfg.dwell_min_s, self.cfg.dwell_max_s)
            arrive = self._end_ms
            leave = arrive + int(dwell * 1000)
            truth = self.visits[i]
            truth.arrive_ms, truth.leave_ms = arrive, leave
            self._park(stop.lon, stop.lat, arrive, leave)
            self._pending_exit = i
        if self._end_ms < until_ms and self._next_leg >= len(self.plan.legs):
            if self.finished_ms is None:
                self.finished_ms = self._end_ms
            last = self._segments[-1]
            self._park(last.lon0, last.lat0, self._end_ms, until_ms + 3_600_000)
        # keep memory bounded: drop segments that ended long ago
        while (
            len(self._segments) > 3 and self._segments[1].t_ms[-1] < until_ms - self.keep_history_ms
        ):
            self._segments.pop(0)

    def _drive(self, leg: Leg, index: int) -> None:
        cfg, rng = self.cfg, self.rng
        if not leg.edges:
            return
        lon0, lat0 = self.net.coords[leg.nodes[0]]
        xy: list[tuple[float, float]] = [(0.0, 0.0)]
        cum = [0.0]
        edge_start: list[float] = []
        speeds: list[float] = []  # free flow × the driver's factor (traffic: when entered)
        stops: list[tuple[float, float]] = []  # (distance along, pause s)
        for k, e in enumerate(leg.edges):
            edge_start.append(cum[-1])
            speeds.append(e.speed_ms * self.speed_factor)
            for c in e.coords[1:]:
                p = _local(lon0, lat0, *c)
                cum.append(cum[-1] + math.dist(xy[-1], p))
                xy.append(p)
            node = e.v
            if k < len(leg.edges) - 1:
                if node in self.net.signals and rng.random() < cfg.red_light_prob:
                    stops.append((cum[-1], rng.uniform(*cfg.red_light_s)))
                elif node in self.net.junctions and rng.random() < cfg.give_way_prob:
                    stops.append((cum[-1], rng.uniform(*cfg.give_way_s)))
        total = cum[-1]
        stops.append((total, 0.0))
        t = float(self._end_ms)
        s, v = 0.0, 0.0
        ts, ss, vs = [int(t)], [0.0], [0.0]
        ei = 0
        limit = self._entering(leg.edges[0], speeds[0], t)
        for target, pause in stops:
            while target - s > 0.05:
                while ei + 1 < len(edge_start) and s >= edge_start[ei + 1]:
                    ei += 1
                    limit = self._entering(leg.edges[ei], speeds[ei], t)
                rem = target - s
                v_target = max(min(limit, math.sqrt(2 * cfg.decel * rem)), CRAWL_MS)
                v = min(v + self.accel * DT_S, v_target) if v < v_target else v_target
                ds = v * DT_S
                if ds >= rem:
                    t += 1000 * rem / max(v, CRAWL_MS)
                    s = target
                else:
                    t += DT_S * 1000
                    s += ds
                ts.append(int(t))
                ss.append(s)
                vs.append(v)
            v = 0.0
            ts.append(int(t))
            ss.append(s)
            vs.append(0.0)
            if pause > 0:
                t += pause * 1000
                ts.append(int(t))
                ss.append(s)
                vs.append(0.0)
        self._segments.append(_Segment(ts, ss, vs, xy, cum, lon0, lat0))
        self._truth_crossings(index)
        self._end_ms = int(t)

    def _entering(self, edge: Edge, speed_ms: float, t_ms: float) -> float:
        """The speed to drive on ``edge`` entered at ``t_ms`` (traffic at that moment)."""
        if self.traffic is None:
            return speed_ms
        return speed_ms * self.traffic.factor(edge.key, int(t_ms))

    def _truth_crossings(self, index: int) -> None:
        """Fill the circle entry of stop ``index`` and the exit of the previous stop."""
        seg = self._segments[-1]
        r = self.cfg.geofence_radius_m
        stop = self.plan.stops[index]

        def inside(j: int) -> bool:
            return haversine_m(*self._seg_lonlat(seg, seg.s_m[j]), stop.lon, stop.lat) <= r

        # the last entry: walk back from the stop while inside (not every sample of the leg)
        k = len(seg.s_m) - 1
        while k > 0 and inside(k - 1):
            k -= 1
        self.visits[index].enter_ms = seg.t_ms[k]
        if self._pending_exit is not None:
            prev = self.plan.stops[self._pending_exit]
            for j, s in enumerate(seg.s_m):
                if haversine_m(*self._seg_lonlat(seg, s), prev.lon, prev.lat) > r:
                    self.visits[self._pending_exit].exit_ms = seg.t_ms[j]
                    break
            self._pending_exit = None

    @staticmethod
    def _seg_lonlat(seg: _Segment, s: float) -> tuple[float, float]:
        i = min(max(bisect.bisect_right(seg.cum, s) - 1, 0), len(seg.xy) - 1)
        if i + 1 < len(seg.xy):
            span = seg.cum[i + 1] - seg.cum[i]
            f = 0.0 if span <= 0 else (s - seg.cum[i]) / span
            (x0, y0), (x1, y1) = seg.xy[i], seg.xy[i + 1]
            x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        else:
            x, y = seg.xy[i]
        return _lonlat(seg.lon0, seg.lat0, x, y)

    def true_state(self, t_ms: int) -> TrueState:
        """Where the van really is at ``t_ms`` (at most ``keep_history_ms`` back)."""
        self._extend(t_ms + 1)
        seg = next(g for g in reversed(self._segments) if g.t_ms[0] <= t_ms)
        j = bisect.bisect_right(seg.t_ms, t_ms) - 1
        j = min(max(j, 0), len(seg.t_ms) - 1)
        if j + 1 < len(seg.t_ms) and seg.t_ms[j + 1] > seg.t_ms[j]:
            f = (t_ms - seg.t_ms[j]) / (seg.t_ms[j + 1] - seg.t_ms[j])
            s = seg.s_m[j] + f * (seg.s_m[j + 1] - seg.s_m[j])
            v = seg.v_ms[j] + f * (seg.v_ms[j + 1] - seg.v_ms[j])
        else:
            s, v = seg.s_m[j], seg.v_ms[j]
        lon, lat = self._seg_lonlat(seg, s)
        ahead = self._seg_lonlat(seg, min(s + 5.0, seg.cum[-1]))
        course = _bearing(lon, lat, *ahead) if ahead != (lon, lat) else 0.0
        return TrueState(t_ms, lon, lat, max(v, 0.0), course)

    def done_at(self, t_ms: int) -> bool:
        """True once the last dwell is over (the van stops reporting)."""
        self._extend(t_ms + 1)
        return self.finished_ms is not None and t_ms > self.finished_ms

    # ---- the phone ---------------------------------------------------------------------

    def report(self, t_ms: int) -> list[Fix]:
        """The fixes the phone sends at ``t_ms``: none (outage, buffering), one, or a burst."""
        cfg, rng = self.cfg, self.gps_rng
        truth = self.true_state(t_ms)
        if t_ms < self._outage_until:
            self.dropped += 1
            return []
        if self._buffer_until < 0 and rng.random() < cfg.dropout_prob:
            self._outage_until = t_ms + int(rng.uniform(*cfg.dropout_s) * 1000)
            self.dropped += 1
            return []
        sigma = cfg.gps_sigma_m
        dx, dy = rng.gauss(0.0, sigma), rng.gauss(0.0, sigma)
        lon, lat = _lonlat(truth.lon, truth.lat, dx, dy)
        fix = Fix(
            self.device_id,
            t_ms,
            round(lon, 7),
            round(lat, 7),
            round(max(0.0, truth.speed_ms * 3.6 + rng.gauss(0.0, 1.0)), 2),
            round(truth.course, 1),
            round(max(3.0, sigma * rng.uniform(1.0, 1.8)), 1),
            truth.lon,
            truth.lat,
        )
        if self._buffer_until < 0 and rng.random() < cfg.buffer_prob:
            self._buffer_until = t_ms + int(rng.uniform(*cfg.buffer_s) * 1000)
        if self._buffer_until >= 0:
            self._buffer.append(fix)
            if t_ms < self._buffer_until:
                return []
            out, self._buffer, self._buffer_until = self._buffer, [], -1
            return out
        return [fix]

    def flush(self) -> list[Fix]:
        """Whatever the phone still holds (at the end of a run)."""
        out, self._buffer, self._buffer_until = self._buffer, [], -1
        return out


def _bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return (math.degrees(math.atan2(x, y)) + 360.0) % 360.0
