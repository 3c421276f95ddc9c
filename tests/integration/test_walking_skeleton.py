"""One position travelling end to end through the real services.

webhook -> Kafka gps.positions -> enrichment worker -> history (PostgreSQL), snapshot,
Redis latest + GEO -> /api/drivers/{id}/history and /api/drivers/near.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from infrastructure.kafka import GPS_POSITIONS, end_offsets
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from tests.helpers import eventually, iso, seed_array_item, traccar_forward

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"  # DEV001, tenant-1
JANE = "a1b2c3d4-0002-4000-8000-000000000002"  # DEV002, tenant-1
BOB = "a1b2c3d4-0003-4000-8000-000000000003"  # DEV003, tenant-2
# Near the seed's "Downtown Warehouse" (40.7128, -74.006)
LAT, LON = 40.7130, -74.0055

pytestmark = pytest.mark.usefixtures("worker")


def now_ms() -> int:
    return int(time.time() * 1000)


async def history(
    client: httpx.AsyncClient, headers: dict[str, str], driver: str, start: int, end: int
) -> list[dict[str, Any]]:
    resp = await client.get(
        f"/api/drivers/{driver}/history",
        params={"from": iso(start), "to": iso(end)},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    positions: list[dict[str, Any]] = resp.json()["positions"]
    return positions


@pytest.fixture
async def redis(settings: Settings) -> Any:
    client = create_redis(settings.redis)
    yield client
    await client.aclose()


async def test_a_posted_position_reaches_history_redis_and_near(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    tenant1_headers: dict[str, str],
    settings: Settings,
    redis: Redis,
) -> None:
    fix = now_ms() - 1000
    resp = await client.post(
        "/api/traccar/positions",
        json=traccar_forward("DEV001", fix, LAT, LON, speed_kn=10),
        headers=traccar_headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "accepted", "count": 1}

    stored = await eventually(
        lambda: history(client, tenant1_headers, JOHN, fix - 1, fix + 1),
        lambda rows: len(rows) == 1,
        what="position in history",
    )
    assert stored[0]["lat"] == LAT and stored[0]["lon"] == LON
    assert stored[0]["speed"] == pytest.approx(18.52, abs=0.01)  # knots -> km/h, once
    assert stored[0]["time"] == iso(fix)

    keys = RedisKeys(settings.redis.key_prefix)
    # Redis moves after the history transaction commits (and after its events are published):
    # an earlier test's fix of DEV001 may still be the latest for a moment.
    latest = await eventually(
        lambda: redis.get(keys.latest(JOHN)),
        lambda v: v is not None and orjson.loads(v)["fixTimeMs"] >= fix,
        what="redis latest",
    )
    assert orjson.loads(latest)["fixTimeMs"] == fix

    near = await client.get(
        "/api/drivers/near",
        params={"lat": 40.7128, "lon": -74.006, "radius_m": 500},
        headers=tenant1_headers,
    )
    assert near.status_code == 200, near.text
    found = {d["driverId"]: d for d in near.json()["drivers"]}
    assert JOHN in found
    assert 0 < found[JOHN]["distanceM"] < 100
    assert found[JOHN]["position"]["fixTimeMs"] == fix


async def test_near_and_history_are_scoped_to_the_callers_tenant(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    tenant1_headers: dict[str, str],
    tenant2_headers: dict[str, str],
) -> None:
    fix = now_ms() - 500
    resp = await client.post(
        "/api/traccar/positions",
        json=[seed_array_item("DEV003", fix, LAT, LON), seed_array_item("DEV002", fix, LAT, LON)],
        headers=traccar_headers,
    )
    assert resp.status_code == 200, resp.text
    await eventually(
        lambda: history(client, tenant2_headers, BOB, fix - 1, fix + 1),
        lambda rows: len(rows) == 1,
        what="tenant-2 position stored",
    )

    async def near(headers: dict[str, str]) -> set[str]:
        resp = await client.get(
            "/api/drivers/near", params={"lat": LAT, "lon": LON, "radius_m": 200}, headers=headers
        )
        assert resp.status_code == 200, resp.text
        return {d["driverId"] for d in resp.json()["drivers"]}

    seen2 = await eventually(lambda: near(tenant2_headers), lambda s: BOB in s, what="bob near")
    assert seen2 == {BOB}
    seen1 = await eventually(lambda: near(tenant1_headers), lambda s: JANE in s, what="jane")
    assert BOB not in seen1

    # Another tenant's driver is "not found", exactly like a driver that does not exist.
    for driver in (BOB, "a1b2c3d4-9999-4000-8000-000000000009", "not-a-uuid"):
        resp = await client.get(f"/api/drivers/{driver}/history", headers=tenant1_headers)
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"] == "not_found"


async def test_a_duplicate_is_stored_once_and_a_late_fix_never_moves_live_state_back(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    tenant1_headers: dict[str, str],
    pg: asyncpg.Pool,
    settings: Settings,
    redis: Redis,
) -> None:
    # A driver of its own, so no other test's fixes fall into the window below.
    device = f"SKEL-DUP-{now_ms()}"
    driver = str(
        await pg.fetchval(
            """INSERT INTO drivers (tenant_id, name, device_unique_id)
               VALUES ('tenant-1', 'Dup Tester', $1) RETURNING id""",
            device,
        )
    )
    t1 = now_ms() - 60_000
    t2, late = t1 + 5_000, t1 - 30_000
    for fix, lat in ((t1, 40.7131), (t1, 40.7131), (t2, 40.7140), (late, 40.7100)):
        resp = await client.post(
            "/api/traccar/positions",
            json=traccar_forward(device, fix, lat, LON),
            headers=traccar_headers,
        )
        assert resp.status_code == 200, resp.text

    rows = await eventually(
        lambda: history(client, tenant1_headers, driver, late - 1, t2 + 1),
        lambda rows: len(rows) >= 3,
        what="three distinct fixes stored",
    )
    assert [r["time"] for r in rows] == [iso(late), iso(t1), iso(t2)]

    # The late fix is in history but the snapshot and Redis stay at the newest fix.
    keys = RedisKeys(settings.redis.key_prefix)
    snapshot = await pg.fetchval(
        "SELECT (extract(epoch FROM fix_time) * 1000)::bigint FROM driver_positions"
        " WHERE driver_id = $1",
        uuid.UUID(driver),
    )
    assert snapshot == t2
    # Redis moves after the commit: wait for the batch's move; a late fix that moved it back
    # would leave it at `late` for good, and this would time out.
    raw = await eventually(
        lambda: redis.get(keys.latest(driver)),
        lambda v: v is not None and orjson.loads(v)["fixTimeMs"] == t2,
        what="redis latest at the newest fix",
    )
    latest = orjson.loads(raw)
    assert latest["fixTimeMs"] == t2 and latest["lat"] == 40.7140
    for _ in range(10):  # and it stays there once the late fix's batch has moved Redis too
        await asyncio.sleep(0.1)
        assert orjson.loads(await redis.get(keys.latest(driver)))["fixTimeMs"] == t2


BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("not-json", b"{this is not json", 400, "invalid_json"),
    ("wrong-types", orjson.dumps({"position": {"latitude": "x"}, "device": 5}), 422, ""),
    ("latitude-123", orjson.dumps(traccar_forward("DEV001", 1, 123.0, -74.0)), 422, ""),
    (
        "missing-device",
        orjson.dumps({"position": traccar_forward("DEV001", 1, 40.7, -74.0)["position"]}),
        422,
        "",
    ),
    ("ten-megabytes", b"[" + b" " * (10 * 1024 * 1024) + b"]", 413, "payload_too_large"),
    ("empty", b"", 400, "invalid_json"),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_malformed_bodies_get_a_json_4xx_and_nothing_reaches_kafka(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    name: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert len(before) == 6  # the comparison below must be over real partitions
    resp = await client.post(
        "/api/traccar/positions",
        content=body,
        headers={**traccar_headers, "Content-Type": "application/json"},
    )
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert isinstance(err["error"], str) and err["message"]
    if code:
        assert err["error"] == code
    assert "Traceback" not in resp.text
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before


async def test_api_keys_and_unknown_devices(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    redis: Redis,
) -> None:
    body = traccar_forward("DEV001", now_ms(), LAT, LON)
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert len(before) == 6

    missing = await client.post("/api/traccar/positions", json=body)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    wrong = await client.post("/api/traccar/positions", json=body, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401

    # A tenant's own key only admits that tenant's devices.
    foreign = await client.post(
        "/api/traccar/positions", json=body, headers={"X-API-Key": "traccar-key-tenant-2"}
    )
    assert foreign.status_code == 400 and foreign.json()["error"] == "unknown_device"

    keys = RedisKeys(settings.redis.key_prefix)
    ghost = f"GHOST-{now_ms()}"
    for expected in (1, 2):
        resp = await client.post(
            "/api/traccar/positions",
            json=traccar_forward(ghost, now_ms(), LAT, LON),
            headers=traccar_headers,
        )
        assert resp.status_code == 400
        assert resp.json()["details"] == {"deviceIds": [ghost]}
        assert int(await redis.hget(keys.unknown_devices, ghost)) == expected
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before

    own = await client.post(
        "/api/traccar/positions", json=body, headers={"X-API-Key": "traccar-key-tenant-1"}
    )
    assert own.status_code == 200, own.text
    after = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert sum(after.values()) == sum(before.values()) + 1  # and this one did reach Kafka


async def test_read_routes_need_a_valid_token(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer forged.token.value"}):
        resp = await client.get(
            "/api/drivers/near", params={"lat": LAT, "lon": LON}, headers=headers
        )
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized"
    bad_login = await client.post(
        "/api/auth/login",
        json={"email": "admin@tenant1.com", "password": "wrong", "tenantId": "tenant-1"},
    )
    assert bad_login.status_code == 401


async def test_bad_query_parameters_are_4xx(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    for params in (
        {"lat": 123, "lon": 0},
        {"lat": "x", "lon": 0},
        {"lat": 1, "lon": 1, "radius_m": -5},
    ):
        resp = await client.get("/api/drivers/near", params=params, headers=tenant1_headers)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"] == "validation_error"
    for params in ({"from": "yesterday"}, {"from": iso(now_ms()), "to": iso(now_ms() - 1000)}):
        resp = await client.get(
            f"/api/drivers/{JOHN}/history", params=params, headers=tenant1_headers
        )
        assert resp.status_code == 400, resp.text


async def test_health_reports_each_dependency(
    client: httpx.AsyncClient, pg: Any, settings: Settings
) -> None:
    from analytics.refresh import sync_policies

    async with pg.acquire() as conn:  # what `fleetpulse migrate` does after migrating
        await sync_policies(conn, settings.analytics)
    resp = await client.get("/api/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok", body
    assert body["services"] == {"postgres": "up", "redis": "up", "kafka": "up", "timescale": "up"}
    pg_details = body["details"]["postgres"]
    assert pg_details["postgis"].startswith("3.")
    assert (
        pg_details["timescaledb"].startswith("2.") and pg_details["historyBackend"] == "hypertable"
    )
    jobs = body["details"]["timescale"]["jobs"]
    assert {(j["job"], j["relation"]) for j in jobs} >= {
        ("policy_compression", "positions"),
        ("policy_retention", "positions"),
    }
    # a background job whose last run failed makes the service degraded (not unready)
    async with pg.acquire() as conn:
        await conn.execute(
            """CREATE OR REPLACE PROCEDURE fp_test_failing_job(job_id int, config jsonb)
               LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$"""
        )
        # run by the background scheduler (a foreground run_job records no job statistics)
        job = await conn.fetchval(
            "SELECT add_job('fp_test_failing_job', '1 day', initial_start => now())"
        )
        try:
            failing: dict[str, Any] = {}
            for _ in range(120):  # the scheduler starts a new job within seconds
                failing = (await client.get("/api/health")).json()
                if failing["services"]["timescale"] == "degraded":
                    break
                await asyncio.sleep(0.5)
            assert failing["status"] == "degraded", failing
            assert any(
                j["id"] == job and j["lastRunStatus"] == "Failed"
                for j in failing["details"]["timescale"]["jobs"]
            )
        finally:
            await conn.execute(f"SELECT delete_job({job})")
            await conn.execute("DROP PROCEDURE fp_test_failing_job")
    lag = body["details"]["kafka"]["workerLag"]
    assert isinstance(lag["total"], int) and sorted(lag["partitions"]) == [str(p) for p in range(6)]
    ready = await client.get("/api/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
