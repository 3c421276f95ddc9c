"""Every notebook in notebooks/ executes against this run's databases (both backends), seeded
with the generated demo history and refreshed aggregates, and computes the right things.

After a notebook's own cells, a probe cell (added here, not saved) prints what it computed
(frame shapes, key numbers) as JSON; each notebook's check compares that with what the
stored data say, computed here independently (raw positions, SQL, pyproj, the API). The
other modules write to the same databases (late fixes, other days), so expectations are
computed at test time, never pinned."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import h3
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from pyproj import Geod

from analytics.demo import DAY1, DAY2, JANE, JOHN, build_demo_history, utc
from analytics.refresh import refresh
from tests.conftest import Backend, settings_env
from tests.integration.speeds_support import (
    LearnedGrid,
    build_learned_grid,
    chain_levels,
    class_profile,
    segment_speeds,
    traversal_sums,
)

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
TENANT = "tenant-1"
DAY_START, DAY_END = utc(DAY1), utc(DAY2)
PROBE_MARK = "__probe__"
GEOD = Geod(ellps="WGS84")
# learned speeds for notebooks/learned_speeds: a street grid of its own, driven on the
# Wednesday of the week before last by two of the tenant's drivers
LEARNED = LearnedGrid(
    "notebook-grid",
    -25.0,
    -3.0,
    2,
    ((TENANT, JOHN, "DEV001", 21), (TENANT, JANE, "DEV002", 22)),
    1_000_000,
)
LEARNED_MIN_SAMPLES = 2  # the notebook's FLEETPULSE_ETA__MIN_SAMPLES: every level occurs


@pytest.fixture(scope="module")
async def seeded(backend: Backend) -> None:
    async with backend.pool.acquire() as conn:
        await build_demo_history(conn)
        await refresh(conn, now=utc(DAY2, 23), late_window=timedelta(hours=2))
        await build_learned_grid(conn, LEARNED)


async def fetch(backend: Backend, query: str, *args: Any) -> list[dict[str, Any]]:
    async with backend.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(query, *args)]


async def day_fixes(backend: Backend, driver_id: str | None = None) -> list[dict[str, Any]]:
    """The tenant's (or a driver's) fixes of DAY1 with the driver's name."""
    return await fetch(
        backend,
        """SELECT p.driver_id::text AS driver_id, d.name, p.lon, p.lat, p.h3_cell, p.step_s
           FROM positions p JOIN drivers d ON d.id = p.driver_id
           WHERE p.tenant_id = $1 AND p.fix_time >= $2 AND p.fix_time < $3
             AND ($4::uuid IS NULL OR p.driver_id = $4)
           ORDER BY p.driver_id, p.fix_time""",
        TENANT,
        DAY_START,
        DAY_END,
        None if driver_id is None else uuid.UUID(driver_id),
    )


def geodesic_m(lon0: float, lat0: float, rows: list[dict[str, Any]]) -> np.ndarray:
    lon = np.array([r["lon"] for r in rows])
    lat = np.array([r["lat"] for r in rows])
    _, _, dist = GEOD.inv(np.full(lon.size, lon0), np.full(lat.size, lat0), lon, lat)
    return np.asarray(dist)


# ---- per notebook: a probe expression (evaluated in the kernel) and its check ----


async def check_fleet_daily_overview(backend: Backend, got: dict[str, Any]) -> None:
    stats = await fetch(
        backend,
        """SELECT driver_id::text AS driver_id, distance_m, stops, visits_completed
           FROM driver_daily_stats WHERE tenant_id = $1 AND day = $2""",
        TENANT,
        DAY1,
    )
    drivers = {r["driver_id"] for r in await day_fixes(backend)}
    assert got["shape"][0] == len(drivers) == 4  # John, Jane and two generated drivers
    assert set(got["drivers"]) == drivers
    assert {"distance_km", "moving_h", "idle_h", "stopped_h", "on_time_share"} <= set(
        got["columns"]
    )
    assert got["distance_km"] == pytest.approx(sum(r["distance_m"] for r in stats) / 1000)
    assert got["distance_km"] > 10  # Jane's scripted day alone drives 10.5 km
    assert got["stops"] == sum(r["stops"] for r in stats)
    assert got["visits_completed"] == sum(r["visits_completed"] for r in stats) > 0


