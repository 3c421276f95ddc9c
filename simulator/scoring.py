"""Comparing what FleetPulse detected and predicted with the simulator's ground truth.

* **Arrivals**: a visit is *expected* to be arrived when the van's true position entered its
  geofence circle early enough that the detection rules (3 fixes / 15 s inside, then
  ``visit_arrival_dwell_s``) could complete before the end of the run; detected = the visit's
  ``arrived_at`` in ``planned_visits``. A detection more than ``tolerance_s`` from the true
  entry counts as spurious. Precision, recall, and timing error = detected − true entry.
* **Departures**: the same with the true exit from the circle and ``departed_at``.
* **ETA**: every stored position whose ``next_visit_id`` is a visit the van was driving to
  (fix before the true circle entry) gives an error = ``eta_s`` − (true arrival at the stop
  − fix time); mean absolute error by horizon of the true time to go.
* **ETA baselines**, on the same fixes: *today's* ETA (the remaining route distance the
  worker stored, over the effective speed: ``geo.route_progress.SpeedEstimate`` replayed on
  the fixes' speeds, as the worker computed it before the learned ETA) and *free flow* (the
  remaining route walked at each road's free-flow speed, ``geo.eta.RouteClock(free_flow)``).

The visit events on Kafka (``visits.events``) carry the same times as the table; the table is
what is read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from geo.eta import RoadIndex, RouteClock, SpeedProfile
from geo.route_progress import PRIOR_WEIGHT_S, RouteLine, SpeedEstimate, eta_seconds

HORIZONS_S: tuple[tuple[float, float], ...] = (
    (0, 60),
    (60, 120),
    (120, 300),
    (300, 600),
    (600, 1200),
    (1200, 1800),
)
# the stops after the next one: their time to go includes the stops before them
LATER_HORIZONS_S: tuple[tuple[float, float], ...] = (
    (300, 600),
    (600, 1200),
    (1200, 1800),
    (1800, 3600),
    (3600, 7200),
)


@dataclass(frozen=True, slots=True)
class Detected:
    visit_id: str
    arrived_ms: int | None
    departed_ms: int | None


@dataclass(frozen=True, slots=True)
class EtaSample:
    visit_id: str
    fix_ms: int
    eta_s: float
    # the baselines on the same fix (None where they could not be replayed)
    today_s: float | None = None
    free_flow_s: float | None = None


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


async def fetch_detected(conn: asyncpg.Connection, route_ids: list[str]) -> list[Detected]:
    rows = await conn.fetch(
        """SELECT id::text AS id, arrived_at, departed_at FROM planned_visits
           WHERE route_id = ANY($1::uuid[])""",
        route_ids,
    )
    return [Detected(r["id"], _ms(r["arrived_at"]), _ms(r["departed_at"])) for r in rows]


_ETA_FIXES = """
SELECT driver_id::text AS driver, route_id::text AS route, next_visit_id::text AS visit,
       (extract(epoch FROM fix_time) * 1000)::bigint AS t_ms, lon, lat, speed_kmh,
       distance_to_next_m, eta_s
FROM positions
WHERE driver_id = ANY($1::uuid[])
  AND fix_time >= to_timestamp($2 / 1000.0) AND fix_time <= to_timestamp($3 / 1000.0)
ORDER BY driver_id, fix_time
"""

_ROUTES = """
SELECT r.id::text AS route, ST_AsGeoJSON(r.planned_geom) AS geom,
       array_agg(v.id::text ORDER BY v.sequence_number) AS visits,
       array_agg(c.lng ORDER BY v.sequence_number) AS lons,
       array_agg(c.lat ORDER BY v.sequence_number) AS lats
