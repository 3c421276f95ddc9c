"""The socket.io live feed over a real uvicorn server with real socket.io clients.

Positions are produced straight onto the run's ``gps.positions.enriched`` topic (what the
enrichment worker publishes), except in the visit test, which drives a stop through the
Traccar webhook with the in-process worker running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
import socketio
import uvicorn
import websockets
from aiokafka import AIOKafkaProducer

from api.live.gateway import LiveGateway
from api.main import create_app, with_live_feed
from api.security import Principal, hash_password, issue_access_token
from infrastructure.kafka import GPS_POSITIONS_ENRICHED
from infrastructure.settings import Settings
from tests.conftest import settings_env
from tests.helpers import eventually
from tests.integration.api_support import make_account

NS = "/tracking"
LON0, LAT0 = 24.93, 60.17


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    gateway: LiveGateway
    settings: Settings


@pytest.fixture(scope="module")
async def live(
    settings: Settings, database: str, topics: None, redis_clean: None
) -> AsyncIterator[LiveServer]:
    """The api with the live feed on a free port, batching every 100 ms, cdc:lag every 0.5 s."""
    fast = settings.model_copy(
        update={
            "live": settings.live.model_copy(
                update={"batch_interval_ms": 100, "cdc_lag_interval_s": 0.5}
            )
        }
    )
    app = create_app(fast)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            with_live_feed(app), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    gateway: LiveGateway = app.state.live_gateway
    async with asyncio.timeout(30):
        await gateway.wait_ready()
    yield LiveServer(f"http://127.0.0.1:{port}", gateway, fast)
    server.should_exit = True
    await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
async def producer(settings: Settings, topics: None) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5)
    await p.start()
    yield p
    await p.stop()


def token_for(
    settings: Settings, tenant: str, role: str = "admin", driver_id: str | None = None
) -> str:
    principal = Principal(
        user_id=str(uuid.uuid4()),
        tenant_id=tenant,
        role=role,  # type: ignore[arg-type]
        email=f"{role}@{tenant}.test",
        driver_id=driver_id,
    )
    return issue_access_token(principal, settings.auth)


@dataclass
class Viewer:
    """A socket.io client that records what it receives."""

    sio: socketio.AsyncClient
    events: dict[str, list[Any]] = field(default_factory=dict)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def got(self, name: str) -> list[Any]:
        return self.events.setdefault(name, [])

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, namespace=NS, timeout=10)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


async def connect(url: str, token: str | None, *, batches: bool = True) -> Viewer:
    """A viewer; ``batches`` opts into positions:batch (else the seed's position:update)."""
    sio = socketio.AsyncClient(reconnection=False)
    viewer = Viewer(sio)
    for name in ("positions:batch", "position:update", "visit:update", "error", "cdc:lag"):

        def record(data: Any = None, _name: str = name) -> None:
            viewer.got(_name).append(data)

        sio.on(name, record, namespace=NS)

    def gone(*_: Any) -> None:
        viewer.disconnected.set()

    sio.on("disconnect", gone, namespace=NS)
    await sio.connect(
        url,
        namespaces=[NS],
        auth={"token": token, "batches": batches} if token is not None else None,
        transports=["websocket"],
        wait_timeout=10,
    )
    return viewer


def enriched(tenant: str, driver: str, lon: float, lat: float, **extra: Any) -> bytes:
    now = int(time.time() * 1000)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now / 1000)) + f".{now % 1000:03d}+00:00"
    return orjson.dumps(
        {
            "schema": 1,
            "tenantId": tenant,
            "driverId": driver,
            "driverName": f"driver {driver[:8]}",
            "deviceId": f"DEV-{driver[:8]}",
            "fixTime": iso,
            "fixTimeMs": now,
            "receivedAt": iso,
            "lat": lat,
            "lon": lon,
            "speed": 20.0,
            "course": 90.0,
            "routeId": None,
            **extra,
        }
    )


async def produce(
    producer: AIOKafkaProducer, settings: Settings, messages: list[tuple[str, bytes]]
) -> None:
    topic = settings.kafka.topic(GPS_POSITIONS_ENRICHED)
    futures = [await producer.send(topic, key=k.encode(), value=v) for k, v in messages]
    await asyncio.gather(*futures)


