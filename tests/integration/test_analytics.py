"""Analytics against the real databases, each test on TimescaleDB and on plain PostgreSQL
(the ``backend`` fixture): every aggregate equals a direct computation over the raw positions
(incremental path, late data, idempotence, retention and compression), and the routes'
contracts. ``test_analytics_backends.py`` then compares the two backends' answers."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import h3
import numpy as np
import pytest

from analytics.demo import (
    DAY1,
    DAY2,
    JANE,
    JOHN,
    SCRIPT,
    SCRIPT_INTERVAL_S,
    build_demo_history,
    utc,
)
from analytics.generate import DriverSpec, script_day, track_records, write_tracks
from analytics.refresh import ROLLUPS, refresh, refresh_range, sync_policies
from geo.movement import segment_trips, summarize_day
from ingest.motion_labels import relabel_days
from tests.conftest import Backend

BOB = "a1b2c3d4-0003-4000-8000-000000000003"
NOW = utc(DAY2, 23, 0)  # "now" for the incremental refreshes: after the generated days
LATE = timedelta(hours=2)
# The generated days. Other test files write to the same database at the real "now" (months
# later), so every comparison below is limited to this window.
WINDOW = (utc(DAY1) - timedelta(days=1), NOW + timedelta(days=1))


DWELL_CAP_S = 300.0  # cells_1h: longer steps are unknown time, not dwell


@pytest.fixture(scope="module")
async def history(backend: Backend) -> list[DriverSpec]:
    async with backend.pool.acquire() as conn:
        specs = await build_demo_history(conn)
        await conn.execute("DELETE FROM analytics_watermarks")
        await refresh(conn, now=NOW, late_window=LATE)
    return specs


async def raw(conn: Any) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT tenant_id, driver_id, fix_time, lon, lat, speed_kmh, course, h3_cell, valid
           FROM positions WHERE fix_time >= $1 AND fix_time < $2
           ORDER BY driver_id, fix_time""",
        *WINDOW,
    )
    return [dict(r) for r in rows]


def floor(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


async def check_minute_rollup(conn: Any) -> int:
    expected: dict[tuple[Any, datetime], dict[str, Any]] = {}
    for r in await raw(conn):
        key = (r["driver_id"], floor(r["fix_time"], 60))
        e = expected.setdefault(key, {"n": 0, "speeds": [], "last": r})
        e["n"] += 1
        e["speeds"].append(r["speed_kmh"])
        e["last"] = r  # rows are in fix_time order
    got = {
        (r["driver_id"], r["bucket"]): r
        for r in await conn.fetch(
            "SELECT * FROM positions_1m WHERE bucket >= $1 AND bucket < $2", *WINDOW
        )
    }
    assert set(got) == set(expected)
    for key, e in expected.items():
        g = got[key]
        assert g["positions"] == e["n"]
        assert g["last_fix_time"] == e["last"]["fix_time"]
        assert (g["last_lon"], g["last_lat"]) == (e["last"]["lon"], e["last"]["lat"])
        assert g["mean_speed_kmh"] == pytest.approx(float(np.mean(e["speeds"])), rel=1e-6)
        assert g["max_speed_kmh"] == pytest.approx(max(e["speeds"]))
    return len(expected)


async def check_cell_rollup(conn: Any) -> int:
    rows = await raw(conn)
    expected: dict[tuple[str, datetime, int], dict[str, Any]] = {}
    for i, r in enumerate(rows):
        # a fix dwells the time since the same driver's previous fix of the same UTC day
        prev = rows[i - 1] if i > 0 else None
        dwell = 0.0
        if (
            prev is not None
            and prev["driver_id"] == r["driver_id"]
            and prev["fix_time"].date() == r["fix_time"].date()
        ):
            gap = (r["fix_time"] - prev["fix_time"]).total_seconds()
            dwell = gap if gap <= DWELL_CAP_S else 0.0
        cell = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(r["h3_cell"]), 9))
        key = (r["tenant_id"], floor(r["fix_time"], 3600), cell)
        e = expected.setdefault(key, {"n": 0, "drivers": set(), "speed": 0.0, "dwell": 0.0})
        e["n"] += 1
        e["drivers"].add(r["driver_id"])
        e["speed"] += r["speed_kmh"]
        e["dwell"] += dwell
    got = {
        (r["tenant_id"], r["bucket"], r["h3_cell"]): r
        for r in await conn.fetch(
            "SELECT * FROM cells_1h WHERE bucket >= $1 AND bucket < $2", *WINDOW
        )
    }
    assert set(got) == set(expected)
    for key, e in expected.items():
        g = got[key]
        assert g["positions"] == e["n"]
        assert g["drivers"] == len(e["drivers"]) and set(g["driver_ids"]) == e["drivers"]
        assert g["mean_speed_kmh"] == pytest.approx(e["speed"] / e["n"], rel=1e-6)
        assert g["dwell_s"] == pytest.approx(e["dwell"], abs=1e-6)
    return len(expected)


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Independent of geo.movement: the textbook formula, scalar."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


