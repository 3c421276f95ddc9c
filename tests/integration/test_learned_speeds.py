"""Learned speeds from stored history, on both backends: fixes on a street grid → map matching
(analytics.matching) → edge_traversals → edge_speeds_1h (continuous aggregate / rollup) →
road_speed_profile, the analysts' API, and the worker's knowledge (ingest.eta_knowledge).

The grid lies in the ocean off West Africa (no other network of the test database is near),
its drives are scripted at a known speed per hour, with GPS noise.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from analytics.generate import DriverSpec, Track, track_records, write_tracks
from analytics.matching import MatchSummary, match_history, match_window
from analytics.refresh import refresh_range
from geo.eta import hour_of_week
from ingest.eta_knowledge import load_knowledge, road_class
from tests.conftest import Backend
from tests.unit.test_matching import DLAT, DLON, SPACING_M, drive, grid_segments, random_path

pytestmark = pytest.mark.integration

LON0, LAT0 = -20.0, 1.0
JOHN = "a1b2c3d4-0001-4000-8000-000000000001"
SPEEDS_MS = {8: 6.0, 11: 12.0}  # rush hour and midday, by hour of the day (UTC)


def last_monday() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=today.weekday() + 7)


async def load_grid(conn: Any, network: str, lon0: float = LON0, lat0: float = LAT0) -> None:
    rows = [
        (
            network,
            s.source,
            s.target,
            0,
            "residential",
            None,
            SPACING_M,
            30.0,
            SPACING_M / (30 / 3.6),
            "LINESTRING(" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in s.coords) + ")",
        )
        for s in grid_segments(lon0, lat0)
    ]
    await conn.executemany(
        """INSERT INTO road_edges (network, source, target, osm_way_id, highway, name,
                                   length_m, speed_kmh, cost_s, geom)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, ST_GeomFromText($10, 4326))
           ON CONFLICT DO NOTHING""",
        rows,
    )


def scripted_day(
    start: datetime, rng: random.Random, lon0: float = LON0, lat0: float = LAT0
) -> Track:
    """Three drives in each scripted hour at that hour's speed, fixes every 3 s, σ 8 m."""
    t, lon, lat, speed = [], [], [], []
    for hour, v in SPEEDS_MS.items():
        for run in range(3):
            t0 = start + timedelta(hours=hour, minutes=run * 15)
            samples, _ = drive(random_path(rng, 10), v, int(t0.timestamp() * 1000), lon0, lat0)
            for ms, x, y in samples[::30]:
                t.append(ms / 1000)
                lon.append(x + rng.gauss(0, 8) * DLON / SPACING_M)
                lat.append(y + rng.gauss(0, 8) * DLAT / SPACING_M)
                speed.append(v * 3.6)
    n = len(t)
    return Track(np.array(t), np.array(lon), np.array(lat), np.array(speed), np.zeros(n))


@dataclass
class GridHistory:
    """A scripted Monday on a fresh grid, stored and matched once per backend."""

    network: str
    day: datetime
    first: MatchSummary  # the first pass


@pytest.fixture(scope="module")
async def grid_history(backend: Backend) -> GridHistory:
    """Shared by the tests below, so that each of them also runs alone."""
    network = f"grid-{uuid.uuid4().hex[:8]}"
    day = last_monday()
    async with backend.pool.acquire() as conn:
        await load_grid(conn, network)
        await conn.execute("SELECT fleetpulse_ensure_position_partitions($1, $1)", day.date())
        await conn.execute(
            "DELETE FROM positions WHERE driver_id = $1 AND fix_time >= $2 AND fix_time < $3",
            uuid.UUID(JOHN),
            day,
            day + timedelta(days=1),
        )
        track = scripted_day(day, random.Random(3))
        spec = DriverSpec("tenant-1", JOHN, "DEV001", LON0, LAT0)
        assert await write_tracks(conn, track_records(spec, track)) == track.t.size

        first = await match_window(conn, day, day + timedelta(days=1))
        await refresh_range(conn, "edge_speeds_1h", day, day + timedelta(days=1))
    return GridHistory(network, day, first)


