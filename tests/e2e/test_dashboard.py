"""The dashboard in a real browser: Debian's headless Chromium driven by playwright-core
(tests/e2e/dashboard.spec.mjs) against a real api and worker on the local stack.

Positions arrive through the Traccar webhook (history for playback and the heatmap, then a
live fix per driver every second while the browser watches). Screenshots are saved in
test-artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from infrastructure.basemap import ensure_basemap
from infrastructure.postgres import connect
from infrastructure.settings import Settings
from tests.conftest import settings_env
from tests.helpers import eventually, seed_array_item

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
SPEC = Path(__file__).with_name("dashboard.spec.mjs")
JOHN = "a1b2c3d4-0001-4000-8000-000000000001"
JANE = "a1b2c3d4-0002-4000-8000-000000000002"
BOB = "a1b2c3d4-0003-4000-8000-000000000003"  # tenant-2
KEY = {"X-API-Key": "traccar-shared-key"}
HISTORY_FIXES, STEP_MS = 60, 30_000
# Straight lines through New York (the seed's customers): start (lat, lon), step per fix.
# John's history ends halfway to Midtown, his last stop, which the live fixes then approach
# at ~1.4 m/s: 30 min away, so it is still ahead whenever the browser reads its ETA (when
# the history ended at Midtown, he arrived there while the test waited, on a slow run).
TRACKS = {
    "DEV001": ((40.7128, -74.0060), (0.00035, 0.000185)),  # Downtown Warehouse -> Midtown
    "DEV002": ((40.6860, -73.9770), (0.0004, -0.0003)),  # around the Brooklyn Store
    "DEV003": ((40.7282, -73.7949), (0.0003, 0.0003)),  # tenant-2, Queens
}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fix(device: str, k: float, fix_ms: int) -> dict[str, object]:
    """The k-th point of a device's line; the device reports about 10 km/h."""
    (lat, lon), (dlat, dlon) = TRACKS[device]
    item = seed_array_item(device, fix_ms, lat + dlat * k, lon + dlon * k)
    item["speed"] = 5.4  # knots
    return item


def spawn(settings: Settings, logs: Path, port: int) -> list[subprocess.Popen[bytes]]:
    """Start an api (on port, no OsmAnd side port) and one worker; logs in ``logs``."""
    env = settings_env(settings) | {"FLEETPULSE_INGEST__OSMAND_PORT": "0"}
    logs.mkdir(parents=True, exist_ok=True)
    children: list[subprocess.Popen[bytes]] = []
    for name, args in (
        ("api", ["api", "--host", "127.0.0.1", "--port", str(port)]),
        ("worker", ["worker"]),
    ):
        with open(logs / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "api.cli", *args],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return children


