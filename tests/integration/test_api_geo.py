"""Geofences (GeoJSON, validation, Traccar import/export) and geo-queries checked against a
brute-force computation over the same data.

The geo-queries run in a tenant of their own (made here), so the live GEO set and the
history hold exactly what the test put there.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pyproj import Geod
from redis.asyncio import Redis

from api.security import hash_password
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from tests.integration.api_support import PASSWORD, make_driver, uniq

GEOD = Geod(ellps="WGS84")
REDIS_EARTH_M = 6372797.560856  # the sphere Redis GEO measures on
SQUARE = [[-74.01, 40.71], [-74.0, 40.71], [-74.0, 40.72], [-74.01, 40.72], [-74.01, 40.71]]


def polygon(ring: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


async def geofence_count(pg: asyncpg.Pool) -> int:
    n: int = await pg.fetchval("SELECT count(*) FROM geofences")
    return n


async def test_geofence_crud_answers_geojson(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], tenant2_headers: dict[str, str]
) -> None:
    name = uniq("yard")
    resp = await client.post(
        "/api/geofences", json={"name": name, "geometry": polygon(SQUARE)}, headers=tenant1_headers
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/geo+json")
    f = resp.json()
    assert f["type"] == "Feature" and f["geometry"] == polygon(SQUARE)
    assert f["properties"]["kind"] == "polygon" and f["properties"]["name"] == name
    assert f["properties"]["area"].startswith("POLYGON ((40.71 -74.01, ")

    url = f"/api/geofences/{f['id']}"
    got = await client.get(url, headers=tenant1_headers)
    assert got.status_code == 200 and got.json() == f
    assert got.headers["content-type"].startswith("application/geo+json")
    features: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await client.get(
            "/api/geofences",
            params={"limit": 3} | ({"cursor": cursor} if cursor else {}),
            headers=tenant1_headers,
        )
        assert page.status_code == 200 and page.json()["type"] == "FeatureCollection"
        features += page.json()["features"]
        cursor = page.headers.get("X-Next-Cursor")
        if not cursor:
            break
    assert f["id"] in [x["id"] for x in features]
    assert len({x["id"] for x in features}) == len(features)
    assert (await client.get(url, headers=tenant2_headers)).status_code == 404

    # Replace with a circle: stored as a polygon buffered on the spheroid.
    centre, radius = (-74.006, 40.7128), 150.0
    put = await client.put(
        url,
        json={"name": name, "circle": {"lat": centre[1], "lon": centre[0], "radiusM": radius}},
        headers=tenant1_headers,
    )
    assert put.status_code == 200, put.text
    props = put.json()["properties"]
    assert props["kind"] == "circle" and props["radiusM"] == radius
    assert props["area"] == "CIRCLE (40.7128 -74.006, 150)"
    ring = put.json()["geometry"]["coordinates"][0]
    assert len(ring) >= 32
    for lon, lat in ring:
        _, _, d = GEOD.inv(centre[0], centre[1], lon, lat)
        assert abs(d - radius) < radius * 0.005, d

    assert (await client.delete(url, headers=tenant2_headers)).status_code == 404
    assert (await client.delete(url, headers=tenant1_headers)).status_code == 204
    assert (await client.get(url, headers=tenant1_headers)).status_code == 404
    assert (await client.get("/api/geofences/nope", headers=tenant1_headers)).status_code == 404


BAD_GEOMETRIES: list[tuple[str, dict[str, Any], str]] = [
    (
        "self-intersecting",
        {
            "geometry": polygon(
                [[-74.0, 40.7], [-73.99, 40.71], [-73.99, 40.7], [-74.0, 40.71], [-74.0, 40.7]]
            )
        },
        "self-intersection",
    ),
    ("open ring", {"geometry": polygon(SQUARE[:-1])}, "not closed"),
    (
        "100k vertices",
        # Compact integer coordinates keep the body under the 1 MB limit; the vertex
        # count is refused before anything else is looked at.
        {"geometry": polygon([[i % 2, i % 3] for i in range(100_000)])},
        "100000 vertices",
    ),
    (
        "latitude 95",
        {"geometry": polygon([[-74.0, 95.0], [-73.9, 40.7], [-73.9, 40.8], [-74.0, 95.0]])},
        "latitude 95",
    ),
    ("circle latitude 95", {"circle": {"lat": 95, "lon": -74, "radiusM": 100}}, "latitude 95"),
    ("zero radius", {"circle": {"lat": 40, "lon": -74, "radiusM": 0}}, "radius"),
    ("Traccar polygon, open", {"area": "POLYGON ((40 -74, 41 -74, 41 -75, 40 -75))"}, "not closed"),
    (
        "two shapes",
        {"area": "CIRCLE (40 -74, 10)", "circle": {"lat": 40, "lon": -74, "radiusM": 9}},
        "exactly one",
    ),
    (
        "not a polygon",
        {"geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
        "Polygon",
    ),
]


@pytest.mark.parametrize(
    ("case", "shape", "words"), BAD_GEOMETRIES, ids=[c[0] for c in BAD_GEOMETRIES]
)
async def test_invalid_geometries_are_422_and_nothing_is_stored(
    client: httpx.AsyncClient,
    tenant1_headers: dict[str, str],
    pg: asyncpg.Pool,
    case: str,
    shape: dict[str, Any],
    words: str,
) -> None:
    existing = await client.post(
        "/api/geofences",
        json={"name": uniq("keep"), "geometry": polygon(SQUARE)},
        headers=tenant1_headers,
    )
    before = await geofence_count(pg)
    resp = await client.post(
        "/api/geofences", json={"name": uniq("bad")} | shape, headers=tenant1_headers
    )
    assert resp.status_code == 422, resp.text[:300]
    assert resp.json()["error"] == "invalid_geometry" and words in resp.json()["message"], (
        resp.text[:300]
    )
    put = await client.put(
        f"/api/geofences/{existing.json()['id']}",
        json={"name": "changed"} | shape,
        headers=tenant1_headers,
    )
    assert put.status_code == 422
    assert await geofence_count(pg) == before
    after = await client.get(f"/api/geofences/{existing.json()['id']}", headers=tenant1_headers)
    assert after.json() == existing.json()


async def test_traccar_import_and_export(
    client: httpx.AsyncClient, tenant2_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    names = [uniq("tc"), uniq("tp")]
    areas = [
        "CIRCLE (40.7282 -73.7949, 200)",
        "POLYGON ((40.83 -73.87, 40.83 -73.86, 40.84 -73.86, 40.84 -73.87, 40.83 -73.87))",
    ]
    body = [
        {"id": 11, "name": names[0], "description": "", "area": areas[0], "attributes": {}},
        {"id": 12, "name": names[1], "area": areas[1], "calendarId": 0},
    ]
    resp = await client.post("/api/geofences/traccar", json=body, headers=tenant2_headers)
    assert resp.status_code == 201, resp.text
    made = resp.json()["features"]
    assert [f["properties"]["kind"] for f in made] == ["circle", "polygon"]
    assert made[1]["geometry"]["coordinates"][0][0] == [-73.87, 40.83]  # lon, lat inside
    exported = (await client.get("/api/geofences/traccar", headers=tenant2_headers)).json()
    by_name = {g["name"]: g["area"] for g in exported}
    assert [by_name[n] for n in names] == areas
    assert all("tenant-1" not in str(g) and g["name"] != "Downtown Warehouse" for g in exported)

    # All or nothing: one bad area and none is stored; the message names the bad one.
    before = await geofence_count(pg)
    bad = [
        {"name": uniq("ok"), "area": areas[0]},
        {"name": "broken", "area": "CIRCLE (95 -74, 10)"},
    ]
    resp = await client.post("/api/geofences/traccar", json=bad, headers=tenant2_headers)
    assert resp.status_code == 422 and "geofence 1 ('broken')" in resp.json()["message"]
    assert await geofence_count(pg) == before


# ---------------------------------------------------------------- geo-queries vs brute force


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * REDIS_EARTH_M * math.asin(math.sqrt(a))


def inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    """Ray casting, independent of shapely."""
    hit = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        if (y1 > lat) != (y2 > lat):
            x = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if x > lon:
                hit = not hit
    return hit


@pytest.fixture(scope="module")
async def geo_world(
    client: httpx.AsyncClient, pg: asyncpg.Pool, settings: Settings
) -> dict[str, Any]:
    """A fresh tenant with 150 drivers placed at random around Manhattan (live, in Redis),
    a day of history for them, and 40 customers."""
    rng = random.Random(20260207)
    tenant = uniq("geo")
    email = f"admin@{tenant}.test"
    await pg.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
    await pg.execute(
        "INSERT INTO users (tenant_id, email, password_hash, role) VALUES ($1, $2, $3, 'admin')",
        tenant,
        email,
        hash_password(PASSWORD),
    )
    login = await client.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "tenantId": tenant}
    )
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    redis: Redis = create_redis(settings.redis)
    keys = RedisKeys(settings.redis.key_prefix)
    now = datetime.now(UTC).replace(microsecond=0)
    live: dict[str, dict[str, Any]] = {}
    history: list[tuple[Any, ...]] = []
    for i in range(150):
        d = await make_driver(client, headers)
        lon, lat = rng.uniform(-74.05, -73.90), rng.uniform(40.65, 40.85)
        fix = now - timedelta(seconds=rng.randint(0, 3600))
        msg = {
            "schema": 1,
            "tenantId": tenant,
            "driverId": d["id"],
            "lat": lat,
            "lon": lon,
            "fixTime": fix.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "fixTimeMs": int(fix.timestamp() * 1000),
        }
        await redis.set(keys.latest(d["id"]), orjson.dumps(msg))
        await redis.geoadd(keys.geo(tenant), (lon, lat, d["id"]))
        live[d["id"]] = msg
        for k in range(20):
            t = now - timedelta(hours=rng.uniform(0, 20), seconds=i + 1000 * k)
            t = t.replace(microsecond=t.microsecond // 1000 * 1000)  # devices send ms
            history.append(
                (
                    tenant,
                    uuid.UUID(d["id"]),
                    d["deviceId"],
                    t,
                    t,
                    rng.uniform(-74.05, -73.90),
                    rng.uniform(40.65, 40.85),
                    0,
                )
            )
    await pg.executemany(
        """INSERT INTO positions (tenant_id, driver_id, device_unique_id, fix_time, received_at,
                                  lon, lat, h3_cell)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING""",
        history,
    )
    customers = []
    for _ in range(40):
        cid = rng.randint(10**12, 10**13)
        lon, lat = rng.uniform(-74.05, -73.90), rng.uniform(40.65, 40.85)
        await pg.execute(
            "INSERT INTO customers (id, tenant_id, name, lat, lng) VALUES ($1, $2, $3, $4, $5)",
            cid,
            tenant,
            uniq("cust"),
            lat,
            lon,
        )
        customers.append((cid, lon, lat))
    await redis.aclose()
    return {
        "tenant": tenant,
        "headers": headers,
        "live": live,
        "history": history,
        "customers": customers,
        "now": now,
    }


def ages_s(live: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each driver's fix age now (the world's fixes are 0..3600 s old)."""
    now_ms = time.time() * 1000
    return {i: (now_ms - m["fixTimeMs"]) / 1000 for i, m in live.items()}


