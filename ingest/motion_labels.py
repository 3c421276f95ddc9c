"""The per-fix movement labels in history (0016): restored, corrected and rewritten.

The enrichment worker labels each in-order fix as it goes (``geo.movement.step_motion``,
kept per driver in ``Runtime.motion``). Three things need the stored history as well:

* a decision that reaches back (a trip began at the last fix at rest; a stop began just after
  the last moving fix): ``apply_relabels`` classifies those stored fixes again, in the batch's
  transaction, after its rows were inserted;
* a worker that starts (or takes over a partition) mid-day: ``restore_states`` replays the
  driver's day so far to rebuild the segmentation state;
* a late fix (older than the driver's latest): ``relabel_days`` labels the driver's whole
  day again and rewrites the rows that changed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np

from geo.movement import (
    DAY_S,
    DEFAULT_PARAMS,
    MotionState,
    MovementParams,
    Relabel,
    classify_step,
    label_fixes,
)
from infrastructure.postgres import Conn

# the columns of FixLabel.as_row(), in its order
LABEL_COLUMNS = ("step_s", "step_m", "motion", "trip_m", "segment_start", "stop_counted")

_DAY_FIXES = """
SELECT driver_id::text AS driver_id, fix_time, extract(epoch FROM fix_time)::double precision AS t,
       lon, lat, coalesce(speed_kmh, 0)::double precision AS speed,
       step_s, step_m, motion, trip_m, segment_start, stop_counted
FROM positions p
JOIN unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(driver, lo, hi)
  ON p.driver_id = w.driver AND p.fix_time >= w.lo AND p.fix_time < w.hi
WHERE p.valid
ORDER BY p.driver_id, p.fix_time
"""

_WRITE_LABELS = """
UPDATE positions p
SET step_s = u.step_s, step_m = u.step_m, motion = u.motion, trip_m = u.trip_m,
    segment_start = u.segment_start, stop_counted = u.stop_counted
FROM unnest($1::uuid[], $2::timestamptz[], $3::real[], $4::real[], $5::smallint[],
            $6::real[], $7::smallint[], $8::boolean[])
     AS u(driver_id, fix_time, step_s, step_m, motion, trip_m, segment_start, stop_counted)
WHERE p.driver_id = u.driver_id AND p.fix_time = u.fix_time
"""


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def apply_relabels(
    conn: Conn,
    relabels: Sequence[tuple[str, Relabel]],
    params: MovementParams = DEFAULT_PARAMS,
) -> int:
    """Apply the batch's ``Relabel``s, by driver, to the stored fixes; return rows changed.

    A driver's relabels cover disjoint stretches of time (each starts after the previous
    decision), so the reads and writes of a whole batch are one statement each.
    """
    if not relabels:
        return 0
    drivers = [uuid.UUID(d) for d, _ in relabels]
    rows = await conn.fetch(
        """SELECT w.k, p.fix_time, p.step_s,
                  p.step_m, coalesce(p.speed_kmh, 0)::double precision AS speed
           FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[])
                WITH ORDINALITY AS w(driver, lo, hi, k)
           JOIN positions p ON p.driver_id = w.driver AND p.fix_time > w.lo AND p.fix_time < w.hi
           WHERE p.valid AND p.step_s IS NOT NULL""",
        drivers,
        [_utc(r.after) for _, r in relabels],
        [_utc(r.before) for _, r in relabels],
    )
    out: dict[str, list[object]] = defaultdict(list)
    for row in rows:
        driver, relabel = relabels[row["k"] - 1]
        motion, trip_m = classify_step(
            relabel.to_trip, row["step_s"], row["step_m"], row["speed"], params
        )
        for key, value in (
            ("driver", uuid.UUID(driver)),
            ("fix_time", row["fix_time"]),
            ("motion", int(motion)),
            ("trip_m", trip_m),
        ):
            out[key].append(value)
    if rows:
        await conn.execute(
            """UPDATE positions p
               SET motion = u.motion, trip_m = u.trip_m, segment_start = NULL,
                   stop_counted = false
               FROM unnest($1::uuid[], $2::timestamptz[], $3::smallint[], $4::real[])
                    AS u(driver_id, fix_time, motion, trip_m)
               WHERE p.driver_id = u.driver_id AND p.fix_time = u.fix_time""",
            out["driver"],
            out["fix_time"],
            out["motion"],
            out["trip_m"],
        )
    await conn.execute(
        """UPDATE positions p SET segment_start = u.mark
           FROM unnest($1::uuid[], $2::timestamptz[], $3::smallint[])
                AS u(driver_id, fix_time, mark)
           WHERE p.driver_id = u.driver_id AND p.fix_time = u.fix_time""",
        drivers,
        [_utc(r.mark_t) for _, r in relabels],
        [int(r.mark) for _, r in relabels],
    )
    return len(rows) + len(relabels)


async def _day_rows(
    conn: Conn, windows: Iterable[tuple[str, datetime, datetime]]
) -> dict[str, list[dict[str, object]]]:
    """Return each driver's valid fixes in its [lo, hi) window, in time order."""
    ws = list(windows)
    rows = await conn.fetch(
        _DAY_FIXES, [uuid.UUID(d) for d, _, _ in ws], [lo for _, lo, _ in ws], [hi for *_, hi in ws]
    )
    by_driver: dict[str, list[dict[str, object]]] = defaultdict(list)
    for r in rows:
        by_driver[r["driver_id"]].append(dict(r))
    return by_driver