async def test_history_to_learned_speeds(backend: Backend, grid_history: GridHistory) -> None:
    network, day, first = grid_history.network, grid_history.day, grid_history.first
    async with backend.pool.acquire() as conn:
        # (other modules' drivers may have history that day too: count the grid's own)
        stored = await conn.fetchval(
            "SELECT count(*) FROM edge_traversals WHERE network = $1", network
        )
        # six drives of nine blocks: the seven inner blocks of each are driven whole
        assert first.trips >= 6 and stored >= 40, (first.as_dict(), stored)
        # idempotent: the same window again stores nothing twice
        again = await match_window(conn, day, day + timedelta(days=1))
        assert again.traversals == 0
        assert stored == await conn.fetchval(
            "SELECT count(*) FROM edge_traversals WHERE network = $1", network
        )

        rows = await conn.fetch(
            """SELECT hour_of_week, sum(traversals) AS n,
                      sum(traversals * speed_kmh) / sum(traversals) AS kmh
               FROM road_speed_profile WHERE network = $1 AND tenant_id = 'tenant-1'
               GROUP BY hour_of_week ORDER BY hour_of_week""",
            network,
        )
        learned = {r["hour_of_week"]: r["kmh"] for r in rows}
        assert set(learned) == set(SPEEDS_MS)  # Monday: the hour of the week is the hour
        for hour, v in SPEEDS_MS.items():
            assert learned[hour] == pytest.approx(v * 3.6, rel=0.10), learned

        # the worker's view: the tenant's profile knows these segments at these hours
        k = await load_knowledge(conn, 20 / 3.6, 1, 8, 1)  # min_samples 1: a few drives
        profile = k.profiles["tenant-1"]
        keys = {(s.source, s.target) for s in grid_segments(LON0, LAT0)}
        known = [key for key in keys if key in profile.segment_any]
        assert known
        noon = hour_of_week(day.timestamp() + 11 * 3600)
        cls = road_class(network, "residential")
        assert cls in profile.class_hour  # the class level is the class within its network
        speeds = [profile.speed(key, cls, None, noon)[0] for key in known]
        assert float(np.median(speeds)) == pytest.approx(12.0, rel=0.10)
        assert "tenant-2" not in k.profiles or not any(
            key in k.profiles["tenant-2"].segment_any for key in keys
        )


async def test_road_speeds_api(backend: Backend, grid_history: GridHistory) -> None:
    client = backend.client
    noon = hour_of_week(grid_history.day.timestamp() + 11 * 3600)
    r = await client.get(
        "/api/analytics/road-speeds",
        params={
            "hour_of_week": noon,
            "bbox": f"{LON0 - 0.01},{LAT0 - 0.01},{LON0 + 0.02},{LAT0 + 0.02}",
        },
        headers=backend.tenant1_headers,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    features = r.json()["features"]
    assert features, "grid_history stored the grid's traversals"
    kmh = [f["properties"]["speedKmh"] for f in features]
    assert float(np.median(kmh)) == pytest.approx(12.0 * 3.6, rel=0.10)
    assert all(f["geometry"]["type"] == "LineString" for f in features)
    assert all(f["properties"]["freeFlowKmh"] == 30.0 for f in features)
    # another tenant learned nothing from tenant-1's drivers
    other = await client.get(
        "/api/analytics/road-speeds",
        params={
            "hour_of_week": noon,
            "bbox": f"{LON0 - 0.01},{LAT0 - 0.01},{LON0 + 0.02},{LAT0 + 0.02}",
        },
        headers=backend.tenant2_headers,
    )
    assert other.status_code == 200 and other.json()["features"] == []
    # bad input: a clear 4xx, never a 5xx
    for params, status in (
        ({"hour_of_week": 168}, 422),
        ({"hour_of_week": "x"}, 422),
        ({"bbox": "1,2,3"}, 400),
        ({"bbox": "10,0,-10,5"}, 400),
        ({"min_traversals": 0}, 422),
        ({"network": "x" * 65}, 422),
    ):
        bad = await client.get(
            "/api/analytics/road-speeds", params=params, headers=backend.tenant1_headers
        )
        assert bad.status_code == status, (params, bad.text)
        assert "error" in bad.json()
    assert (await client.get("/api/analytics/road-speeds")).status_code == 401


async def test_matching_watermark_moves_once(backend: Backend) -> None:
    """match_history advances its watermark; a second pass at the same time does nothing."""
    async with backend.pool.acquire() as conn:
        now = datetime.now(UTC)
        await match_history(conn, now=now, back_to=timedelta(days=15))
        wm = await conn.fetchval(
            "SELECT watermark FROM analytics_watermarks WHERE name = 'edge_traversals'"
        )
        assert wm == now - timedelta(minutes=2)
        assert await match_history(conn, now=now) == []