async def test_drivers_near_agrees_with_brute_force(
    client: httpx.AsyncClient, geo_world: dict[str, Any]
) -> None:
    rng = random.Random(7)
    live = geo_world["live"]
    for i in range(15):
        include_stale = i % 2 == 0  # the world's fixes are 0..60 min old: most are stale
        lon, lat = rng.uniform(-74.05, -73.90), rng.uniform(40.65, 40.85)
        radius = rng.uniform(300, 6000)
        extra = {"include_stale": "true"} if include_stale else {}
        resp = await client.get(
            "/api/drivers/near",
            params={"lat": lat, "lon": lon, "radius_m": radius, "limit": 1000, **extra},
            headers=geo_world["headers"],
        )
        assert resp.status_code == 200, resp.text
        got = resp.json()["drivers"]
        ids = {g["driverId"] for g in got}
        age = ages_s(live)
        dist = {i: haversine_m(lon, lat, m["lon"], m["lat"]) for i, m in live.items()}
        counted = {i for i in live if include_stale or age[i] < 295}
        # Redis keeps 52-bit geohashes (< 1 m off): only the metre at the edge is ambiguous.
        assert {i for i, d in dist.items() if d < radius - 1 and i in counted} <= ids
        assert not {i for i in ids if dist[i] > radius + 1}
        assert [g["distanceM"] for g in got] == sorted(g["distanceM"] for g in got)
        for g in got:
            assert abs(g["distanceM"] - dist[g["driverId"]]) < 1.5
            assert g["lastFixTime"] == live[g["driverId"]]["fixTime"]
            assert abs(g["ageS"] - age[g["driverId"]]) < 5
            assert include_stale or g["ageS"] <= 305, g
        limited = await client.get(
            "/api/drivers/near",
            params={"lat": lat, "lon": lon, "radius_m": radius, "limit": 3, **extra},
            headers=geo_world["headers"],
        )
        assert [g["driverId"] for g in limited.json()["drivers"]] == [
            g["driverId"] for g in got[:3]
        ]
    bad = await client.get(
        "/api/drivers/near",
        params={"lat": 40.7, "lon": -74.0, "include_stale": "perhaps"},
        headers=geo_world["headers"],
    )
    assert bad.status_code == 422


