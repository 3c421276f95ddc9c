"""The dashboard's map routes: the road network as GeoJSON (/api/map/roads) and the live
fleet snapshot (/api/map/live), with bad input and tenant isolation."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx

from tests.helpers import eventually, seed_array_item

BOX = "-74.02,40.70,-73.97,40.76"
JOHN = "a1b2c3d4-0001-4000-8000-000000000001"
BOB = "a1b2c3d4-0003-4000-8000-000000000003"


async def test_roads_rejects_bad_input(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    assert (await client.get("/api/map/roads", params={"bbox": BOX})).status_code == 401
    for bbox in ("1,2,3", "a,b,c,d", "10,10,5,5", "-74.0,40.0,-72.0,40.5", "0,95,1,96"):
        resp = await client.get("/api/map/roads", params={"bbox": bbox}, headers=tenant1_headers)
        assert resp.status_code in (400, 422), (bbox, resp.text)
        assert set(resp.json()) >= {"error", "message"}
    resp = await client.get(
        "/api/map/roads", params={"bbox": BOX, "limit": 0}, headers=tenant1_headers
    )
    assert resp.status_code == 422


async def test_roads_returns_the_edges_inside_the_box(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    network = f"test-map-{uuid.uuid4().hex[:8]}"  # removed at the end: others load networks
    lines = [
        ("primary", "LINESTRING(-74.006 40.7128, -74.0 40.72)"),
        ("residential", "LINESTRING(-73.99 40.74, -73.984 40.7549)"),
        ("primary", "LINESTRING(-72.5 41.5, -72.4 41.6)"),  # outside the box
    ]
    await pg.executemany(
        """INSERT INTO road_edges (network, source, target, osm_way_id, highway, length_m,
                                   speed_kmh, cost_s, geom)
           VALUES ($1, $2::bigint, $2::bigint + 1, $2::bigint, $3, 100, 30, 12,
                   ST_GeomFromText($4, 4326))""",
        [(network, i * 10, hw, wkt) for i, (hw, wkt) in enumerate(lines)],
    )
    try:
        expected = await pg.fetchval(
            """SELECT count(*) FROM road_edges
               WHERE geom && ST_MakeEnvelope(-74.02, 40.70, -73.97, 40.76, 4326)"""
        )
        resp = await client.get("/api/map/roads", params={"bbox": BOX}, headers=tenant1_headers)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/geo+json")
        body: dict[str, Any] = resp.json()
        assert len(body["features"]) == expected and body["truncated"] is False
        got = {
            (
                f["properties"]["highway"],
                tuple(tuple(map(float, p)) for p in f["geometry"]["coordinates"]),
            )
            for f in body["features"]
        }
        for highway, line in (
            ("primary", ((-74.006, 40.7128), (-74.0, 40.72))),
            ("residential", ((-73.99, 40.74), (-73.984, 40.7549))),
        ):
            assert (highway, line) in got
        resp = await client.get(
            "/api/map/roads", params={"bbox": BOX, "limit": 1}, headers=tenant1_headers
        )
        assert len(resp.json()["features"]) == 1 and resp.json()["truncated"] is True
        assert resp.json()["features"][0]["properties"]["highway"] == "primary"  # major first
    finally:
        await pg.execute("DELETE FROM road_edges WHERE network = $1", network)


async def test_live_lists_only_the_callers_tenant(
    client: httpx.AsyncClient,
    worker: None,
    tenant1_headers: dict[str, str],
    tenant2_headers: dict[str, str],
    traccar_headers: dict[str, str],
    pg: asyncpg.Pool,
) -> None:
    assert (await client.get("/api/map/live")).status_code == 401
    fix = int(time.time() * 1000)
    resp = await client.post(
        "/api/traccar/positions",
        json=[
            seed_array_item("DEV001", fix, 40.7130, -74.0050),
            seed_array_item("DEV003", fix, 40.7282, -73.7949),
        ],
        headers=traccar_headers,
    )
    assert resp.status_code == 200, resp.text

    async def john_at() -> Any:
        r = await client.get("/api/map/live", headers=tenant1_headers)
        john = next(d for d in r.json()["drivers"] if d["id"] == JOHN)
        return john["position"] and john["position"]["fixTimeMs"]

    await eventually(john_at, lambda t: t is not None and t >= fix, what="John's position")
    for headers, tenant in ((tenant1_headers, "tenant-1"), (tenant2_headers, "tenant-2")):
        drivers = (await client.get("/api/map/live", headers=headers)).json()["drivers"]
        ids = await pg.fetch("SELECT id::text FROM drivers WHERE tenant_id = $1", tenant)
        assert sorted(d["id"] for d in drivers) == sorted(r["id"] for r in ids)
        for d in drivers:
            assert d["position"] is None or d["position"].get("tenantId", tenant) == tenant
    tenant2 = (await client.get("/api/map/live", headers=tenant2_headers)).json()["drivers"]
    assert BOB in {d["id"] for d in tenant2} and JOHN not in {d["id"] for d in tenant2}