async def check_daily_rollup(conn: Any) -> int:
    by_day: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for r in await raw(conn):
        by_day[(r["driver_id"], r["fix_time"].date())].append(r)
    got = {
        (r["driver_id"], r["day"]): r
        for r in await conn.fetch(
            "SELECT * FROM driver_daily_stats WHERE day >= $1 AND day < $2",
            WINDOW[0].date(),
            WINDOW[1].date(),
        )
    }
    assert set(got) == set(by_day)
    for key, fixes in by_day.items():
        g = got[key]
        t = np.array([f["fix_time"].timestamp() for f in fixes])
        lon = np.array([f["lon"] for f in fixes])
        lat = np.array([f["lat"] for f in fixes])
        spd = np.array([f["speed_kmh"] for f in fixes], dtype=float)
        s = summarize_day(t, lon, lat, spd)
        # distance: the steps inside trips, summed here with an independent formula
        dist = sum(
            haversine(lon[i], lat[i], lon[i + 1], lat[i + 1])
            for seg in s.segments
            if seg.kind == "trip"
            for i in range(seg.start, seg.end)
        )
        assert g["distance_m"] == pytest.approx(dist, rel=1e-3)
        assert g["positions"] == len(fixes)
        assert (g["trips"], g["stops"]) == (s.trips, s.stops)
        assert g["moving_s"] + g["idle_s"] + g["stopped_s"] <= t[-1] - t[0] + 1e-6
        assert g["moving_s"] == pytest.approx(s.moving_s)
        assert g["max_speed_kmh"] == pytest.approx(float(spd.max()))
        visits = await conn.fetchrow(
            """SELECT count(*) AS planned, count(vc.visit_id) AS done,
                      avg(vc.on_time::int) AS on_time
               FROM planned_visits pv LEFT JOIN visit_completions vc ON vc.visit_id = pv.id
               WHERE pv.driver_id = $1 AND pv.scheduled_date = $2""",
            key[0],
            key[1],
        )
        assert g["visits_planned"] == visits["planned"]
        assert g["visits_completed"] == visits["done"]
        if visits["done"]:
            assert g["on_time_share"] == pytest.approx(float(visits["on_time"]))
    return len(by_day)


async def snapshot(conn: Any) -> dict[str, list[Any]]:
    where = {
        "positions_1m": "bucket >= $1 AND bucket < $2",
        "cells_1h": "bucket >= $1 AND bucket < $2",
        "driver_daily_stats": "day >= $1::timestamptz::date AND day < $2::timestamptz::date",
    }
    return {
        name: [
            tuple(r)
            for r in await conn.fetch(
                f"SELECT * FROM {name} WHERE {cond} ORDER BY 1, 2, 3", *WINDOW
            )
        ]
        for name, cond in where.items()
    }