FROM routes r JOIN planned_visits v ON v.route_id = r.id JOIN customers c ON c.id = v.customer_id
WHERE r.id = ANY($1::uuid[]) AND r.planned_geom IS NOT NULL
GROUP BY r.id
"""

_ROADS = """
SELECT source, target, highway, speed_kmh, ST_AsGeoJSON(geom) AS geom FROM road_edges
"""


async def _free_flow_clocks(
    conn: asyncpg.Connection, route_ids: list[str], planning_speed_ms: float
) -> dict[str, tuple[RouteLine, RouteClock, list[str]]]:
    """Each route's line and a clock at the roads' free-flow speeds, with its visits."""
    roads = [
        (
            (int(r["source"]), int(r["target"])),
            str(r["highway"]),
            float(r["speed_kmh"]) / 3.6,
            [tuple(c) for c in orjson.loads(r["geom"])["coordinates"]],
        )
        for r in await conn.fetch(_ROADS)
    ]
    index = RoadIndex(roads, cell_of=lambda lon, lat: 0)
    empty = SpeedProfile.empty(planning_speed_ms)
    out = {}
    for r in await conn.fetch(_ROUTES, route_ids):
        coords = [(float(x), float(y)) for x, y in orjson.loads(r["geom"])["coordinates"]]
        stops = list(zip(r["lons"], r["lats"], strict=True))
        line = RouteLine.from_lonlat(coords, stops)
        clock = RouteClock(index.route_roads(line.lonlat, line.cum), empty, free_flow=True)
        out[r["route"]] = (line, clock, list(r["visits"]))
    return out


async def fetch_etas(
    conn: asyncpg.Connection,
    driver_ids: list[str],
    start_ms: int,
    end_ms: int,
    *,
    planning_speed_ms: float = 20 / 3.6,
    half_life_s: float = 300.0,
) -> list[EtaSample]:
    """The stored ETAs, with the two baselines replayed on the same fixes."""
    rows = await conn.fetch(_ETA_FIXES, driver_ids, start_ms, end_ms)
    routes = await _free_flow_clocks(
        conn, sorted({r["route"] for r in rows if r["route"]}), planning_speed_ms
    )
    out: list[EtaSample] = []
    driver = None
    speed = SpeedEstimate()
    last_ms = -1
    progress: float | None = None
    for r in rows:
        if r["driver"] != driver:
            driver, speed, last_ms, progress = r["driver"], SpeedEstimate(), -1, None
        t_ms, remaining = int(r["t_ms"]), r["distance_to_next_m"]
        dt = (t_ms - last_ms) / 1000 if last_ms >= 0 else 60.0
        if t_ms <= last_ms:
            continue  # a late fix: the worker gave it no ETA either
        # today's: the effective speed, observed while driving (not at or by the stop)
        if last_ms >= 0 and remaining is not None and remaining > 60.0:
            observed = (r["speed_kmh"] or 0.0) / 3.6
            speed = speed.observe(observed, dt, half_life_s)
        last_ms = t_ms
        if r["visit"] is None or r["eta_s"] is None or remaining is None:
            continue
        today = eta_seconds(
            remaining, speed.value(planning_speed_ms, PRIOR_WEIGHT_S), planning_speed_ms
        )
        free = None
        route = routes.get(r["route"]) if r["route"] else None
        if route is not None and r["visit"] in route[2]:
            line, clock, visits = route
            along, off = line.locate(
                float(r["lon"]), float(r["lat"]), near_m=progress, window_m=max(150.0, dt * 40)
            )
            if off <= 500.0:
                progress = along
                target = line.stop_along_m[visits.index(r["visit"])]
                free = clock.travel_s(min(along, target), target, t_ms / 1000)
        out.append(EtaSample(r["visit"], t_ms, float(r["eta_s"]), today, free))
    return out


async def count_stored(
    conn: asyncpg.Connection, driver_ids: list[str], start_ms: int, end_ms: int
) -> int:
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM positions WHERE driver_id = ANY($1::uuid[])
               AND fix_time >= to_timestamp($2 / 1000.0)
               AND fix_time <= to_timestamp($3 / 1000.0)""",
            driver_ids,
            start_ms,
            end_ms,
        )
    )