def _arrays(rows: list[dict[str, object]]) -> tuple[np.ndarray, ...]:
    return tuple(np.array([r[k] for r in rows], float) for k in ("t", "lon", "lat", "speed"))


async def restore_states(
    conn: Conn, first_fix_s: dict[str, float], params: MovementParams = DEFAULT_PARAMS
) -> dict[str, MotionState | None]:
    """Rebuild each driver's segmentation state from its stored fixes of the same UTC day
    before ``first_fix_s[driver]`` (the first fix a worker sees of it)."""
    windows = []
    for driver, first in first_fix_s.items():
        windows.append((driver, _utc(first // DAY_S * DAY_S), _utc(first)))
    found = await _day_rows(conn, windows)
    states: dict[str, MotionState | None] = dict.fromkeys(first_fix_s)
    for driver, rows in found.items():
        t, lon, lat, speed = _arrays(rows)
        _, states[driver] = label_fixes(t, lon, lat, speed, params)
    return states


async def relabel_days(
    conn: Conn,
    driver_days: Iterable[tuple[str, date]],
    params: MovementParams = DEFAULT_PARAMS,
) -> tuple[int, dict[tuple[str, date], MotionState | None]]:
    """Label whole driver-days again from their stored fixes; rewrite the rows that changed.

    Returns the rows rewritten and each day's final state (to continue from, when it is the
    driver's current day).
    """
    pairs = sorted(set(driver_days))
    if not pairs:
        return 0, {}
    windows = []
    for driver, day in pairs:
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
        windows.append((driver, lo, lo + timedelta(days=1)))
    found = await _day_rows(conn, windows)
    finals: dict[tuple[str, date], MotionState | None] = {}
    cols: dict[str, list[object]] = defaultdict(list)
    for driver, day in pairs:
        day_s = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        rows = [r for r in found.get(driver, []) if day_s <= float(r["t"]) < day_s + DAY_S]  # type: ignore[arg-type]
        if not rows:
            finals[(driver, day)] = None
            continue
        t, lon, lat, speed = _arrays(rows)
        labels, finals[(driver, day)] = label_fixes(t, lon, lat, speed, params)
        for i, row in enumerate(rows):
            new = labels.label(i).as_row()
            if _same(row, new):
                continue
            cols["driver"].append(uuid.UUID(driver))
            cols["fix_time"].append(row["fix_time"])
            for key, value in zip(LABEL_COLUMNS, new, strict=True):
                cols[key].append(value)
    if cols:
        await conn.execute(
            _WRITE_LABELS, cols["driver"], cols["fix_time"], *(cols[k] for k in LABEL_COLUMNS)
        )
    return len(cols["fix_time"]), finals


def _same(row: dict[str, object], new: tuple[object, ...]) -> bool:
    """Whether a stored row already carries these labels (reals compared at float32)."""
    for key, value in zip(LABEL_COLUMNS, new, strict=True):
        old = row[key]
        if key in ("step_s", "step_m", "trip_m"):
            if (old is None) != (value is None):
                return False
            if old is not None and np.float32(old) != np.float32(value):  # type: ignore[arg-type]
                return False
        elif key == "stop_counted":
            if bool(old) != bool(value):
                return False
        elif old != value:
            return False
    return True