async def make_driver(pg: asyncpg.Pool, tenant: str) -> str:
    driver = await pg.fetchval(
        """INSERT INTO drivers (tenant_id, name, device_unique_id) VALUES ($1, $2, $3)
           RETURNING id::text""",
        tenant,
        f"live {uuid.uuid4().hex[:6]}",
        f"LIVE-{uuid.uuid4().hex[:10]}",
    )
    return str(driver)


async def make_route(pg: asyncpg.Pool, tenant: str, driver: str) -> str:
    route = await pg.fetchval(
        """INSERT INTO routes (tenant_id, driver_id, scheduled_date, status)
           VALUES ($1, $2::uuid, (now() AT TIME ZONE 'UTC')::date, 'planned')
           RETURNING id::text""",
        tenant,
        driver,
    )
    return str(route)


def batch_drivers(frames: list[Any]) -> list[str]:
    return [p["driverId"] for f in frames for p in f["positions"]]


async def test_two_tenants_never_see_each_others_drivers(
    live: LiveServer, producer: AIOKafkaProducer, pg: asyncpg.Pool
) -> None:
    rng = random.Random(7)
    fleets = {t: [str(uuid.uuid4()) for _ in range(60)] for t in ("tenant-1", "tenant-2")}
    foreign_driver = await make_driver(pg, "tenant-2")
    foreign_route = await make_route(pg, "tenant-2", foreign_driver)
    viewers = {
        t: [
            await connect(live.url, token_for(live.settings, t, role))
            for role in ("admin", "dispatcher") * 10
        ]
        for t in fleets
    }
    probe = viewers["tenant-1"][0]
    # Asking for another tenant's rooms: an error, no join (bad payloads too).
    assert (await probe.call("join-tenant", {"tenantId": "tenant-2"}))["ok"] is False
    assert (await probe.call("join-driver", {"driverId": foreign_driver}))["ok"] is False
    assert (await probe.call("join-route", {"routeId": foreign_route}))["ok"] is False
    assert (await probe.call("join-driver", {"driverId": "not-a-uuid"}))["ok"] is False
    assert (await probe.call("join-tenant", {"tenantId": 42}))["ok"] is False
    assert (await probe.call("join-route", None))["ok"] is False
    assert (await probe.call("subscribe-bbox", {"bbox": [0, 91, 1, 92]}))["ok"] is False
    assert len(probe.got("error")) == 7
    assert (await probe.call("join-tenant", {"tenantId": "tenant-1"}))["ok"] is True

    everyone = [v for vs in viewers.values() for v in vs]

    def frames_seen() -> int:
        return sum(len(v.got("positions:batch")) for v in everyone)

    deadline = time.monotonic() + 120
    while frames_seen() < 3000:  # keep the fleets moving until thousands of frames arrived
        assert time.monotonic() < deadline, f"only {frames_seen()} frames"
        messages = [
            (d, enriched(t, d, LON0 + rng.uniform(-0.1, 0.1), LAT0 + rng.uniform(-0.1, 0.1)))
            for t, drivers in fleets.items()
            for d in rng.sample(drivers, 40)
        ]
        messages.append((foreign_driver, enriched("tenant-2", foreign_driver, LON0, LAT0)))
        await produce(producer, live.settings, messages)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    frames = 0
    for tenant, vs in viewers.items():
        own = set(fleets[tenant]) | ({foreign_driver} if tenant == "tenant-2" else set())
        for v in vs:
            got = v.got("positions:batch")
            frames += len(got)
            seen = batch_drivers(got)
            assert seen, "every viewer gets frames"
            assert set(seen) <= own, f"{tenant} saw another tenant's drivers"
            assert {f["room"] for f in got} == {f"tenant:{tenant}"}
            assert not v.got("position:update")  # not in any driver or route room
            # one frame per room per interval: a driver at most once per frame
            for f in got:
                ids = [p["driverId"] for p in f["positions"]]
                assert len(ids) == len(set(ids))
    assert frames >= 3000
    assert set(batch_drivers(viewers["tenant-1"][3].got("positions:batch"))) == set(
        fleets["tenant-1"]
    )
    for v in everyone:
        await v.close()