@contextlib.asynccontextmanager
async def running(settings: Settings, logs: Path) -> AsyncIterator[str]:
    """An api and a worker as child processes, until the block ends; yields the base URL."""
    port = free_port()
    children = spawn(settings, logs, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:

            async def ready() -> int:
                try:
                    return (await c.get("/api/health/ready")).status_code
                except httpx.TransportError:
                    return 0

            await eventually(ready, lambda s: s == 200, within=60, interval=0.3, what="api ready")
        yield base
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


GRID_NETWORK = "e2e-dashboard-grid"
# Fill colours of the base map's style (api/tiles.py: style), as drawn.
BUILDING = (217, 208, 201)
GREEN = (200, 230, 180)
WATER = (168, 209, 230)
MAJOR_ROAD = (247, 213, 139)


def colour_shares(path: str) -> dict[tuple[int, int, int], float]:
    """The share of a screenshot's pixels drawn in each of the base map's colours (within 8
    per channel: thin lines are antialiased)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16).reshape(-1, 3)
    return {
        c: float((np.abs(pixels - np.array(c)).max(axis=1) <= 8).mean())
        for c in (BUILDING, GREEN, WATER, MAJOR_ROAD)
    }


async def road_grid(settings: Settings) -> int:
    """A street grid over lower Manhattan in ``road_edges`` (the simulator loads Helsinki
    there; the base map draws whatever the view covers); returns the number of edges."""
    west, south, east, north, step = -74.03, 40.68, -73.95, 40.78, 0.004
    rows = []
    for i in range(round((north - south) / step) + 1):
        lat = south + i * step
        rows.append((f"LINESTRING({west} {lat}, {east} {lat})", 6_700.0))
    for i in range(round((east - west) / step) + 1):
        lon = west + i * step
        rows.append((f"LINESTRING({lon} {south}, {lon} {north})", 11_100.0))
    conn = await connect(settings.pg)
    try:
        await conn.executemany(
            """INSERT INTO road_edges (network, source, target, osm_way_id, highway, length_m,
                                       speed_kmh, cost_s, geom)
               VALUES ($1, $2::bigint, $2::bigint + 1, $2::bigint, $3, $4::float8, 30,
                       $4::float8 / 30 * 3.6,
                       ST_GeomFromText($5, 4326))""",
            [
                (GRID_NETWORK, 2 * k, "primary" if k % 5 == 0 else "residential", length, wkt)
                for k, (wkt, length) in enumerate(rows)
            ],
        )
    finally:
        await conn.close()
    return len(rows)


async def drop_road_grid(settings: Settings) -> None:
    conn = await connect(settings.pg)
    try:
        await conn.execute("DELETE FROM road_edges WHERE network = $1", GRID_NETWORK)
    finally:
        await conn.close()


async def prepare(c: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    """History, a route with visits for John, a dispatcher of tenant-1, fresh rollups."""
    creds = {"password": "admin123"}
    resp = await c.post(
        "/api/auth/login", json={"email": "admin@tenant1.com", "tenantId": "tenant-1", **creds}
    )
    assert resp.status_code == 200, resp.text
    admin = {"Authorization": f"Bearer {resp.json()['accessToken']}"}
    dispatcher = {
        "email": "dispatch-e2e@tenant1.com",
        "password": "dispatch-passphrase-1",
        "tenantId": "tenant-1",
    }
    resp = await c.post(
        "/api/auth/register",
        json={
            "email": dispatcher["email"],
            "password": dispatcher["password"],
            "name": "Dana Dispatcher",
            "role": "dispatcher",
        },
        headers=admin,
    )
    assert resp.status_code in (200, 201), resp.text

    now = int(time.time() * 1000)
    first = now - HISTORY_FIXES * STEP_MS
    for device in TRACKS:
        items = [fix(device, k, first + k * STEP_MS) for k in range(HISTORY_FIXES)]
        resp = await c.post("/api/traccar/positions", json=items, headers=KEY)
        assert resp.status_code == 200, resp.text

    (lat, lon), (dlat, dlon) = TRACKS["DEV001"]
    line = [[lon + dlon * k, lat + dlat * k] for k in range(0, HISTORY_FIXES + 140, 10)]
    resp = await c.post(
        "/api/routes",
        json={
            "driverId": JOHN,
            "scheduledDate": datetime.now(UTC).date().isoformat(),
            "name": "Downtown to Midtown",
            "status": "in_progress",
            "geometry": {"type": "LineString", "coordinates": line},
        },
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    route_id = resp.json()["id"]
    for seq, customer in ((1, 1), (2, 2)):
        resp = await c.post(
            "/api/visits",
            json={"routeId": route_id, "customerId": customer, "sequenceNumber": seq},
            headers=admin,
        )
        assert resp.status_code == 201, resp.text

    async def stored() -> int:
        r = await c.get(
            f"/api/drivers/{JOHN}/history",
            params={"from": datetime.fromtimestamp(first / 1000 - 1, UTC).isoformat()},
            headers=admin,
        )
        n: int = r.json()["count"]
        return n

    await eventually(stored, lambda n: n >= HISTORY_FIXES, within=60, what="history stored")
    maintain = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "maintain",
        env=settings_env(settings),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    summary, _ = await asyncio.wait_for(maintain.communicate(), 120)
    assert maintain.returncode == 0 and b"refreshed" in summary, summary
    roads = await road_grid(settings)
    conn = await connect(settings.pg)
    try:
        await ensure_basemap(conn)  # the Helsinki extract: the base map's vector tiles
    finally:
        await conn.close()
    return {"dispatcher": dispatcher, "routeId": route_id, "line": line, "roads": roads}


async def drive_live(c: httpx.AsyncClient, stop: asyncio.Event) -> int:
    """A live fix per driver every second, continuing each line; returns fixes accepted."""
    k, sent = float(HISTORY_FIXES), 0
    while not stop.is_set():
        now = int(time.time() * 1000)
        items = [fix(device, k, now) for device in TRACKS]
        resp = await c.post("/api/traccar/positions", json=items, headers=KEY)
        assert resp.status_code == 200, resp.text
        sent += len(items)
        k += 1 / 30  # a second at the history's pace (a fix every 30 s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    return sent


async def test_dashboard_in_chromium(
    settings: Settings, database: str, topics: None, redis_clean: None
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make chromium`"
    assert (ROOT / "dashboard" / "dist" / "index.html").is_file(), "run `make dashboard` first"
    modules = ROOT / "dashboard" / "node_modules"
    assert (modules / "playwright-core").is_dir(), "run `make dashboard` first"
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    async with running(settings, ARTIFACTS / "logs") as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            setup = await prepare(c, settings)
            stop = asyncio.Event()
            feeder = asyncio.create_task(drive_live(c, stop))
            try:
                cfg = {
                    "baseUrl": base,
                    "artifacts": str(ARTIFACTS),
                    "chromium": chromium,
                    "drivers": {"john": JOHN, "jane": JANE, "bob": BOB},
                    "users": {
                        "admin1": {
                            "email": "admin@tenant1.com",
                            "password": "admin123",
                            "tenantId": "tenant-1",
                        },
                        "dispatcher1": setup["dispatcher"],
                        "admin2": {
                            "email": "admin@tenant2.com",
                            "password": "admin123",
                            "tenantId": "tenant-2",
                        },
                    },
                }
                proc = await asyncio.create_subprocess_exec(
                    "node",
                    str(SPEC),
                    env={**os.environ, "FLEETPULSE_E2E": json.dumps(cfg)},
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
            finally:
                stop.set()
                live_fixes = await feeder
                await drop_road_grid(settings)
    assert proc.returncode == 0, stderr.decode()
    seen: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    (ARTIFACTS / "result.json").write_text(json.dumps(seen, indent=2))
    assert "error" not in seen, seen.get("error")
    assert live_fixes > 0

    # Live: both of tenant-1's drivers listed and drawn.
    assert seen["storeDrivers"] == 2 and seen["listRows"] == 2 and seen["liveMarkers"] == 2
    # Smooth: drawn at many more places than the fixes that arrived while sampling (1/s).
    fixes_seen = seen["smooth"]["fixSpanMs"] / 1000 + 1
    assert seen["smooth"]["drawnPlaces"] > 2 * fixes_seen, seen["smooth"]
    # The driver's route and its visits.
    assert seen["route"]["name"] == "Downtown to Midtown"
    assert seen["route"]["points"] == len(setup["line"])
    assert seen["route"]["visits"] == ["pending", "pending"] or len(seen["route"]["visits"]) == 2
    # every stop still ahead of John shows its ETA (clock and time to go)
    etas = seen["route"]["visitEtas"]
    assert len(etas) == seen["route"]["visits"].count("pending") >= 1, seen["route"]
    assert all("ETA " in e for e in etas), etas
    # Playback: 5 s at 60x moved the clock by minutes and the marker along John's line.
    pb = seen["playback"]
    assert pb["t1"] - pb["t0"] >= 60_000, pb
    moved = math.dist(pb["head0"], pb["head1"])
    assert moved > 1e-4, pb
    # The offline base map: vector tiles from our api (a base map is loaded), so the road
    # network's GeoJSON is not fetched; the base map's layers are added under ours.
    assert seen["roads"] == 0 and seen["basemap"]["layers"] >= 8
    assert seen["basemap"]["styleErrors"] == []
    street, city = seen["basemap"]["views"]
    assert street["tiles"] > 0 and city["tiles"] > 0
    street_px = colour_shares(street["screenshot"])
    city_px = colour_shares(city["screenshot"])
    # at street zoom by the station: buildings cover the view, major roads and parks on it
    # (measured: 31 %, 0.56 %, 0.37 %)
    assert street_px[BUILDING] > 0.1 and street_px[MAJOR_ROAD] > 0.003, street_px
    assert street_px[GREEN] > 0.001, street_px
    # at city zoom: parks, major roads and water, no buildings yet (from zoom 14)
    assert city_px[GREEN] > 0.01 and city_px[MAJOR_ROAD] > 0.0002, city_px
    assert city_px[WATER] > 0.0003 and city_px[BUILDING] < 0.01, city_px
    # labels from browser fonts: the main street at street zoom, districts at city zoom
    assert "Mannerheimintie" in street["labels"], street["labels"]
    assert {"Kluuvi", "Kaisaniemi"} <= set(city["labels"]), city["labels"]
    assert "Mannerheimintie" not in city["labels"]  # streets from zoom 14
    # The whole fleet's replay: both of tenant-1's drivers, not tenant-2's.
    assert seen["fleetTracks"] == 2
    # Heatmap: hexagons drawn.
    assert seen["heatmap"]["hexagons"] > 0
    # Monitoring: one row per CDC table.
    assert seen["monitoring"]["lagRows"] >= 5
    # Tenancy: tenant-1's dispatcher never held Bob (tenant-2), tenant-2 holds only Bob.
    assert seen["dispatcher1"]["ids"] == sorted([JOHN, JANE]), seen["dispatcher1"]
    assert "Bob Wilson" not in seen["dispatcher1"]["names"]
    assert seen["dispatcher1"]["monitoringLink"] == 0  # admins only
    assert seen["admin2"]["ids"] == [BOB], seen["admin2"]