async def test_drivers_within_bbox_and_polygon_agree_with_brute_force(
    client: httpx.AsyncClient, geo_world: dict[str, Any]
) -> None:
    rng = random.Random(11)
    live = geo_world["live"]
    for _ in range(15):
        x1, x2 = sorted(rng.uniform(-74.06, -73.89) for _ in range(2))
        y1, y2 = sorted(rng.uniform(40.64, 40.86) for _ in range(2))
        resp = await client.get(
            "/api/drivers/within",
            params={"bbox": f"{x1},{y1},{x2},{y2}", "include_stale": "true"},
            headers=geo_world["headers"],
        )
        assert resp.status_code == 200, resp.text
        expected = {i for i, m in live.items() if x1 <= m["lon"] <= x2 and y1 <= m["lat"] <= y2}
        assert {g["driverId"] for g in resp.json()["drivers"]} == expected
        assert resp.json()["count"] == len(expected)
        # by default only the active ones (fix at most 300 s old; the edge's 5 s left out)
        active = await client.get(
            "/api/drivers/within",
            params={"bbox": f"{x1},{y1},{x2},{y2}"},
            headers=geo_world["headers"],
        )
        age = ages_s(live)
        got = {g["driverId"] for g in active.json()["drivers"]}
        assert {i for i in expected if age[i] < 295} <= got
        assert got <= {i for i in expected if age[i] < 305}

    # A concave polygon (a "C"), so a bbox or convex-hull shortcut would be wrong.
    c_shape = [
        [-74.04, 40.66],
        [-73.91, 40.66],
        [-73.91, 40.70],
        [-74.00, 40.70],
        [-74.00, 40.80],
        [-73.91, 40.80],
        [-73.91, 40.84],
        [-74.04, 40.84],
        [-74.04, 40.66],
    ]
    resp = await client.post(
        "/api/drivers/within",
        params={"include_stale": "true"},
        json={"geometry": polygon(c_shape)},
        headers=geo_world["headers"],
    )
    assert resp.status_code == 200, resp.text
    expected = {i for i, m in live.items() if inside(m["lon"], m["lat"], c_shape)}
    assert len(expected) > 10
    assert {g["driverId"] for g in resp.json()["drivers"]} == expected
    active = await client.post(
        "/api/drivers/within", json={"geometry": polygon(c_shape)}, headers=geo_world["headers"]
    )
    age = ages_s(live)
    got = {g["driverId"] for g in active.json()["drivers"]}
    assert {i for i in expected if age[i] < 295} <= got <= {i for i in expected if age[i] < 305}

    for bad, words in (
        ({"bbox": "-74,40,-75,41"}, "min < max"),
        ({"bbox": "-74,40,-73,95"}, "latitude 95"),
        ({"bbox": "x"}, "four numbers"),
    ):
        r = await client.get("/api/drivers/within", params=bad, headers=geo_world["headers"])
        assert r.status_code == 422 and words in r.json()["message"]
    r = await client.post(
        "/api/drivers/within",
        json={"geometry": polygon(c_shape[:-1])},
        headers=geo_world["headers"],
    )
    assert r.status_code == 422 and "not closed" in r.json()["message"]