async def test_bbox_viewer_gets_only_drivers_inside_and_get_active_drivers(
    live: LiveServer, producer: AIOKafkaProducer, pg: asyncpg.Pool, settings: Settings
) -> None:
    inside, outside = str(uuid.uuid4()), str(uuid.uuid4())
    viewer = await connect(live.url, token_for(live.settings, "tenant-1", "dispatcher"))
    ack = await viewer.call("subscribe-bbox", {"bbox": [24.9, 60.1, 25.0, 60.2]})
    assert ack == {"ok": True}
    for _ in range(20):
        await produce(
            producer,
            live.settings,
            [
                (inside, enriched("tenant-1", inside, 24.95, 60.15)),
                (outside, enriched("tenant-1", outside, 25.5, 60.15)),
            ],
        )
        await asyncio.sleep(0.05)
    await eventually(
        lambda: asyncio.sleep(0, batch_drivers(viewer.got("positions:batch"))),
        lambda ids: len(ids) >= 5,
        what="bbox frames",
    )
    assert set(batch_drivers(viewer.got("positions:batch"))) == {inside}
    # the entry fields docs/live-feed.md lists
    assert set(viewer.got("positions:batch")[-1]["positions"][0]) == {
        "driverId", "driverName", "lat", "lon", "speed", "course", "fixTime", "fixTimeMs",
        "receivedAt", "routeId", "nextVisitId", "nextCustomerName", "etaSeconds", "geofenceId",
    }  # fmt: skip
    # get-active-drivers reads Redis latest (written by the worker; here by hand)
    from infrastructure.redis import RedisKeys, create_redis

    redis, keys = create_redis(settings.redis), RedisKeys(settings.redis.key_prefix)
    mine, theirs = await make_driver(pg, "tenant-1"), await make_driver(pg, "tenant-2")
    for tenant, d in (("tenant-1", mine), ("tenant-2", theirs)):
        await redis.set(keys.latest(d), enriched(tenant, d, LON0, LAT0))
        await redis.geoadd(keys.geo(tenant), (LON0, LAT0, d))
    await redis.aclose()
    active = await viewer.call("get-active-drivers")
    ids = {a["driverId"] for a in active}
    assert mine in ids and theirs not in ids
    assert all(a["tenantId"] == "tenant-1" for a in active)
    await viewer.close()


async def test_cdc_lag_goes_to_operators_only_at_every_interval(live: LiveServer) -> None:
    """cdc:lag spans every tenant's tables: an operator tenant's admins get it, another
    tenant's admin does not (FLEETPULSE_AUTH__OPERATOR_TENANTS)."""
    assert live.settings.auth.operator_tenant_set() == {"tenant-1"}
    admin = await connect(live.url, token_for(live.settings, "tenant-1", "admin"))
    other_admin = await connect(live.url, token_for(live.settings, "tenant-2", "admin"))
    dispatcher = await connect(live.url, token_for(live.settings, "tenant-1", "dispatcher"))
    driver = await connect(
        live.url, token_for(live.settings, "tenant-1", "driver", driver_id=str(uuid.uuid4()))
    )
    lags = await eventually(
        lambda: asyncio.sleep(0, admin.got("cdc:lag")),
        lambda got: len(got) >= 3,
        what="three cdc:lag snapshots",
    )
    for snapshot in lags:
        assert {"timestamp", "status", "tables", "kafka", "totals", "thresholdsSeconds"} <= set(
            snapshot
        )
        assert snapshot["status"] in ("healthy", "warning", "degraded", "critical")
    stamps = [x["timestamp"] for x in lags]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert dispatcher.got("cdc:lag") == [] and driver.got("cdc:lag") == []
    assert other_admin.got("cdc:lag") == []
    for v in (admin, other_admin, dispatcher, driver):
        await v.close()