async def check_h3_heatmap(backend: Backend, got: dict[str, Any]) -> None:
    fixes = await day_fixes(backend)
    parents = Counter(h3.cell_to_parent(h3.int_to_str(r["h3_cell"]), 8) for r in fixes)
    assert got["cells"] == len(parents) > 0
    assert got["fixes"] == len(fixes)
    assert got["top_value"] == max(parents.values())
    assert parents[got["top_cell"]] == got["top_value"]
    dwell = sum(r["step_s"] for r in fixes if r["step_s"] is not None and r["step_s"] <= 300)
    assert got["dwell_s"] == pytest.approx(dwell, rel=1e-6)


async def check_driver_day(backend: Backend, got: dict[str, Any]) -> None:
    planned = await fetch(
        backend,
        """SELECT driver_id::text AS driver_id, visits_planned FROM driver_daily_stats
           WHERE tenant_id = $1 AND day = $2""",
        TENANT,
        DAY1,
    )
    by_driver = {r["driver_id"]: r["visits_planned"] for r in planned}
    assert by_driver[got["driver_id"]] == max(by_driver.values()) > 0
    assert got["fixes"] == len(await day_fixes(backend, got["driver_id"])) > 0
    assert got["crs"] == 4326
    resp = await backend.client.get(
        f"/api/drivers/{got['driver_id']}/trips",
        params={"date": str(DAY1)},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200
    assert got["trips"] == len(resp.json()["trips"]) > 0
    assert got["stops"] == len(resp.json()["stops"]) > 0
    assert got["visits"] == by_driver[got["driver_id"]]


async def check_eta_accuracy(backend: Backend, got: dict[str, Any]) -> None:
    rows = await fetch(
        backend,
        """SELECT p.eta_s::double precision AS eta,
                  extract(epoch FROM pv.arrived_at - p.fix_time)::double precision AS actual
           FROM positions p JOIN planned_visits pv ON pv.id = p.next_visit_id
           WHERE p.tenant_id = $1 AND p.fix_time >= $2 AND p.fix_time < $3
             AND p.eta_s IS NOT NULL AND pv.arrived_at > p.fix_time""",
        TENANT,
        DAY_START,
        DAY_START + timedelta(days=7),
    )
    assert got["rows"] == len(rows) > 100
    ten = [abs(r["eta"] - r["actual"]) / r["actual"] for r in rows if 540 <= r["actual"] <= 660]
    assert got["ten_n"] == len(ten) > 0
    assert got["ten_mape"] == pytest.approx(float(np.mean(ten)))
    # generated ETAs are the true time to go x lognormal noise (sigma 0.15): MAPE ~ 12 %
    assert 0.05 < got["ten_mape"] < 0.25
    assert got["binned"] == sum(1 for r in rows if 0 < r["actual"] <= 3600)


async def check_spatial_queries(backend: Backend, got: dict[str, Any]) -> None:
    fixes = await day_fixes(backend)
    assert got["shape"] == [len(fixes), 5]
    assert got["per_driver"] == dict(Counter(r["name"] for r in fixes))
    visits = await fetch(
        backend,
        """SELECT d.name, v.sequence_number, c.lng, c.lat, v.driver_id::text AS driver_id
           FROM planned_visits v JOIN customers c ON c.id = v.customer_id
           JOIN drivers d ON d.id = v.driver_id
           WHERE v.tenant_id = $1 AND v.scheduled_date = $2""",
        TENANT,
        DAY1,
    )
    near = {(name, seq): n for name, seq, n in got["near"]}
    assert len(near) == len(visits) > 0  # every visit's customer is where its driver stopped
    for v in visits:
        dist = geodesic_m(
            v["lng"], v["lat"], [r for r in fixes if r["driver_id"] == v["driver_id"]]
        )
        n = near[(v["name"], v["sequence_number"])]
        assert int((dist < 99.9).sum()) <= n <= int((dist < 100.1).sum())
    # the 1 km circle around the day's first fix (buffered in UTM: scale within 0.1 %)
    dist = geodesic_m(*got["centre"], fixes)
    assert sum(got["in_area"].values()) > 0
    for name, n in got["in_area"].items():
        mine = dist[[r["name"] == name for r in fixes]]
        assert int((mine < 997).sum()) <= n <= int((mine < 1002).sum())


async def check_fleet_week_geoparquet(backend: Backend, got: dict[str, Any]) -> None:
    rows = await fetch(
        backend,
        """SELECT driver_id::text AS driver_id, (fix_time AT TIME ZONE 'UTC')::date AS day,
                  count(*) AS fixes, count(*) FILTER (WHERE motion = 1) AS moving
           FROM positions WHERE tenant_id = $1 AND fix_time >= $2 AND fix_time < $3
           GROUP BY 1, 2""",
        TENANT,
        DAY_START,
        DAY_START + timedelta(days=7),
    )
    total = sum(r["fixes"] for r in rows)
    assert got["rows"] == total > 0
    assert {(d, day, n) for d, day, n in got["per_day"]} == {
        (r["driver_id"], str(r["day"]), r["fixes"]) for r in rows
    }
    assert got["moving_share"] == pytest.approx(sum(r["moving"] for r in rows) / total, abs=1e-3)
    assert got["motion_sum"] == pytest.approx(1.0)
    # Jane's scripted DAY1 drives 10.5 km; the path adds the GPS jitter while she stands
    assert 10.5 * 0.97 < got["jane_km"] < 30
    assert got["crs"] == 4326


async def check_learned_speeds(backend: Backend, got: dict[str, Any]) -> None:
    network = LEARNED.network
    assert got["network"] == network and got["crs"] == 4326
    assert got["min_samples"] == LEARNED_MIN_SAMPLES
    assert (got["rush_hour"], got["midday_hour"]) == (LEARNED.rush_hour, LEARNED.midday_hour)
    async with backend.pool.acquire() as conn:
        rows = await traversal_sums(conn, tenant=TENANT, network=network)
        coverage = {
            str(hour): await chain_levels(
                conn, rows, network=network, hour=hour, min_samples=LEARNED_MIN_SAMPLES
            )
            for hour in (LEARNED.rush_hour, LEARNED.midday_hour)
        }
    # the segments coloured at each hour: their traversals and speeds (rounded to 0.1 km/h)
    for key, hour in (("rush", LEARNED.rush_hour), ("midday", LEARNED.midday_hour)):
        want = segment_speeds(rows, network, hour)
        assert set(got[key]) == set(want) and want
        for segment, (n, kmh) in want.items():
            assert got[key][segment][0] == n
            assert got[key][segment][1] == pytest.approx(kmh, abs=0.051)
    # the scripted drives were twice as fast at midday
    assert np.median([v for _, v in got["rush"].values()]) < np.median(
        [v for _, v in got["midday"].values()]
    )
    everything = segment_speeds(rows, network, None)
    assert got["learned"] == len(everything)
    assert got["known"] == sum(1 for n, _ in everything.values() if n >= LEARNED_MIN_SAMPLES)
    profile = {(c, hour): (n, k, v) for c, hour, n, k, v in got["profile"]}
    want_profile = class_profile(rows)
    assert set(profile) == set(want_profile) and len(want_profile) == 4  # 2 classes x 2 hours
    for k, (n, segments, kmh) in want_profile.items():
        assert profile[k][:2] == (n, segments)
        assert profile[k][2] == pytest.approx(kmh, rel=1e-9)
    assert {h: Counter(c) for h, c in got["coverage"].items()} == coverage
    assert all(sum(c.values()) == got["segments"] for c in coverage.values())
    assert {"segment_hour", "segment_scaled", "cell_hour"} <= set(coverage[str(LEARNED.rush_hour)])


Check = Callable[[Backend, dict[str, Any]], Awaitable[None]]
PROBES: dict[str, tuple[str, Check]] = {
    "fleet_daily_overview": (
        """{"shape": list(stats.shape), "drivers": sorted(stats.driver_id),
            "columns": list(stats.columns), "distance_km": float(totals.distance_km),
            "stops": int(totals.stops), "visits_completed": int(totals.visits_completed)}""",
        check_fleet_daily_overview,
    ),
    "h3_heatmap": (
        """{"cells": len(cells), "fixes": float(cells.value.sum()),
            "top_cell": cells.sort_values("value").iloc[-1].cell,
            "top_value": float(cells.value.max()), "dwell_s": float(dwell.value.sum())}""",
        check_h3_heatmap,
    ),
    "driver_day": (
        """{"driver_id": str(driver_id), "fixes": len(fixes), "crs": fixes.crs.to_epsg(),
            "trips": int((segments.type == "trip").sum()),
            "stops": int((segments.type == "stop").sum()), "visits": len(visits)}""",
        check_driver_day,
    ),
    "eta_accuracy": (
        """{"rows": len(eta), "ten_n": len(ten), "ten_mape": float(ten.abs_pct_error.mean()),
            "binned": int(by_horizon["count"].sum())}""",
        check_eta_accuracy,
    ),
    "spatial_queries": (
        """{"shape": list(fixes.shape), "per_driver": {k: int(v) for k, v in
            fixes_per_driver.items()}, "near": [[r.driver, int(r.sequence_number),
            int(r.fixes)] for r in near_customers.itertuples()], "in_area": {r.driver:
            int(r.fixes_in_area) for r in in_area.itertuples()}, "centre": [centre.x,
            centre.y]}""",
        check_spatial_queries,
    ),
    "fleet_week_geoparquet": (
        f"""{{"rows": len(week), "crs": week.crs.to_epsg(), "per_day": [[r.driver_id,
            str(r.day), int(r.fixes)] for r in per_day.itertuples()],
            "jane_km": float(per_day[(per_day.driver_id == "{JANE}")
                                     & (per_day.day.astype(str) == "{DAY1}")].path_km.iloc[0]),
            "motion_sum": float(motion_share.sum()),
            "moving_share": float(motion_share.get("moving", 0.0))}}""",
        check_fleet_week_geoparquet,
    ),
    "learned_speeds": (
        """{"network": NETWORK, "crs": rush.crs.to_epsg(), "min_samples": MIN_SAMPLES,
            "rush_hour": RUSH_HOUR, "midday_hour": MIDDAY_HOUR,
            "rush": {str(i): [int(r.traversals), float(r.speed_kmh)] for i, r in rush.iterrows()},
            "midday": {str(i): [int(r.traversals), float(r.speed_kmh)]
                       for i, r in midday.iterrows()},
            "learned": len(learned), "known": len(known.segment_any),
            "profile": [[r.highway, int(r.hour_of_week), int(r.traversals), int(r.segments),
                         float(r.speed_kmh)] for r in profile.itertuples()],
            "coverage": {str(hour): {k: int(v) for k, v in lv.level.value_counts().items()}
                         for hour, lv in levels.items()},
            "segments": len(network_lines)}""",
        check_learned_speeds,
    ),
}


def test_there_are_notebooks() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert {"fleet_daily_overview", "h3_heatmap", "driver_day", "eta_accuracy"} <= names
    # every notebook's results are checked, not only its execution
    assert names == set(PROBES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
async def test_notebook_executes(
    path: Path, backend: Backend, seeded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this process's environment: point it at this run's database.
    for key, value in settings_env(backend.settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_DAY", str(DAY1))
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_TENANT", TENANT)
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_NETWORK", LEARNED.network)
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_RUSH_HOUR", str(LEARNED.rush_hour))
    monkeypatch.setenv("FLEETPULSE_NOTEBOOK_MIDDAY_HOUR", str(LEARNED.midday_hour))
    monkeypatch.setenv("FLEETPULSE_ETA__MIN_SAMPLES", str(LEARNED_MIN_SAMPLES))
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    own_cells = len(nb.cells)
    expression, check = PROBES[path.stem]
    nb.cells.append(
        nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
            f"import json as _json\nprint({PROBE_MARK!r} + _json.dumps({expression}))"
        )
    )
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    await client.async_execute()  # raises CellExecutionError on the first failing cell
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    executed = [c for c in nb.cells[:own_cells] if c.cell_type == "code"]
    assert executed and all(c.get("execution_count") for c in executed)
    printed = "".join(
        o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("name") == "stdout"
    )
    assert printed.startswith(PROBE_MARK), printed
    await check(backend, json.loads(printed[len(PROBE_MARK) :]))