async def test_rollups_equal_direct_computation_incremental_and_late(
    backend: Backend, history: list[DriverSpec]
) -> None:
    async with backend.pool.acquire() as conn:
        assert await check_minute_rollup(conn) > 500
        assert await check_cell_rollup(conn) > 100
        assert await check_daily_rollup(conn) == 12

        before = await snapshot(conn)
        await refresh(conn, now=NOW, late_window=LATE)  # nothing new: same tables
        assert await snapshot(conn) == before

        # Late data: a driver's 40 minutes that end inside the late window arrive now.
        late_start = NOW - timedelta(minutes=70)
        spec = history[4]
        track = script_day(
            SCRIPT[:2], start=late_start, lon0=spec.lon0, lat0=spec.lat0, interval_s=15, seed=3
        )
        keep = track.t < (NOW - timedelta(minutes=1)).timestamp()
        track.t, track.lon, track.lat = track.t[keep], track.lon[keep], track.lat[keep]
        track.speed_kmh, track.course = track.speed_kmh[keep], track.course[keep]
        track.eta_s = None
        await write_tracks(conn, track_records(spec, track))
        # what the worker does when a late fix lands in a day it had labelled
        await relabel_days(conn, {(spec.driver_id, DAY2)})
        await refresh(conn, now=NOW + timedelta(minutes=5), late_window=LATE)
        await check_minute_rollup(conn)
        await check_cell_rollup(conn)
        await check_daily_rollup(conn)

        # Older than the late window: not folded in by the incremental pass ...
        old = script_day([SCRIPT[1]], start=utc(DAY1, 20), lon0=spec.lon0, lat0=spec.lat0, seed=4)
        old.eta_s = None
        await write_tracks(conn, track_records(spec, old))
        await relabel_days(conn, {(spec.driver_id, DAY1)})
        await refresh(conn, now=NOW + timedelta(minutes=10), late_window=LATE)
        with pytest.raises(AssertionError):
            await check_minute_rollup(conn)
        # ... but by an explicit range refresh, which leaves everything exact again.
        for name in ROLLUPS:
            await refresh_range(conn, name, utc(DAY1), utc(DAY2))
        await check_minute_rollup(conn)
        await check_cell_rollup(conn)
        await check_daily_rollup(conn)


async def test_retention_and_compression_follow_the_settings(
    backend: Backend, history: list[DriverSpec]
) -> None:
    """Plain: partitions dropped past the retention and created ahead. TimescaleDB: the
    policies carry the settings' values, the retention job drops an old chunk, and after the
    compression job compressed the generated days every aggregate is still exact."""
    cfg = backend.settings.analytics
    async with backend.pool.acquire() as conn:
        if backend.name == "plain":
            from analytics.refresh import maintain_partitions

            assert await sync_policies(conn, cfg) == []  # nothing to sync without Timescale
            await conn.execute(
                "SELECT fleetpulse_ensure_position_partitions($1, $1)", DAY1 - timedelta(days=400)
            )
            today = datetime.now(UTC).date()
            created, dropped = await maintain_partitions(
                conn, today=today, retention_days=cfg.retention_days, ahead_days=3
            )
            assert dropped >= 1
            parts = {
                r["relname"]
                for r in await conn.fetch(
                    """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                       WHERE i.inhparent = 'positions'::regclass"""
                )
            }
            assert f"positions_p{(DAY1 - timedelta(days=400)):%Y%m%d}" not in parts
            assert f"positions_p{(today + timedelta(days=3)):%Y%m%d}" in parts
            assert f"positions_p{DAY1:%Y%m%d}" in parts  # inside the retention
            again = await maintain_partitions(
                conn, today=today, retention_days=cfg.retention_days, ahead_days=3
            )
            assert again == (0, 0)
            return

        short = cfg.model_copy(update={"retention_days": 300, "compress_after_days": 3})
        changed = await sync_policies(conn, short)
        assert {"positions:policy_retention", "positions:policy_compression"} <= set(changed)
        assert await sync_policies(conn, short) == []  # in step: nothing to do
        refresh_jobs = {
            r["hypertable_name"]: r["config"]
            for r in await conn.fetch(
                """SELECT hypertable_name, config FROM timescaledb_information.jobs
                   WHERE proc_name = 'policy_refresh_continuous_aggregate'"""
            )
        }
        assert set(refresh_jobs) == set(ROLLUPS)
        assert all(c["end_offset"] is None for c in refresh_jobs.values())  # up to now
        jobs = {
            r["proc_name"]: r
            for r in await conn.fetch(
                """SELECT job_id, proc_name, config FROM timescaledb_information.jobs
                   WHERE hypertable_name = 'positions'"""
            )
        }
        assert jobs["policy_retention"]["config"]["drop_after"] == "300 days"
        assert jobs["policy_compression"]["config"]["compress_after"] == "3 days"

        # an old fix makes an old chunk; the retention job drops it and nothing newer
        old = datetime.now(UTC) - timedelta(days=400)
        spec = history[0]
        await conn.execute(
            """INSERT INTO positions (tenant_id, driver_id, device_unique_id, fix_time,
                   received_at, lon, lat, h3_cell)
               VALUES ($1, $2, $3, $4, $4, $5, $6, 0)""",
            spec.tenant_id,
            uuid.UUID(spec.driver_id),
            spec.device_unique_id,
            old,
            spec.lon0,
            spec.lat0,
        )
        before = await conn.fetchval("SELECT count(*) FROM positions")
        await conn.execute(f"CALL run_job({jobs['policy_retention']['job_id']})")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM positions WHERE fix_time < $1", old + timedelta(days=1)
            )
            == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM positions") == before - 1

        await conn.execute(f"CALL run_job({jobs['policy_compression']['job_id']})")
        compressed = await conn.fetchval(
            """SELECT count(*) FROM timescaledb_information.chunks
               WHERE hypertable_name = 'positions' AND is_compressed
                 AND range_end <= $1""",
            utc(DAY2) + timedelta(days=1),
        )
        assert compressed >= 2  # the two generated days
        for name in ROLLUPS:
            await refresh_range(conn, name, utc(DAY1) - timedelta(days=1), NOW + timedelta(days=1))
        await check_minute_rollup(conn)
        await check_cell_rollup(conn)
        await check_daily_rollup(conn)
        # the other tests refresh explicitly (their data are in the past): no background
        # refresh racing them; retention and compression back to the settings
        await sync_policies(conn, cfg)
        for name in ROLLUPS:
            await conn.execute(f"SELECT remove_continuous_aggregate_policy('{name}')")