async def test_a_driver_joins_only_their_own_driver_room(
    live: LiveServer,
    producer: AIOKafkaProducer,
    pg: asyncpg.Pool,
    client: httpx.AsyncClient,
) -> None:
    me, colleague = await make_driver(pg, "tenant-1"), await make_driver(pg, "tenant-1")
    my_route, their_route = (
        await make_route(pg, "tenant-1", me),
        await make_route(pg, "tenant-1", colleague),
    )
    email = f"drv-{uuid.uuid4().hex[:8]}@tenant1.com"
    await pg.execute(
        """INSERT INTO users (tenant_id, email, password_hash, name, role, driver_id)
           VALUES ('tenant-1', $1, $2, 'Live Driver', 'driver', $3::uuid)""",
        email,
        hash_password("driver-pass-123"),
        me,
    )
    resp = await client.post(
        "/api/auth/login",
        json={"email": email, "password": "driver-pass-123", "tenantId": "tenant-1"},
    )
    assert resp.status_code == 200, resp.text
    driver = await connect(live.url, resp.json()["accessToken"])
    assert (await driver.call("join-driver", {"driverId": colleague}))["ok"] is False
    assert (await driver.call("join-tenant", {"tenantId": "tenant-1"}))["ok"] is False
    assert (await driver.call("join-route", {"routeId": their_route}))["ok"] is False
    assert len(driver.got("error")) == 3
    assert (await driver.call("join-driver", {"driverId": me}))["ok"] is True
    assert (await driver.call("join-route", {"routeId": my_route}))["ok"] is True
    for _ in range(10):
        await produce(
            producer,
            live.settings,
            [
                (me, enriched("tenant-1", me, LON0, LAT0, routeId=my_route)),
                (colleague, enriched("tenant-1", colleague, LON0, LAT0, routeId=their_route)),
            ],
        )
        await asyncio.sleep(0.05)
    await eventually(
        lambda: asyncio.sleep(0, len(driver.got("position:update"))),
        lambda n: n >= 10,
        what="own position:update",
    )
    await asyncio.sleep(0.3)
    assert {u["driverId"] for u in driver.got("position:update")} == {me}
    assert set(batch_drivers(driver.got("positions:batch"))) == {me}
    active = await driver.call("get-active-drivers")
    assert {a["driverId"] for a in active} <= {me}
    await driver.close()


@pytest.mark.parametrize("kind", ["expired", "forged", "garbage", "missing", "refresh-typ"])
async def test_a_bad_token_gets_an_error_and_a_disconnect(live: LiveServer, kind: str) -> None:
    secret = live.settings.auth.jwt_secret.get_secret_value()
    now = int(time.time())
    claims = {"sub": "u", "tenant": "tenant-1", "role": "admin", "typ": "access"}
    token: str | None = {
        "expired": jwt.encode({**claims, "iat": now - 3600, "exp": now - 60}, secret, "HS256"),
        "forged": jwt.encode({**claims, "iat": now, "exp": now + 600}, "x" * 40, "HS256"),
        "garbage": "not.a.token",
        "missing": None,
        "refresh-typ": jwt.encode(
            {**claims, "typ": "refresh", "iat": now, "exp": now + 600}, secret, "HS256"
        ),
    }[kind]
    before = live.gateway.counters.refused_connects
    viewer = await connect(live.url, token)
    async with asyncio.timeout(10):
        await viewer.disconnected.wait()
    assert viewer.got("error") and "token" in viewer.got("error")[0]["message"]
    assert live.gateway.counters.refused_connects == before + 1
    await viewer.close()


async def test_a_reconnecting_client_gets_frames_again(
    live: LiveServer, producer: AIOKafkaProducer
) -> None:
    driver = str(uuid.uuid4())
    token = token_for(live.settings, "tenant-2", "dispatcher")
    stop = asyncio.Event()

    async def keep_producing() -> None:
        while not stop.is_set():
            await produce(producer, live.settings, [(driver, enriched("tenant-2", driver, 1, 1))])
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(keep_producing())
    try:
        first = await connect(live.url, token)
        first_sid = first.sio.get_sid(NS)
        await eventually(
            lambda: asyncio.sleep(0, len(first.got("positions:batch"))), lambda n: n >= 3
        )
        await first.close()
        await eventually(
            lambda: asyncio.sleep(0, first_sid in live.gateway.clients), lambda there: not there
        )
        second = await connect(live.url, token)
        await eventually(
            lambda: asyncio.sleep(0, len(second.got("positions:batch"))), lambda n: n >= 3
        )
        assert first.sio.connected is False and second.sio.get_sid(NS) in live.gateway.clients
        await second.close()
    finally:
        stop.set()
        await feeder


