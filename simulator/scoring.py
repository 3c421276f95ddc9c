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

The visit events on Kafka (``visits.events``) carry the same times as the table; the table is
what is read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

HORIZONS_S: tuple[tuple[float, float], ...] = (
    (0, 60),
    (60, 120),
    (120, 300),
    (300, 600),
    (600, 1200),
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


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


async def fetch_detected(conn: asyncpg.Connection, route_ids: list[str]) -> list[Detected]:
    rows = await conn.fetch(
        """SELECT id::text AS id, arrived_at, departed_at FROM planned_visits
           WHERE route_id = ANY($1::uuid[])""",
        route_ids,
    )
    return [Detected(r["id"], _ms(r["arrived_at"]), _ms(r["departed_at"])) for r in rows]


async def fetch_etas(
    conn: asyncpg.Connection, driver_ids: list[str], start_ms: int, end_ms: int
) -> list[EtaSample]:
    rows = await conn.fetch(
        """SELECT next_visit_id::text AS visit, fix_time, eta_s FROM positions
           WHERE driver_id = ANY($1::uuid[])
             AND fix_time >= to_timestamp($2 / 1000.0) AND fix_time <= to_timestamp($3 / 1000.0)
             AND next_visit_id IS NOT NULL AND eta_s IS NOT NULL""",
        driver_ids,
        start_ms,
        end_ms,
    )
    return [EtaSample(r["visit"], int(r["fix_time"].timestamp() * 1000), r["eta_s"]) for r in rows]


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
) -> dict[str, Any]:
    """Precision, recall and timing of arrivals and departures; ETA error by horizon."""
    end_ms = int(truth["endMs"])
    interval_ms = int(float(truth["intervalS"]) * 1000)
    # Time after the true event that detection needs: the rule's own dwell plus a few fixes.
    arrive_need = int((arrival_dwell_s + enter_min_s) * 1000) + 4 * interval_ms
    depart_need = int(exit_min_s * 1000) + 4 * interval_ms + 30_000
    by_id = {d.visit_id: d for d in detected}
    truth_visits: dict[str, dict[str, Any]] = {}
    for drv in truth["drivers"]:
        for v in drv["visits"]:
            if v["visitId"]:
                truth_visits[v["visitId"]] = v

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

    buckets: dict[str, list[tuple[float, float]]] = {
        f"{int(lo // 60)}-{int(hi // 60)}min": [] for lo, hi in HORIZONS_S
    }
    for s in etas:
        v = truth_visits.get(s.visit_id)
        if v is None or v["arriveMs"] is None or v["enterMs"] is None:
            continue
        if s.fix_ms >= v["enterMs"]:
            continue  # inside the circle already: the ETA is the stop being served (0)
        ttg = (v["arriveMs"] - s.fix_ms) / 1000
        for lo, hi in HORIZONS_S:
            if lo <= ttg < hi:
                buckets[f"{int(lo // 60)}-{int(hi // 60)}min"].append((s.eta_s - ttg, ttg))
    eta: dict[str, Any] = {}
    all_pairs: list[tuple[float, float]] = []
    for name, pairs in buckets.items():
        all_pairs += pairs
        eta[name] = _eta_summary(pairs)
    eta["all"] = _eta_summary(all_pairs)
    return {"arrivals": arrivals, "departures": departures, "eta": eta}


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