def _summary(errors_s: list[float]) -> dict[str, float | None]:
    if not errors_s:
        return {"n": 0, "mean_abs_s": None, "p50_abs_s": None, "p95_abs_s": None, "max_abs_s": None}
    a = sorted(abs(e) for e in errors_s)
    return {
        "n": len(a),
        "mean_s": round(sum(errors_s) / len(errors_s), 1),
        "mean_abs_s": round(sum(a) / len(a), 1),
        "p50_abs_s": round(a[len(a) // 2], 1),
        "p95_abs_s": round(a[min(len(a) - 1, int(len(a) * 0.95))], 1),
        "max_abs_s": round(a[-1], 1),
    }


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def score(
    truth: dict[str, Any],
    detected: list[Detected],
    etas: list[EtaSample],
    *,
    arrival_dwell_s: float = 60.0,
    enter_min_s: float = 15.0,
    exit_min_s: float = 15.0,
    tolerance_s: float = 120.0,
    outage_s: float = 60.0,
) -> dict[str, Any]:
    """Precision, recall and timing of arrivals and departures; ETA error by horizon."""
    end_ms = int(truth["endMs"])
    interval_ms = int(float(truth["intervalS"]) * 1000)
    # Time after the true event that detection needs: the rule's own dwell plus a few fixes.
    # ... plus the longest silence of the simulated phone (DrivingConfig.dropout_s): an event
    # followed by an outage until the run ends cannot be seen by any detector (a CI run
    # "missed" a departure 98 s before the end, within such a window)
    outage = int(outage_s * 1000)
    arrive_need = int((arrival_dwell_s + enter_min_s) * 1000) + 4 * interval_ms + outage
    depart_need = int(exit_min_s * 1000) + 4 * interval_ms + 30_000 + outage
    by_id = {d.visit_id: d for d in detected}
    truth_visits = _truth_visits(truth)

    def judge(kind: str, true_key: str, det_key: str, need: int) -> dict[str, Any]:
        expected = tp = fp = 0
        errors: list[float] = []
        missed: list[str] = []
        spurious: list[str] = []
        for vid, v in truth_visits.items():
            true_ms = v[true_key]
            det = by_id.get(vid)
            det_ms = getattr(det, det_key) if det else None
            decidable = true_ms is not None and true_ms + need <= end_ms
            undecided = true_ms is not None and not decidable
            if decidable:
                expected += 1
            if det_ms is None:
                if decidable:
                    missed.append(vid)
                continue
            if undecided:
                continue  # detected early enough to be right: neither counted nor blamed
            if true_ms is None or abs(det_ms - true_ms) > tolerance_s * 1000:
                fp += 1
                spurious.append(vid)
                if decidable:
                    missed.append(vid)
                continue
            tp += 1
            errors.append((det_ms - true_ms) / 1000)
        return {
            "expected": expected,
            "detected": tp + fp,
            "true_positives": tp,
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, expected),
            "timing_error": _summary(errors),
            "missed": missed[:20],
            "spurious": spurious[:20],
            "kind": kind,
        }

    arrivals = judge("arrival", "enterMs", "arrived_ms", arrive_need)
    departures = judge("departure", "exitMs", "departed_ms", depart_need)

    eta = _by_horizon(truth_visits, [(s, s.eta_s) for s in etas])
    baselines = {
        name: _by_horizon(truth_visits, [(s, getattr(s, attr)) for s in etas])
        for name, attr in (("today", "today_s"), ("free_flow", "free_flow_s"))
    }
    return {
        "arrivals": arrivals,
        "departures": departures,
        "eta": eta,
        "eta_baselines": baselines,
    }


def score_later_stops(truth: dict[str, Any], etas: list[EtaSample]) -> dict[str, Any]:
    """ETA error of the stops after the next one (``stopEtas`` of the enriched messages,
    the next stop's own entry left out) by horizon: will the last stop make its window."""
    return _by_horizon(_truth_visits(truth), [(s, s.eta_s) for s in etas], LATER_HORIZONS_S)


def later_stop_samples(message: dict[str, Any]) -> list[EtaSample]:
    """The later stops' ETAs of one enriched message (``gps.positions.enriched``)."""
    entries = message.get("stopEtas") or []
    fix_ms = message.get("fixTimeMs")
    if not isinstance(fix_ms, int):
        return []
    return [
        EtaSample(str(e["visitId"]), fix_ms, float(e["etaSeconds"]))
        for e in entries[1:]
        if e.get("visitId") and isinstance(e.get("etaSeconds"), int | float)
    ]


def _truth_visits(truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["visitId"]: v for drv in truth["drivers"] for v in drv["visits"] if v["visitId"]}


def _by_horizon(
    truth_visits: dict[str, dict[str, Any]],
    samples: list[tuple[EtaSample, float | None]],
    horizons: tuple[tuple[float, float], ...] = HORIZONS_S,
) -> dict[str, Any]:
    """ETA error by horizon for one estimator (the samples it could give); a fix inside the
    stop's circle already is left out (its ETA is the stop being served: 0)."""
    buckets: dict[str, list[tuple[float, float]]] = {
        f"{int(lo // 60)}-{int(hi // 60)}min": [] for lo, hi in horizons
    }
    for s, value in samples:
        v = truth_visits.get(s.visit_id)
        if value is None or v is None or v["arriveMs"] is None or v["enterMs"] is None:
            continue
        if s.fix_ms >= v["enterMs"]:
            continue
        ttg = (v["arriveMs"] - s.fix_ms) / 1000
        for lo, hi in horizons:
            if lo <= ttg < hi:
                buckets[f"{int(lo // 60)}-{int(hi // 60)}min"].append((value - ttg, ttg))
    out: dict[str, Any] = {}
    everything: list[tuple[float, float]] = []
    for name, pairs in buckets.items():
        everything += pairs
        out[name] = _eta_summary(pairs)
    out["all"] = _eta_summary(everything)
    return out


def _eta_summary(pairs: list[tuple[float, float]]) -> dict[str, float | int | None]:
    if not pairs:
        return {"n": 0, "mae_s": None, "mean_ttg_s": None, "mae_pct_of_ttg": None}
    mae = sum(abs(e) for e, _ in pairs) / len(pairs)
    ttg = sum(t for _, t in pairs) / len(pairs)
    bias = sum(e for e, _ in pairs) / len(pairs)
    return {
        "n": len(pairs),
        "mae_s": round(mae, 1),
        "bias_s": round(bias, 1),
        "mean_ttg_s": round(ttg, 1),
        "mae_pct_of_ttg": round(100 * mae / ttg, 1) if ttg > 0 and math.isfinite(ttg) else None,
    }