@pytest.mark.parametrize("batches", [True, False], ids=["batch-frames", "seed-updates"])
async def test_a_slow_client_is_bounded_and_its_drops_are_counted(
    live: LiveServer, producer: AIOKafkaProducer, client: httpx.AsyncClient, batches: bool
) -> None:
    """A socket that stops reading: its queue stays at the limit, drops are counted.

    The limit: ``client_queue_frames`` batch frames, or for a seed client (position:update)
    one pending update per driver (a newer one replaces it: counted as a drop)."""
    token = token_for(live.settings, "tenant-1", "dispatcher")
    ws_url = live.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(ws_url, max_queue=1, max_size=None, compression=None) as ws:
        assert str(await ws.recv()).startswith("0")  # Engine.IO open
        auth = {"token": token, "batches": batches}
        await ws.send(f"40{NS}," + orjson.dumps(auth).decode())
        assert str(await ws.recv()).startswith(f"40{NS},")
        sid = next(s for s, f in live.gateway.clients.items() if f.token == token)
        feed = live.gateway.clients[sid]
        drivers = [str(uuid.uuid4()) for _ in range(500)]
        # ~2 MB frames: the kernel's socket buffers (up to tens of MB) fill fast
        name = random.Random(3).randbytes(2000).hex()
        dropped_before = live.gateway.counters.dropped
        depths = []
        for _ in range(60):  # 10 frames per second, never read
            await produce(
                producer,
                live.settings,
                [(d, enriched("tenant-1", d, LON0, LAT0, driverName=name)) for d in drivers],
            )
            depths.append(len(feed))
            await asyncio.sleep(0.1)
        await eventually(
            lambda: asyncio.sleep(0, feed.dropped), lambda n: n > 0, what="drops", within=30
        )
        limit = live.settings.live.client_queue_frames if batches else len(drivers)
        assert max(depths) <= limit and len(feed) <= limit
        eio = live.gateway.sio.eio.sockets[feed.eio_sid]
        assert eio.queue.qsize() <= live.settings.live.socket_backlog_packets
        # frames go straight to the websocket's transport: its buffer is bounded too (the
        # limit plus the frame that crossed it, ~2 MB here)
        assert feed.direct is not None
        assert feed.direct.buffered() <= live.settings.live.socket_backlog_bytes + 3_000_000
        assert live.gateway.counters.dropped - dropped_before >= feed.dropped
        admin = {"Authorization": f"Bearer {token_for(live.settings, 'tenant-1')}"}
        async with httpx.AsyncClient(base_url=live.url) as http:
            resp = await http.get("/api/live/metrics", headers=admin)
            assert resp.status_code == 200, resp.text
            m = resp.json()
            assert m["dropped"] >= feed.dropped > 0
            assert m["maxClientQueue"] <= limit
            assert m["clients"] >= 1 and m["rooms"] >= 1 and m["directClients"] >= 1
            if batches:
                assert m["framesPerSecond"] > 0
            else:
                assert m["positionUpdatesSent"] > 0
            staff = {"Authorization": f"Bearer {token_for(live.settings, 'tenant-1', 'driver')}"}
            assert (await http.get("/api/live/metrics", headers=staff)).status_code == 403
            tenant2 = {"Authorization": f"Bearer {token_for(live.settings, 'tenant-2')}"}
            assert (await http.get("/api/live/metrics", headers=tenant2)).status_code == 403
            assert (await http.get("/api/live/metrics")).status_code == 401