async def test_positions_in_bbox_and_window_agree_with_brute_force(
    client: httpx.AsyncClient, geo_world: dict[str, Any]
) -> None:
    now: datetime = geo_world["now"]
    start, end = now - timedelta(hours=12), now - timedelta(hours=2)
    x1, y1, x2, y2 = -74.02, 40.70, -73.95, 40.80
    expected = sorted(
        (row[3], str(row[1]))
        for row in geo_world["history"]
        if start <= row[3] < end and x1 <= row[5] <= x2 and y1 <= row[6] <= y2
    )
    assert len(expected) > 50
    got: list[tuple[datetime, str]] = []
    cursor = None
    pages = 0
    while True:
        params = {
            "bbox": f"{x1},{y1},{x2},{y2}",
            "from": start.isoformat(),
            "to": end.isoformat(),
            "limit": 37,
        } | ({"cursor": cursor} if cursor else {})
        resp = await client.get("/api/drivers/history", params=params, headers=geo_world["headers"])
        assert resp.status_code == 200, resp.text
        got += [
            (datetime.fromisoformat(p["time"].replace("Z", "+00:00")), p["driverId"])
            for p in resp.json()
        ]
        pages += 1
        cursor = resp.headers.get("X-Next-Cursor")
        if not cursor:
            break
    assert got == expected
    assert pages == math.ceil(len(expected) / 37)  # no empty trailing page
    bad = await client.get(
        "/api/drivers/history",
        params={"bbox": f"{x1},{y1},{x2},{y2}", "from": end.isoformat(), "to": start.isoformat()},
        headers=geo_world["headers"],
    )
    assert bad.status_code == 400


async def test_nearest_customers_agree_with_brute_force(
    client: httpx.AsyncClient, geo_world: dict[str, Any]
) -> None:
    for driver_id, m in list(geo_world["live"].items())[:10]:
        resp = await client.get(
            f"/api/drivers/{driver_id}/nearest-customers",
            params={"limit": 5},
            headers=geo_world["headers"],
        )
        assert resp.status_code == 200, resp.text
        brute = sorted(
            (GEOD.inv(m["lon"], m["lat"], lon, lat)[2], cid)
            for cid, lon, lat in geo_world["customers"]
        )[:5]
        got = resp.json()["customers"]
        assert [c["id"] for c in got] == [cid for _, cid in brute]
        for c, (d, _) in zip(got, brute, strict=True):
            assert abs(c["distanceM"] - d) < 0.05
    nobody = await make_driver(client, geo_world["headers"])
    resp = await client.get(
        f"/api/drivers/{nobody['id']}/nearest-customers", headers=geo_world["headers"]
    )
    assert resp.status_code == 404 and "no known position" in resp.json()["message"]