# ---------------------------------------------------------------------------------- routes


def iso(t: datetime) -> str:
    return t.isoformat()


async def raw_fixes(pg: asyncpg.Pool, driver: str, start: datetime, end: datetime) -> list[Any]:
    async with pg.acquire() as conn:
        return list(
            await conn.fetch(
                """SELECT fix_time, lon, lat FROM positions
                   WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3
                   ORDER BY fix_time""",
                uuid.UUID(driver),
                start,
                end,
            )
        )


@pytest.mark.parametrize(("hours", "source"), [(24, "raw"), (48, "minute")])
async def test_playback_budget_and_exact_ends(
    backend: Backend,
    history: list[DriverSpec],
    hours: int,
    source: str,
) -> None:
    start = utc(DAY1)
    end = start + timedelta(hours=hours)
    resp = await backend.client.get(
        f"/api/drivers/{JOHN}/playback",
        params={"from": iso(start), "to": iso(end), "max_points": 50},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    fixes = await raw_fixes(backend.pool, JOHN, start, end)
    assert body["source"] == source
    assert body["points"] == len(body["t"]) <= 50 < len(fixes)
    assert len(body["lon"]) == len(body["lat"]) == len(body["speed"]) == len(body["heading"])
    for k, fix in ((0, fixes[0]), (-1, fixes[-1])):
        assert body["t"][k] == int(fix["fix_time"].timestamp() * 1000)
        assert body["lon"][k] == round(fix["lon"], 6) and body["lat"][k] == round(fix["lat"], 6)
    assert body["t"] == sorted(body["t"])
    types = {e["type"] for e in body["events"]}
    assert {"visitArrived", "visitDeparted", "visitCompleted"} <= types
    if source == "raw":
        assert {"geofenceEnter", "geofenceExit"} <= types


async def test_playback_never_crosses_tenants_and_rejects_bad_input(
    backend: Backend,
    history: list[DriverSpec],
) -> None:
    good: dict[str, Any] = {"from": iso(utc(DAY1)), "to": iso(utc(DAY1, 12))}
    resp = await backend.client.get(
        f"/api/drivers/{JOHN}/playback", params=good, headers=backend.tenant2_headers
    )
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    resp = await backend.client.get(
        "/api/drivers/not-a-uuid/playback", params=good, headers=backend.tenant1_headers
    )
    assert resp.status_code == 404
    resp = await backend.client.get(f"/api/drivers/{JOHN}/playback", params=good)
    assert resp.status_code == 401
    bad: list[tuple[dict[str, Any], int]] = [
        ({"from": "yesterday", "to": good["to"]}, 400),
        ({"from": good["to"], "to": good["from"]}, 400),
        ({"from": iso(utc(DAY1)), "to": iso(utc(DAY1) + timedelta(days=40))}, 400),
        ({**good, "max_points": 1}, 422),
        ({"to": good["to"]}, 422),
    ]
    for params, status in bad:
        resp = await backend.client.get(
            f"/api/drivers/{JOHN}/playback", params=params, headers=backend.tenant1_headers
        )
        assert resp.status_code == status, (params, resp.text)
        assert set(resp.json()) >= {"error", "message"}


async def test_fleet_playback_in_a_box(
    backend: Backend,
    history: list[DriverSpec],
) -> None:
    params: dict[str, Any] = {
        "from": iso(utc(DAY1, 8)),
        "to": iso(utc(DAY1, 10)),
        "bbox": "-74.2,40.5,-73.7,40.9",
        "max_points": 100,
    }
    resp = await backend.client.get("/api/playback", params=params, headers=backend.tenant1_headers)
    assert resp.status_code == 200, resp.text
    drivers = {d["driverId"] for d in resp.json()["drivers"]}
    tenant1 = {s.driver_id for s in history if s.tenant_id == "tenant-1"}
    assert drivers and drivers <= tenant1
    assert all(len(d["t"]) <= 100 for d in resp.json()["drivers"])
    for bbox in ("1,2,3", "-73,40,-74,41", "a,b,c,d", "-200,40,-73,41"):
        resp = await backend.client.get(
            "/api/playback", params={**params, "bbox": bbox}, headers=backend.tenant1_headers
        )
        assert resp.status_code == 400, bbox
    resp = await backend.client.get(
        "/api/playback",
        params={**params, "to": iso(utc(DAY1, 8) + timedelta(days=2))},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 400


async def test_heatmap_values_and_formats(
    backend: Backend,
    history: list[DriverSpec],
) -> None:
    start, end = utc(DAY1), utc(DAY2)
    async with backend.pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT driver_id, h3_cell FROM positions
               WHERE tenant_id = 'tenant-1' AND fix_time >= $1 AND fix_time < $2""",
            start,
            end,
        )
    counts: dict[str, int] = defaultdict(int)
    drivers: dict[str, set[Any]] = defaultdict(set)
    for r in rows:
        parent = h3.cell_to_parent(h3.int_to_str(r["h3_cell"]), 7)
        counts[parent] += 1
        drivers[parent].add(r["driver_id"])
    base: dict[str, Any] = {"from": iso(start), "to": iso(end), "resolution": 7}
    resp = await backend.client.get(
        "/api/analytics/heatmap",
        params={**base, "metric": "positions"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200, resp.text
    assert {c["cell"]: c["value"] for c in resp.json()["cells"]} == counts
    resp = await backend.client.get(
        "/api/analytics/heatmap",
        params={**base, "metric": "drivers"},
        headers=backend.tenant1_headers,
    )
    assert {c["cell"]: c["value"] for c in resp.json()["cells"]} == {
        k: len(v) for k, v in drivers.items()
    }
    resp = await backend.client.get(
        "/api/analytics/heatmap",
        params={**base, "metric": "dwell", "format": "geojson"},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/geo+json")
    fc = resp.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(counts)
    ring = fc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) >= 7
    for params, status in [
        ({**base, "metric": "altitude"}, 400),
        ({**base, "resolution": 12}, 422),
        ({**base, "from": "2026-13-01"}, 400),
        ({**base, "bbox": "0,0,0,0"}, 400),
        ({**base, "format": "kml"}, 422),
        ({**base, "to": iso(start - timedelta(hours=1))}, 400),
    ]:
        resp = await backend.client.get(
            "/api/analytics/heatmap", params=params, headers=backend.tenant1_headers
        )
        assert resp.status_code == status, (params, resp.text)
        assert "error" in resp.json()


async def test_daily_stats_and_driver_stats(
    backend: Backend,
    history: list[DriverSpec],
) -> None:
    resp = await backend.client.get(
        "/api/analytics/drivers/daily", params={"date": str(DAY1)}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 200, resp.text
    ids = {d["driver_id"] for d in resp.json()["drivers"]}
    assert ids == {s.driver_id for s in history if s.tenant_id == "tenant-1"}
    jane = next(d for d in resp.json()["drivers"] if d["driver_id"] == JANE)
    assert (jane["trips"], jane["stops"]) == (3, 4)
    resp = await backend.client.get(
        f"/api/drivers/{JOHN}/stats",
        params={"from": str(DAY1), "to": str(DAY2)},
        headers=backend.tenant1_headers,
    )
    assert resp.status_code == 200, resp.text
    days = resp.json()["days"]
    assert [d["day"] for d in days] == [str(DAY1), str(DAY2)]
    assert resp.json()["totals"]["distance_m"] == pytest.approx(sum(d["distance_m"] for d in days))
    for path, params, headers, status in [
        ("/api/analytics/drivers/daily", {"date": "03/02/2026"}, backend.tenant1_headers, 400),
        ("/api/analytics/drivers/daily", {}, backend.tenant1_headers, 422),
        (
            f"/api/drivers/{JOHN}/stats",
            {"from": str(DAY2), "to": str(DAY1)},
            backend.tenant1_headers,
            400,
        ),
        (
            f"/api/drivers/{JOHN}/stats",
            {"from": "2026-01-01", "to": "2026-03-01"},
            backend.tenant1_headers,
            400,
        ),
        (
            f"/api/drivers/{JOHN}/stats",
            {"from": str(DAY1), "to": str(DAY2)},
            backend.tenant2_headers,
            404,
        ),
    ]:
        resp = await backend.client.get(path, params=params, headers=headers)
        assert resp.status_code == status, (path, params, resp.text)
        assert "error" in resp.json()


async def test_trips_of_the_scripted_day_match_the_script(
    backend: Backend, history: list[DriverSpec]
) -> None:
    resp = await backend.client.get(
        f"/api/drivers/{JANE}/trips", params={"date": str(DAY1)}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    spec = next(s for s in history if s.driver_id == JANE)
    # the same script, sampling and seed the history was made with: its truth
    track = script_day(
        SCRIPT,
        start=utc(DAY1, 8),
        lon0=spec.lon0,
        lat0=spec.lat0,
        interval_s=SCRIPT_INTERVAL_S,
        seed=7,
    )
    truth_trips = [tr for tr in track.truth if tr[0] == "trip"]
    truth_stops = [tr for tr in track.truth if tr[0] == "stop"]
    assert len(body["trips"]) == len(truth_trips) == 3
    assert len(body["stops"]) == len(truth_stops) == 4
    for got, (_, s, e, dist, _, _) in zip(body["trips"], truth_trips, strict=True):
        assert datetime.fromisoformat(got["startTime"]).timestamp() == pytest.approx(s, abs=60)
        assert datetime.fromisoformat(got["endTime"]).timestamp() == pytest.approx(e, abs=60)
        assert dist * 0.9 < got["distanceM"] < dist * 1.05
    for got, (_, s, e, _, lon, lat) in zip(body["stops"], truth_stops, strict=True):
        assert got["durationS"] == pytest.approx(e - s, abs=120)
        assert haversine(got["lon"], got["lat"], lon, lat) < 25
    # the same segmentation as the library gives on the raw fixes
    direct = segment_trips(track.t, track.lon, track.lat, track.speed_kmh)
    assert len(direct) == len(body["trips"]) + len(body["stops"])
    resp = await backend.client.get(
        f"/api/drivers/{JANE}/trips", params={"date": "tomorrow"}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 400


async def test_exports_of_a_driver_day(
    backend: Backend,
    history: list[DriverSpec],
) -> None:
    fixes = await raw_fixes(backend.pool, JANE, utc(DAY1), utc(DAY2))
    url = f"/api/drivers/{JANE}/export"
    resp = await backend.client.get(
        url, params={"date": str(DAY1), "format": "csv"}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    lines = resp.text.strip().split("\n")
    assert lines[0] == "time,lon,lat,speed_kmh,heading" and len(lines) == len(fixes) + 1
    resp = await backend.client.get(
        url, params={"date": str(DAY1), "format": "gpx"}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 200 and "gpx" in resp.headers["content-type"]
    assert resp.text.count("<trkpt ") == len(fixes)
    resp = await backend.client.get(
        url, params={"date": str(DAY1)}, headers=backend.tenant1_headers
    )
    assert resp.headers["content-type"].startswith("application/geo+json")
    features = resp.json()["features"]
    assert len(features[0]["geometry"]["coordinates"]) == len(fixes)
    assert sum(1 for f in features if f["properties"]["kind"] == "stop") == 4
    resp = await backend.client.get(
        url, params={"date": str(DAY1), "format": "kml"}, headers=backend.tenant1_headers
    )
    assert resp.status_code == 422
    resp = await backend.client.get(
        url, params={"date": str(DAY1)}, headers=backend.tenant2_headers
    )
    assert resp.status_code == 404