async def test_a_visit_arrival_reaches_the_route_room(
    live: LiveServer,
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    pg: asyncpg.Pool,
    worker: None,
) -> None:
    from tests.integration.test_enrichment import (
        drive_start_ms,
        make_customer,
        make_route,
        post_fixes,
        utc_day,
    )
    from tests.integration.test_enrichment import make_driver as make_tracked_driver

    driver, device = await make_tracked_driver(pg, "LIVE-VISIT")
    cust, _ = await make_customer(pg, 0, 0, 100)
    t0 = drive_start_ms(2 * 3600)
    route, (visit,) = await make_route(pg, driver, [(-1500, 0), (1500, 0)], [cust], day=utc_day(t0))
    viewer = await connect(live.url, token_for(live.settings, "tenant-1", "dispatcher"))
    assert (await viewer.call("join-route", {"routeId": route}))["ok"] is True
    fixes: list[tuple[int, float, float, float | None]] = []
    t, x = 0, -600.0
    while x < 0:
        fixes.append((t0 + t * 1000, x, 0.0, 10.0))
        x += 20
        t += 2
    for _ in range(60):  # two minutes at the customer
        fixes.append((t0 + t * 1000, 0.0, 0.0, 0.0))
        t += 2
    await post_fixes(client, traccar_headers, device, fixes)
    updates = await eventually(
        lambda: asyncio.sleep(0, list(viewer.got("visit:update"))),
        lambda us: any(u["type"] == "visit.arrived" for u in us),
        within=60,
        what="visit:update arrived",
    )
    arrived = next(u for u in updates if u["type"] == "visit.arrived")
    assert arrived["visitId"] == visit and arrived["routeId"] == route
    assert arrived["tenantId"] == "tenant-1"
    # The route room also gets the driver's positions, seed-style. They travel on another
    # topic than visit events (the worker publishes a batch's events first), so they may
    # reach the viewer after the arrival: wait for them rather than expect them already.
    await eventually(
        lambda: asyncio.sleep(0, list(viewer.got("position:update"))),
        lambda us: any(u["driverId"] == driver for u in us),
        within=30,
        what="position:update for the driver in the route room",
    )
    await viewer.close()


