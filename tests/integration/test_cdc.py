"""CDC end to end with the real services: MariaDB binlog -> Debezium (Kafka Connect) -> Kafka
cdc.* -> the cdc consumer -> PostgreSQL cache, geofences, users for login, Redis invalidation,
sync routes, lag and health.

The run has its own MariaDB database (core_business_<run>), connector and topics (the
run's prefix) and PostgreSQL database; the connector is deleted at the end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from asgi_lifespan import LifespanManager

from api.security import hash_password
from infrastructure.kafka import CDC_DLQ, create_producer
from infrastructure.settings import Settings
from tests.conftest import RUN_ID, make_settings, settings_env
from tests.helpers import eventually
from tests.integration.cdc_support import (
    connector,
    mysql_exec,
    mysql_rows,
    rows,
    source_database,
    with_source_db,
)

WITHIN = 5.0  # the bound for a change to be visible in the cache and the API


@pytest.fixture(scope="module")
def cdc_settings(settings: Settings) -> Settings:
    return with_source_db(settings, f"core_business_{RUN_ID}")


@pytest.fixture(scope="module")
async def pipeline(
    cdc_settings: Settings, database: str, topics: None, redis_clean: None
) -> AsyncIterator[None]:
    """Source database + connector + an in-process cdc consumer for this module."""
    from ingest.cdc import run_cdc

    async with source_database(cdc_settings), connector(cdc_settings):
        stop = asyncio.Event()
        task = asyncio.create_task(run_cdc(cdc_settings, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def api(cdc_settings: Settings, pipeline: None) -> AsyncIterator[httpx.AsyncClient]:
    from api.main import create_app

    app = create_app(cdc_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def login(api: httpx.AsyncClient, email: str, password: str, tenant: str) -> httpx.Response:
    return await api.post(
        "/api/auth/login", json={"email": email, "password": password, "tenantId": tenant}
    )


async def bearer(api: httpx.AsyncClient, email: str, tenant: str) -> dict[str, str]:
    resp = await eventually(
        lambda: login(api, email, "admin123", tenant),
        lambda r: r.status_code == 200,
        what=f"login of {email}",
    )
    return {"Authorization": f"Bearer {resp.json()['accessToken']}"}


@pytest.fixture(scope="module")
async def t1(api: httpx.AsyncClient) -> dict[str, str]:
    return await bearer(api, "admin@tenant1.com", "tenant-1")


@pytest.fixture(scope="module")
async def t2(api: httpx.AsyncClient) -> dict[str, str]:
    return await bearer(api, "admin@tenant2.com", "tenant-2")


async def test_snapshot_fills_the_cache_and_adopts_the_seed_users(
    pipeline: None, pg: asyncpg.Pool
) -> None:
    synced = await eventually(
        lambda: pg.fetch(
            "SELECT id FROM products_cache UNION ALL SELECT id FROM orders_cache "
            "UNION ALL SELECT id FROM accounts_cache"
        ),
        lambda r: len(r) == 5 + 5 + 2,
        what="snapshot of accounts, products, orders",
    )
    assert len(synced) == 12
    customers = await eventually(
        lambda: pg.fetch("SELECT id, source_position FROM customers WHERE id <= 5 ORDER BY id"),
        lambda r: all(c["source_position"] is not None for c in r),
        what="seed customers adopted by the snapshot",
    )
    assert [c["id"] for c in customers] == [1, 2, 3, 4, 5]
    # The local seed's admins (no source id) were adopted by the source's users 1 and 2.
    users = await eventually(
        lambda: pg.fetch(
            "SELECT email, source_id FROM users WHERE email LIKE 'admin@tenant%' ORDER BY email"
        ),
        lambda r: all(u["source_id"] is not None for u in r),
        what="demo admins adopted",
    )
    assert [(u["email"], u["source_id"]) for u in users] == [
        ("admin@tenant1.com", 1),
        ("admin@tenant2.com", 2),
    ]
    # A snapshot read is a bulk copy stamped with the snapshot's start, not replication lag:
    # a table that only had its snapshot has no lag (it read "degraded" for good before).
    products = await pg.fetchrow(
        "SELECT events_processed, last_lag_ms FROM sync_state WHERE table_name = 'products'"
    )
    assert products is not None and products["events_processed"] >= 5
    assert products["last_lag_ms"] is None


async def _geofence(pg: asyncpg.Pool, customer_id: int) -> asyncpg.Record | None:
    return await pg.fetchrow(
        """SELECT g.radius_m, ST_X(g.center) AS lon, ST_Y(g.center) AS lat,
                  ST_Contains(g.geom, ST_SetSRID(ST_MakePoint($2, $3), 4326)) AS covers,
                  ST_Distance(ST_Centroid(g.geom)::geography, g.center::geography) AS off
           FROM geofences g WHERE g.customer_id = $1""",
        customer_id,
        -73.99,
        40.75,
    )


async def test_customer_insert_update_delete_reach_cache_api_and_geofence(
    cdc_settings: Settings,
    pg: asyncpg.Pool,
    api: httpx.AsyncClient,
    t1: dict[str, str],
    t2: dict[str, str],
) -> None:
    new_id = await mysql_exec(
        cdc_settings,
        """INSERT INTO customers (tenant_id, account_id, name, lat, lng, geofence_radius,
                                  customer_type)
           VALUES ('tenant-1', 1, 'CDC Bakery', 40.7500000, -73.9900000, 120, 'retail')""",
    )
    assert new_id > 5

    async def get() -> httpx.Response:
        return await api.get(f"/api/sync/customers/{new_id}", headers=t1)

    resp = await eventually(get, lambda r: r.status_code == 200, within=WITHIN, what="insert")
    assert resp.json()["name"] == "CDC Bakery" and resp.json()["geofenceRadius"] == 120
    # The API may answer from the MariaDB fallback before the consumer applied the insert:
    # the geofence comes with the applied change, so wait for it too.
    fence = await eventually(
        lambda: _geofence(pg, new_id), lambda f: f is not None, within=WITHIN, what="geofence"
    )
    assert fence is not None and fence["radius_m"] == 120 and fence["covers"]
    # Another tenant's customer is not found, exactly like an unknown one.
    assert (await api.get(f"/api/sync/customers/{new_id}", headers=t2)).status_code == 404

    # The API answered from its in-process cache now; an update must get through it.
    await mysql_exec(
        cdc_settings,
        "UPDATE customers SET lat = 40.7000000, lng = -74.0100000, geofence_radius = 300, "
        "name = 'CDC Bakery (moved)' WHERE id = %s",
        new_id,
    )
    resp = await eventually(
        get, lambda r: r.json().get("lat") == 40.7, within=WITHIN, what="update via the API"
    )
    assert resp.json()["name"] == "CDC Bakery (moved)" and resp.json()["lng"] == -74.01
    fence = await eventually(
        lambda: _geofence(pg, new_id),
        lambda f: f is not None and f["radius_m"] == 300,
        within=WITHIN,
        what="geofence moved",
    )
    assert fence is not None
    assert fence["radius_m"] == 300 and not fence["covers"]  # moved away from the old place
    assert (fence["lon"], fence["lat"]) == pytest.approx((-74.01, 40.70))
    assert fence["off"] < 1.0  # the polygon is centred on the new point (metres)

    await mysql_exec(cdc_settings, "DELETE FROM customers WHERE id = %s", new_id)
    await eventually(get, lambda r: r.status_code == 404, within=WITHIN, what="delete via API")
    assert await pg.fetchval("SELECT count(*) FROM customers WHERE id = $1", new_id) == 0
    assert await _geofence(pg, new_id) is None
    status = (await api.get("/api/sync/status", headers=t1)).json()
    cache = status["customerCache"]
    assert cache["memoryHits"] + cache["redisHits"] + cache["postgresHits"] > 0
    assert cache["invalidations"] >= 1  # the CDC events evicted the in-process copy


async def test_users_from_the_source_log_in_until_disabled_or_deleted(
    cdc_settings: Settings, pg: asyncpg.Pool, api: httpx.AsyncClient
) -> None:
    password = "s3cret-from-mariadb"
    digest = hash_password(password)
    for email in ("ops@tenant1.com", "temp@tenant1.com"):
        await mysql_exec(
            cdc_settings,
            "INSERT INTO users (tenant_id, email, password_hash, name, role) "
            "VALUES ('tenant-1', %s, %s, 'CDC user', 'dispatcher')",
            email,
            digest,
        )
    tokens: dict[str, dict[str, Any]] = {}
    for email in ("ops@tenant1.com", "temp@tenant1.com"):
        resp = await eventually(
            lambda e=email: login(api, e, password, "tenant-1"),  # type: ignore[misc]
            lambda r: r.status_code == 200,
            within=WITHIN,
            what=f"login of new user {email}",
        )
        tokens[email] = resp.json()
        assert resp.json()["user"]["role"] == "dispatcher"
        # A refresh token as the auth routes store it (sha256 of the opaque token).
        await pg.execute(
            """INSERT INTO refresh_tokens (user_id, family_id, token_sha256, expires_at)
               SELECT id, gen_random_uuid(), md5(random()::text), now() + interval '1 day'
               FROM users WHERE email = $1""",
            email,
        )

    await mysql_exec(cdc_settings, "UPDATE users SET active = 0 WHERE email = 'ops@tenant1.com'")
    await mysql_exec(cdc_settings, "DELETE FROM users WHERE email = 'temp@tenant1.com'")
    for email in ("ops@tenant1.com", "temp@tenant1.com"):
        # Polled on the cache, not by logging in: each successful login stores a token.
        await eventually(
            lambda e=email: pg.fetchval(  # type: ignore[misc]
                "SELECT active FROM users WHERE email = $1", e
            ),
            lambda active: active is False,
            within=WITHIN,
            what=f"{email} disabled in the cache",
        )
        assert (await login(api, email, password, "tenant-1")).status_code == 401
        open_tokens = await pg.fetchval(
            """SELECT count(*) FROM refresh_tokens rt JOIN users u ON u.id = rt.user_id
               WHERE u.email = $1 AND rt.revoked_at IS NULL""",
            email,
        )
        assert open_tokens == 0
        refresh = tokens[email].get("refreshToken")
        if refresh is not None:  # the refresh route exists: the token stops working there too
            resp = await api.post("/api/auth/refresh", json={"refreshToken": refresh})
            assert resp.status_code == 401, resp.text
    # Wrong password for an active source user is still refused (login reads the cache).
    assert (await login(api, "admin@tenant1.com", "nope", "tenant-1")).status_code == 401


async def test_a_malformed_or_unexpected_event_goes_to_the_dlq_and_the_stream_goes_on(
    cdc_settings: Settings, pg: asyncpg.Pool, api: httpx.AsyncClient, t1: dict[str, str]
) -> None:
    topic = cdc_settings.kafka.topic("cdc.customers")
    wrong_table = {
        "op": "u",
        "after": {"id": 3},
        "source": {"table": "orders", "file": "mariadb-bin.000001", "pos": 4, "ts_ms": 0},
    }
    bad_value = {
        "op": "c",
        "after": {"id": 2, "tenant_id": "tenant-1", "lat": "123.0"},
        "source": {"table": "customers", "file": "mariadb-bin.000001", "pos": 4, "ts_ms": 0},
    }
    poison = [b"{not json", orjson.dumps(wrong_table), orjson.dumps(bad_value)]
    producer = create_producer(cdc_settings.kafka)
    await producer.start()
    try:
        for value in poison:
            await producer.send_and_wait(topic, key=b'{"id":2}', value=value, partition=0)
    finally:
        await producer.stop()
    await mysql_exec(cdc_settings, "UPDATE customers SET name = 'Midtown HQ' WHERE id = 2")
    await eventually(
        lambda: pg.fetchval("SELECT name FROM customers WHERE id = 2"),
        lambda name: name == "Midtown HQ",
        within=WITHIN,
        what="a change after the poison records",
    )
    dead = await _read_all(cdc_settings.kafka.topic(CDC_DLQ), len(poison), cdc_settings)
    assert sorted(r.value for r in dead) == sorted(poison)
    reasons = {dict(r.headers)["error"] for r in dead}
    assert reasons == {b"MalformedEvent", b"UnexpectedEvent"}
    assert all(dict(r.headers)["source"].startswith(topic.encode()) for r in dead)
    errors = await pg.fetchval("SELECT errors FROM sync_state WHERE table_name = 'customers'")
    assert errors >= len(poison)
    # Nothing of the poison was applied: customer 2 keeps its real coordinates.
    assert await pg.fetchval("SELECT lat FROM customers WHERE id = 2") == 40.7549


async def _read_all(topic: str, n: int, settings: Settings) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Any] = []
    try:
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200)
            found += [r for part in batch.values() for r in part]
            if len(found) >= n:
                break
    finally:
        await consumer.stop()
    return found


async def test_sync_routes_are_tenant_scoped_and_refuse_bad_input(
    cdc_settings: Settings, api: httpx.AsyncClient, t1: dict[str, str], t2: dict[str, str]
) -> None:
    resp = await eventually(
        lambda: api.get("/api/sync/orders", headers=t1),
        lambda r: r.status_code == 200 and r.json()["count"] == 3,
        what="tenant-1 orders",
    )
    assert {o["tenantId"] for o in resp.json()["items"]} == {"tenant-1"}
    assert (await api.get("/api/sync/orders/1", headers=t1)).json()["orderNumber"] == "ORD-1001"
    for path in ("accounts/1", "products/1", "orders/1", "customers/1"):
        assert (await api.get(f"/api/sync/{path}", headers=t1)).status_code == 200, path
        resp = await api.get(f"/api/sync/{path}", headers=t2)  # tenant-1's row
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", path
    for bad in ("orders/abc", "customers/1.5", "products/0", "accounts/-1", "orders/1e3"):
        resp = await api.get(f"/api/sync/{bad}", headers=t1)
        assert resp.status_code == 422 and resp.json()["error"] == "validation_error", bad
    resp = await api.get("/api/sync/orders/99999999", headers=t1)
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"
    assert (await api.get("/api/sync/customers?limit=0", headers=t1)).status_code == 422
    assert (await api.get("/api/sync/customers/1")).status_code == 401
    assert (await api.get("/api/sync/lag")).status_code == 401


async def test_lag_is_admin_only_and_health_has_a_cdc_section(
    cdc_settings: Settings, api: httpx.AsyncClient, t1: dict[str, str]
) -> None:
    await mysql_exec(
        cdc_settings,
        "INSERT INTO users (tenant_id, email, password_hash, name, role) "
        "VALUES ('tenant-1', 'dispatch@tenant1.com', %s, 'Dispatcher', 'dispatcher')",
        hash_password("admin123"),
    )
    dispatcher = await bearer(api, "dispatch@tenant1.com", "tenant-1")
    resp = await api.get("/api/sync/lag", headers=dispatcher)
    assert resp.status_code == 403 and resp.json()["error"] == "forbidden"
    # process-wide: another tenant's admin is not an operator (FLEETPULSE_AUTH__OPERATOR_TENANTS)
    other = await bearer(api, "admin@tenant2.com", "tenant-2")
    for path in ("/api/sync/lag", "/api/sync/status"):
        resp = await api.get(path, headers=other)
        assert resp.status_code == 403 and resp.json()["error"] == "forbidden", path

    snap = (await api.get("/api/sync/lag", headers=t1)).json()
    statuses = {"healthy", "warning", "degraded", "critical"}
    assert [t["table"] for t in snap["tables"]] == [
        "accounts",
        "customers",
        "products",
        "orders",
        "users",
    ]
    assert snap["status"] in statuses and all(t["status"] in statuses for t in snap["tables"])
    users = next(t for t in snap["tables"] if t["table"] == "users")
    assert users["eventsProcessed"] >= 3 and users["lagMs"] is not None
    assert snap["kafka"]["available"] is True
    topics = {p["topic"] for p in snap["kafka"]["partitions"]}
    assert cdc_settings.kafka.topic("cdc.customers") in topics
    assert all(p["lag"] >= 0 for p in snap["kafka"]["partitions"])

    health = (await api.get("/api/health")).json()
    assert health["cdc"]["status"] in statuses
    assert set(health["cdc"]["tables"]) == {"accounts", "customers", "products", "orders", "users"}


@pytest.mark.slow
async def test_consumer_killed_mid_stream_then_restarted_converges_to_the_source(
    database: str, topics: None, redis_clean: None
) -> None:
    """A separate pipeline (own MariaDB db, connector, topics, PostgreSQL db) with the
    consumer as a subprocess: SIGKILL while changes stream in, restart, compare row by row."""
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect
    from infrastructure.seed import seed

    base = make_settings("-kill")
    settings = with_source_db(
        base.model_copy(
            update={"pg": base.pg.model_copy(update={"database": f"fp_test_{RUN_ID}_kill"})}
        ),
        f"core_business_{RUN_ID}_kill",
    )
    admin = await connect(settings.pg, database="postgres")
    await admin.execute(f'CREATE DATABASE "{settings.pg.database}"')
    pg = await connect(settings.pg)
    env = settings_env(settings) | {
        "FLEETPULSE_MARIADB__DATABASE": settings.mariadb.database,
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    child: subprocess.Popen[bytes] | None = None
    try:
        await migrate(pg)
        await seed(pg)
        async with source_database(settings), connector(settings):

            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen([sys.executable, "-m", "api.cli", "cdc"], env=env)

            async def writes(first: int, count: int, until: asyncio.Event | None = None) -> int:
                """Stream changes (inserts, updates, deletes); return the next index."""
                i = first
                for i in range(first, first + count):
                    if until is not None and until.is_set():
                        return i
                    await mysql_exec(
                        settings,
                        "INSERT INTO customers (tenant_id, name, lat, lng, geofence_radius) "
                        "VALUES ('tenant-2', %s, 40.6, -73.9, 50)",
                        f"kill-{i}",
                    )
                    await mysql_exec(
                        settings,
                        "UPDATE products SET unit_price = unit_price + 1 WHERE id = %s",
                        i % 5 + 1,
                    )
                    if i % 3 == 0:
                        await mysql_exec(
                            settings,
                            "UPDATE customers SET geofence_radius = geofence_radius + 7 "
                            "WHERE name = %s",
                            f"kill-{i - 1}",
                        )
                    if i % 10 == 0:
                        await mysql_exec(
                            settings, "DELETE FROM customers WHERE name = %s", f"kill-{i - 5}"
                        )
                return i + 1

            child = spawn()
            # Writes go on until the kill (bounded), so the consumer dies mid-stream.
            killed = asyncio.Event()
            writer = asyncio.create_task(writes(0, 3000, killed))
            await eventually(
                lambda: pg.fetchval("SELECT coalesce(sum(events_processed), 0) FROM sync_state"),
                lambda n: n >= 40,
                within=60,
                what="the consumer applying changes",
            )
            assert not writer.done(), "the writes finished before the kill: not mid-stream"
            child.kill()  # SIGKILL, mid-stream: no offsets committed for what was in flight
            child.wait(10)
            killed.set()
            await writes(await writer, 30)  # more changes while it is down
            child = spawn()

            async def differences() -> list[str]:
                out = []
                for sql_src, sql_pg in COMPARE:
                    src = rows(await mysql_rows(settings, sql_src))
                    dst = rows([tuple(r.values()) for r in await pg.fetch(sql_pg)])
                    if src != dst:
                        out.append(f"{sql_pg}: {len(src)} source rows vs {len(dst)} cached")
                return out

            await eventually(differences, lambda d: d == [], within=90, what="cache == source")
            fences = await pg.fetchval(
                """SELECT count(*) FROM customers c JOIN geofences g ON g.customer_id = c.id
                   WHERE g.radius_m = c.geofence_radius_m
                     AND ST_Equals(g.center, ST_SetSRID(ST_MakePoint(c.lng, c.lat), 4326))"""
            )
            assert fences == await pg.fetchval("SELECT count(*) FROM customers")
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait(20)
        await pg.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.pg.database}" WITH (FORCE)')
        await admin.close()


COMPARE = [
    (
        "SELECT id, tenant_id, name, lat, lng, geofence_radius, active FROM customers ORDER BY id",
        "SELECT id, tenant_id, name, lat, lng, geofence_radius_m, active FROM customers "
        "WHERE deleted_at IS NULL ORDER BY id",
    ),
    (
        "SELECT id, tenant_id, sku, name, unit_price, active FROM products ORDER BY id",
        "SELECT id, tenant_id, sku, name, unit_price, active FROM products_cache ORDER BY id",
    ),
    (
        "SELECT id, tenant_id, order_number, status, total FROM orders ORDER BY id",
        "SELECT id, tenant_id, order_number, status, total FROM orders_cache ORDER BY id",
    ),
    (
        "SELECT id, tenant_id, email, role, active FROM users ORDER BY id",
        "SELECT source_id, tenant_id, email, role, active FROM users "
        "WHERE source_id IS NOT NULL ORDER BY source_id",
    ),
]