@contextlib.contextmanager
def api_process(settings: Settings, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **settings_env(settings),
        "FLEETPULSE_LIVE__BATCH_INTERVAL_MS": "100",
        "FLEETPULSE_INGEST__OSMAND_PORT": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_asgi", "--factory"]
        + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
async def test_two_api_processes_both_deliver_frames(
    settings: Settings, database: str, topics: None, producer: AIOKafkaProducer
) -> None:
    ports = [free_port(), free_port()]
    with api_process(settings, ports[0]), api_process(settings, ports[1]):
        admin = {"Authorization": f"Bearer {token_for(settings, 'tenant-1')}"}
        async with httpx.AsyncClient() as http:
            for port in ports:

                async def up(port: int = port) -> int:
                    try:
                        r = await http.get(
                            f"http://127.0.0.1:{port}/api/live/metrics", headers=admin
                        )
                    except httpx.TransportError:
                        return 0
                    return r.status_code

                await eventually(up, lambda s: s == 200, within=60, what=f"api on {port}")
            viewers = [
                await connect(f"http://127.0.0.1:{p}", token_for(settings, "tenant-1"))
                for p in ports
            ]
            drivers = [str(uuid.uuid4()) for _ in range(20)]
            for _ in range(40):
                await produce(
                    producer, settings, [(d, enriched("tenant-1", d, LON0, LAT0)) for d in drivers]
                )
                await asyncio.sleep(0.1)
            for v in viewers:

                async def seen_by(v: Viewer = v) -> set[str]:
                    return set(batch_drivers(v.got("positions:batch")))

                await eventually(
                    seen_by,
                    lambda seen: seen >= set(drivers),
                    within=30,
                    what="every driver on each process",
                )
            procs = set()
            for port in ports:
                r = await http.get(f"http://127.0.0.1:{port}/api/live/metrics", headers=admin)
                procs.add(r.json()["process"])
                assert r.json()["clients"] >= 1
                # uvicorn's CLI runs uvloop: its websockets get frames written directly too
                assert r.json()["directClients"] == r.json()["clients"]
            assert len(procs) == 2
            for v in viewers:
                await v.close()


async def test_a_socket_is_dropped_when_its_token_expires_or_its_user_logs_out(
    live: LiveServer, client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    """It kept receiving after expiry or logout until it next sent something."""
    ended_before = live.gateway.counters.sessions_ended
    secret = live.settings.auth.jwt_secret.get_secret_value()
    now = int(time.time())
    claims = {"sub": str(uuid.uuid4()), "tenant": "tenant-1", "role": "admin", "typ": "access"}
    short = jwt.encode({**claims, "iat": now, "exp": now + 2}, secret, "HS256")
    expiring = await connect(live.url, short)
    # a real user's socket, then that user logs out (through the api, as the dashboard does)
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    mine = await connect(live.url, acct.tokens["accessToken"])
    other = await connect(live.url, token_for(live.settings, "tenant-1"))
    await asyncio.sleep(2.5)  # the short token is now past its exp; nobody sent anything
    resp = await client.post(
        "/api/auth/logout", headers={"Authorization": f"Bearer {acct.tokens['accessToken']}"}
    )
    assert resp.status_code == 204
    # what the session loop runs every few seconds (it may have dropped them already)
    await live.gateway.check_sessions()
    async with asyncio.timeout(10):
        await expiring.disconnected.wait()
        await mine.disconnected.wait()
    assert "expired" in expiring.got("error")[-1]["message"]
    assert "logged out" in mine.got("error")[-1]["message"]
    assert not other.disconnected.is_set()  # a valid session stays
    assert live.gateway.counters.sessions_ended >= ended_before + 2
    await other.close()


async def test_one_socket_is_bounded_in_rooms_and_in_requests(
    live: LiveServer, pg: asyncpg.Pool
) -> None:
    viewer = await connect(live.url, token_for(live.settings, "tenant-1"))
    cap = live.settings.live.max_rooms_per_client
    drivers = [await make_driver(pg, "tenant-1") for _ in range(cap + 2)]
    answers = []
    for i, d in enumerate(drivers):
        answers.append(await viewer.call("join-driver", {"driverId": d}))
        if i % 5 == 4:
            await asyncio.sleep(0.6)  # stay within the request budget: this is about rooms
    joined = [a for a in answers if a.get("ok")]
    refused = [a for a in answers if not a.get("ok")]
    assert joined and len(refused) >= 2 and all("rooms" in a["error"] for a in refused)
    assert answers[: len(joined)] == joined  # the first ones in, the rest refused
    # its default rooms count too: the socket is in exactly the cap
    assert sorted(len(f.rooms) for f in live.gateway.clients.values())[-1] == cap
    await viewer.close()

    greedy = await connect(live.url, token_for(live.settings, "tenant-1"))
    burst = live.settings.live.client_request_burst
    before = live.gateway.counters.rate_limited
    for _ in range(int(burst / 10) + 3):  # each costs 10 of the burst
        await greedy.call("get-active-drivers")
    assert live.gateway.counters.rate_limited > before  # refused once the budget was spent
    assert any("too many requests" in e["message"] for e in greedy.got("error"))
    await asyncio.sleep(1.5)  # the budget refills
    assert (await greedy.call("join-tenant", "tenant-1")).get("ok") is True
    await greedy.close()


async def test_health_has_the_seeds_websocket_block_from_this_processs_gateway(
    live: LiveServer, pg: asyncpg.Pool
) -> None:
    async def block() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=live.url) as http:
            resp = await http.get("/api/health")
        assert resp.status_code == 200
        ws: dict[str, Any] = resp.json()["websocket"]
        return ws

    before = await block()
    assert set(before) == {"connectedClients", "activeRooms"}
    assert before == live.gateway.seed_stats()
    driver = await make_driver(pg, "tenant-2")
    viewer = await connect(live.url, token_for(live.settings, "tenant-2", "dispatcher"))
    assert (await viewer.call("join-driver", {"driverId": driver}))["ok"] is True
    after = await block()
    assert after["connectedClients"] == before["connectedClients"] + 1
    assert after["activeRooms"] > before["activeRooms"]  # at least the new driver room
    assert after == live.gateway.seed_stats()
    # a refused connect (bad token) is not counted once it is dropped
    bad = await connect(live.url, "not-a-token")
    await asyncio.wait_for(bad.disconnected.wait(), 10)
    await viewer.close()
    assert await eventually(block, lambda b: b == before, within=10) == before


async def test_get_active_drivers_leaves_stale_ones_out_unless_asked(
    live: LiveServer, pg: asyncpg.Pool, settings: Settings
) -> None:
    from infrastructure.redis import RedisKeys, create_redis

    redis, keys = create_redis(settings.redis), RedisKeys(settings.redis.key_prefix)
    fresh, stale = await make_driver(pg, "tenant-2"), await make_driver(pg, "tenant-2")
    window_ms = live.settings.live.active_window_s * 1000
    for d, age_ms in ((fresh, 2_000), (stale, window_ms + 60_000)):
        msg = orjson.loads(enriched("tenant-2", d, LON0, LAT0))
        msg["fixTimeMs"] -= age_ms
        await redis.set(keys.latest(d), orjson.dumps(msg))
        await redis.geoadd(keys.geo("tenant-2"), (LON0, LAT0, d))
    await redis.aclose()
    viewer = await connect(live.url, token_for(live.settings, "tenant-2", "dispatcher"))
    default = {a["driverId"]: a for a in await viewer.call("get-active-drivers")}
    assert fresh in default and stale not in default
    assert "ageS" not in default[fresh]  # the seed's shape when not asked for stale ones
    await asyncio.sleep(1.1)  # each call costs 10 of the request budget
    every = {
        a["driverId"]: a for a in await viewer.call("get-active-drivers", {"includeStale": True})
    }
    assert {fresh, stale} <= set(every)
    assert every[fresh]["ageS"] < 10 and every[stale]["ageS"] >= window_ms / 1000 + 60
    await asyncio.sleep(1.1)
    # anything but a literal true is the default
    odd = await viewer.call("get-active-drivers", {"includeStale": "yes"})
    assert stale not in {a["driverId"] for a in odd}
    await viewer.close()


async def test_a_seed_client_in_its_tenant_room_gets_position_update_coalesced(
    live: LiveServer, producer: AIOKafkaProducer
) -> None:
    # The seed's client: auto-joined to its tenant room, listens for position:update only.
    seed = await connect(
        live.url, token_for(live.settings, "tenant-2", "dispatcher"), batches=False
    )
    ours = await connect(live.url, token_for(live.settings, "tenant-2", "dispatcher"))
    late = await connect(
        live.url, token_for(live.settings, "tenant-2", "dispatcher"), batches=False
    )
    assert await late.call("subscribe-batches") == {"ok": True, "batches": True}
    drivers = [str(uuid.uuid4()) for _ in range(5)]
    foreign = str(uuid.uuid4())
    # 20 fixes per driver in one go: the seed client gets at most one per driver per interval
    messages = []
    for k in range(20):
        for d in drivers:
            messages.append((d, enriched("tenant-2", d, LON0 + k * 1e-4, LAT0, seq=k)))
    messages.append((foreign, enriched("tenant-1", foreign, LON0, LAT0)))
    await produce(producer, live.settings, messages)

    def newest(v: Viewer) -> dict[str, int]:
        out: dict[str, int] = {}
        for u in v.got("position:update"):
            out[u["driverId"]] = max(out.get(u["driverId"], -1), u["seq"])
        return out

    await eventually(
        lambda: asyncio.sleep(0, newest(seed)),
        lambda n: n == dict.fromkeys(drivers, 19),
        what="each driver's newest fix as position:update",
    )
    await asyncio.sleep(0.3)
    updates = seed.got("position:update")
    assert {u["driverId"] for u in updates} == set(drivers)  # no other tenant's driver
    assert len(updates) < 20 * len(drivers)  # coalesced per driver per interval
    assert updates[-1]["tenantId"] == "tenant-2" and "driverName" in updates[-1]  # full message
    assert seed.got("positions:batch") == []
    # a client that opted in (auth field or subscribe-batches) gets frames and no updates
    for v in (ours, late):
        await eventually(
            lambda v=v: asyncio.sleep(0, set(batch_drivers(v.got("positions:batch")))),
            lambda got: set(drivers) <= got,
            what="batch frames",
        )
        assert v.got("position:update") == []
    # switching back is allowed; a bad payload is ignored, not an error
    assert await late.call("unsubscribe-batches", {"whatever": 1}) == {"ok": True, "batches": False}
    await produce(
        producer,
        live.settings,
        [(drivers[0], enriched("tenant-2", drivers[0], LON0, LAT0, seq=99))],
    )
    await eventually(
        lambda: asyncio.sleep(0, newest(late)), lambda n: n.get(drivers[0]) == 99, what="update"
    )
    for v in (seed, ours, late):
        await v.close()
