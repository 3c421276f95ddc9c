"""Every receiver against the real services: Traccar JSON and URL forwarding, OsmAnd (GET,
form POST, Traccar Client JSON, on /api/osmand and on its own port) and the batch endpoint.

The same fix in every format must become the same message on ``gps.positions``; bad input
must get the protocol's 4xx and produce nothing (Kafka end offsets unchanged).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis

from api.osmand_server import OsmAndServer
from infrastructure.kafka import GPS_POSITIONS, end_offsets
from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from ingest.model import Position
from tests.conftest import settings_env
from tests.helpers import eventually, iso, traccar_forward

pytestmark = pytest.mark.usefixtures("worker")

LAT, LON = 40.7130, -74.0055
SPEED_KN = 10.0
# "@port": the same OsmAnd request to the protocol's own port (api/osmand_server.py, "/")
# instead of /api/osmand on the main app.
ON_PORT = ("osmand-get@port", "osmand-form@port", "osmand-json@port")
RECEIVERS = (
    "traccar-json",
    "traccar-url",
    "osmand-get",
    "osmand-form",
    "osmand-json",
    *ON_PORT,
    "batch",
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def whole_second_ms(ago_s: int) -> int:
    """A fix time on a whole second (OsmAnd's timestamp has second resolution)."""
    return (int(time.time()) - ago_s) * 1000


def build(
    receiver: str,
    *,
    device: str,
    fix_ms: int,
    lat: float = LAT,
    lon: float = LON,
    stamp: str | None = None,
    big: str | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """(method, url, httpx kwargs) for one fix in a receiver's own format.

    ``stamp`` replaces the format's time field with raw text; ``big`` adds a huge attribute.
    The attributes are the same in every format: batteryLevel 87, motion true.
    """
    receiver = receiver.split("@")[0]
    attrs: dict[str, Any] = {"batteryLevel": 87, "motion": True}
    if big is not None:
        attrs["note"] = big
    if receiver == "traccar-json":
        body = traccar_forward(device, fix_ms, lat, lon, SPEED_KN)
        position: dict[str, Any] = body["position"]  # type: ignore[assignment]
        position["attributes"] = attrs
        position["accuracy"] = 12.0  # above Traccar's JSON minimum, so every format keeps it
        if stamp is not None:
            position["fixTime"] = position["deviceTime"] = stamp
        return "POST", "/api/traccar/positions", {"content": orjson.dumps(body)}
    if receiver == "traccar-url":
        query = {
            "uniqueId": device,
            "deviceId": "17",
            "name": f"van {device}",
            "status": "online",
            "protocol": "osmand",
            "fixTime": stamp or str(fix_ms),
            "deviceTime": stamp or str(fix_ms),
            "valid": "true",
            "latitude": repr(lat),
            "longitude": repr(lon),
            "altitude": "12.0",
            "speed": repr(SPEED_KN),
            "course": "90.0",
            "accuracy": "12.0",
            "address": "{address}",  # Traccar leaves it when there is no address
            "attributes": orjson.dumps(attrs).decode(),
        }
        return "GET", "/api/traccar/positions?" + urlencode(query), {}
    if receiver in ("osmand-get", "osmand-form"):
        params = {
            "id": device,
            "timestamp": stamp or str(fix_ms // 1000),
            "lat": repr(lat),
            "lon": repr(lon),
            "speed": repr(SPEED_KN),
            "bearing": "90.0",
            "altitude": "12.0",
            "accuracy": "12.0",
            "batt": "87",
            "motion": "true",
        }
        if big is not None:
            params["note"] = big
        if receiver == "osmand-get":
            return "GET", "/api/osmand?" + urlencode(params), {}
        return (
            "POST",
            "/api/osmand",
            {
                "content": urlencode(params).encode(),
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
        )
    if receiver == "osmand-json":
        body = {
            "device_id": device,
            "location": {
                "timestamp": stamp or iso(fix_ms),
                "coords": {
                    "latitude": lat,
                    "longitude": lon,
                    "accuracy": 12.0,
                    "speed": SPEED_KN * 1852 / 3600,  # m/s
                    "heading": 90.0,
                    "altitude": 12.0,
                },
                "is_moving": True,
                "battery": {"level": 0.87, "is_charging": False},
                **({"extras": {"note": big}} if big is not None else {}),
            },
        }
        return (
            "POST",
            "/api/osmand",
            {"content": orjson.dumps(body), "headers": {"Content-Type": "application/json"}},
        )
    assert receiver == "batch"
    line = {
        "deviceId": device,
        "fixTime": stamp or iso(fix_ms),
        "lat": lat,
        "lon": lon,
        "speed": SPEED_KN * 1.852,
        "course": 90.0,
        "altitude": 12.0,
        "accuracy": 12.0,
        "valid": True,
        "protocol": "osmand",
        "attributes": attrs,
    }
    return (
        "POST",
        "/api/positions/batch",
        {
            "content": orjson.dumps(line) + b"\n",
            "headers": {"Content-Type": "application/x-ndjson"},
        },
    )


@pytest.fixture(scope="module")
async def port_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The OsmAnd port's own server on a free port, with the session app's state."""
    server = OsmAndServer(
        lambda: app.state.fleetpulse, app.state.fleetpulse.settings.ingest.max_body_bytes
    )
    port = await server.start("127.0.0.1", 0)
    try:
        async with osmand_port_client(port) as c:
            yield c
    finally:
        await server.close()


def osmand_port_client(port: int) -> httpx.AsyncClient:
    """A client of the OsmAnd port that posts the /api/osmand requests of ``build`` to "/",
    where Traccar Client posts them."""

    async def to_root(request: httpx.Request) -> None:
        path = "/" + request.url.path.removeprefix("/api/osmand").lstrip("/")
        request.url = request.url.copy_with(path=path)

    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=30, event_hooks={"request": [to_root]}
    )


def client_for(
    receiver: str, client: httpx.AsyncClient, port_client: httpx.AsyncClient
) -> httpx.AsyncClient:
    return port_client if receiver.endswith("@port") else client


async def send(
    client: httpx.AsyncClient, request: tuple[str, str, dict[str, Any]], headers: dict[str, str]
) -> httpx.Response:
    method, url, kwargs = request
    merged = {**headers, **kwargs.pop("headers", {})}
    if method == "POST" and "Content-Type" not in merged:
        merged["Content-Type"] = "application/json"
    return await client.request(method, url, headers=merged, **kwargs)


async def produced_since(settings: Settings, before: dict[int, int]) -> list[Position]:
    """The positions written to gps.positions after the offsets ``before``."""
    topic = settings.kafka.topic(GPS_POSITIONS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in before]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, before[tp.partition])
        ends = await consumer.end_offsets(tps)
        found: list[Position] = []
        deadline = time.monotonic() + 20
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the produced records"
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found += [Position.from_bytes(r.value) for r in records]
        return found
    finally:
        await consumer.stop()


def normalised(p: Position) -> dict[str, Any]:
    """What must agree across formats (the receive time and Traccar's own id may differ)."""
    return {
        "tenant_id": p.tenant_id,
        "device_id": p.device_id,
        "fix_time_ms": p.fix_time_ms,
        "lat": p.lat,
        "lon": p.lon,
        "speed_kmh": round(p.speed_kmh or -1.0, 9),
        "course": p.course,
        "altitude": p.altitude,
        "accuracy": p.accuracy,
        "valid": p.valid,
        "protocol": p.protocol,
        "attributes": {k: v for k, v in p.attributes.items() if k != "traccarDeviceId"},
    }


async def test_the_same_fix_in_every_format_becomes_the_same_position(
    client: httpx.AsyncClient,
    port_client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    pg: asyncpg.Pool,
) -> None:
    fix_ms = whole_second_ms(120)
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert len(before) == 6
    for receiver in RECEIVERS:
        resp = await send(
            client_for(receiver, client, port_client),
            build(receiver, device="DEV001", fix_ms=fix_ms),
            traccar_headers,
        )
        assert resp.status_code == 200, (receiver, resp.text)
        if receiver.startswith("osmand"):
            assert resp.content == b""  # Traccar's answer: 200, empty body
    produced = await produced_since(settings, before)
    assert len(produced) == len(RECEIVERS)
    shapes = [normalised(p) for p in produced]
    assert all(s == shapes[0] for s in shapes), shapes
    assert shapes[0]["speed_kmh"] == pytest.approx(18.52)  # knots -> km/h exactly once
    assert shapes[0]["fix_time_ms"] == fix_ms
    assert shapes[0]["tenant_id"] == "tenant-1"
    assert shapes[0]["attributes"] == {"batteryLevel": 87, "motion": True}

    # Six copies of one fix: history holds it once, with the normalised values.
    rows = await eventually(
        lambda: pg.fetch(
            "SELECT lat, lon, speed_kmh, course, altitude, accuracy, attributes FROM positions"
            " WHERE device_unique_id = 'DEV001' AND fix_time = to_timestamp($1 / 1000.0)",
            fix_ms,
        ),
        lambda rows: len(rows) >= 1,
        what="the fix in history",
    )
    await asyncio.sleep(1.0)  # give stray duplicates a chance to show up before counting
    count = await pg.fetchval(
        "SELECT count(*) FROM positions WHERE device_unique_id = 'DEV001'"
        " AND fix_time = to_timestamp($1 / 1000.0)",
        fix_ms,
    )
    assert count == 1
    row = rows[0]
    assert (row["lat"], row["lon"]) == (LAT, LON)
    assert row["speed_kmh"] == pytest.approx(18.52, abs=0.01)
    assert (row["course"], row["altitude"], row["accuracy"]) == (90.0, 12.0, 12.0)
    assert row["attributes"]["batteryLevel"] == 87


# (receiver, case) -> the protocol's status. OsmAnd answers 400 to everything (like
# Traccar); the Traccar webhook 422 for a position it cannot read; batch reports per line.
CASES = ("missing-id", "lat-91", "lon-181", "timestamp-garbage", "1MB-attribute", "wrong-ctype")
UNKNOWN = "unknown-device"


def expected_status(receiver: str, case: str) -> int:
    if case == "1MB-attribute":
        return 413
    if receiver == "batch":
        return 415 if case == "wrong-ctype" else 200  # a bad line is reported, not fatal
    if case == UNKNOWN and receiver.startswith("osmand-json"):
        return 404  # Traccar answers a JSON body of an unknown device 404 (query/form: 400)
    if receiver.startswith("osmand") or case == UNKNOWN:
        return 400
    if case == "wrong-ctype" and receiver == "traccar-json":
        return 400  # a form body is not JSON
    return 422


def bad_request(receiver: str, case: str) -> tuple[str, str, dict[str, Any]]:
    fix_ms = whole_second_ms(30)
    if case == UNKNOWN:
        return build(receiver, device=f"GHOST-{receiver.replace('@', '-')}", fix_ms=fix_ms)
    receiver = receiver.split("@")[0]
    if case == "missing-id":
        return strip_device(receiver, build(receiver, device="DEV001", fix_ms=fix_ms))
    if case == "lat-91":
        return build(receiver, device="DEV001", fix_ms=fix_ms, lat=91.0)
    if case == "lon-181":
        return build(receiver, device="DEV001", fix_ms=fix_ms, lon=181.0)
    if case == "timestamp-garbage":
        return build(receiver, device="DEV001", fix_ms=fix_ms, stamp="yesterday 5pm")
    if case == "1MB-attribute":
        # A URL cannot carry 1 MB (httpx stops at 64 KiB); GET receivers refuse > 16 KiB.
        size = 60_000 if receiver in ("traccar-url", "osmand-get") else 1_100_000
        return build(receiver, device="DEV001", fix_ms=fix_ms, big="x" * size)
    if case == UNKNOWN:
        return build(receiver, device=f"GHOST-{receiver}", fix_ms=fix_ms)
    assert case == "wrong-ctype"
    method, url, kwargs = build(receiver, device="DEV001", fix_ms=fix_ms)
    if receiver == "traccar-json":  # a form body where Traccar sends JSON
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        return method, url, {"content": b"uniqueId=DEV001&latitude=40.7", "headers": form}
    if receiver == "traccar-url":  # the JSON type's body on the URL type's GET: no query
        return "GET", "/api/traccar/positions", {"content": orjson.dumps(traccar_forward(
            "DEV001", fix_ms, LAT, LON))}  # fmt: skip
    if receiver in ("osmand-get", "osmand-form"):  # form parameters labelled as JSON
        body = url.split("?", 1)[1].encode() if "?" in url else kwargs["content"]
        return (
            "POST",
            "/api/osmand",
            {"content": body, "headers": {"Content-Type": "application/json"}},
        )
    if receiver == "osmand-json":  # JSON labelled as a form: read as form, no id
        kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded"}
        return method, url, kwargs
    kwargs["headers"] = {"Content-Type": "text/csv"}
    return method, url, kwargs


def strip_device(
    receiver: str, req: tuple[str, str, dict[str, Any]]
) -> tuple[str, str, dict[str, Any]]:
    receiver = receiver.split("@")[0]
    method, url, kwargs = req
    if receiver in ("traccar-url", "osmand-get"):
        head, query = url.split("?", 1)
        kept = [p for p in query.split("&") if not p.startswith(("uniqueId=", "id="))]
        return method, head + "?" + "&".join(kept), kwargs
    if receiver == "osmand-form":
        kept = [p for p in kwargs["content"].decode().split("&") if not p.startswith("id=")]
        return method, url, {**kwargs, "content": "&".join(kept).encode()}
    body = orjson.loads(kwargs["content"])
    if receiver == "traccar-json":
        del body["device"]
    elif receiver == "osmand-json":
        del body["device_id"]
    else:
        del body["deviceId"]
    return method, url, {**kwargs, "content": orjson.dumps(body) + b"\n"}


@pytest.mark.parametrize("case", [*CASES, UNKNOWN])
@pytest.mark.parametrize("receiver", RECEIVERS)
async def test_bad_input_gets_the_protocols_4xx_and_produces_nothing(
    client: httpx.AsyncClient,
    port_client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    receiver: str,
    case: str,
) -> None:
    request = bad_request(receiver, case)
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert len(before) == 6  # the comparison below must be over real partitions
    resp = await send(client_for(receiver, client, port_client), request, traccar_headers)
    status = expected_status(receiver, case)
    assert resp.status_code == status, resp.text
    body = resp.json()
    if status == 200:  # batch: the line is refused, the request is not
        assert body["accepted"] == 0
        [rejection] = body["rejected"]
        assert rejection["line"] == 1 and rejection["message"]
        assert rejection["error"] == ("unknown_device" if case == UNKNOWN else "invalid_position")
    else:
        assert isinstance(body["error"], str) and body["message"]
        assert "Traceback" not in resp.text
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before


async def test_unknown_osmand_devices_are_counted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ghost = f"PHONE-{time.time_ns()}"
    redis: Redis = create_redis(settings.redis)
    try:
        for expected in (1, 2):
            resp = await send(
                client, build("osmand-form", device=ghost, fix_ms=whole_second_ms(5)), {}
            )
            assert resp.status_code == 400
            assert resp.json() == {
                "error": "unknown_device",
                "message": f"unknown device(s): {ghost}",
                "details": {"deviceIds": [ghost]},
            }
            keys = RedisKeys(settings.redis.key_prefix)
            assert await redis.hget(keys.unknown_devices, ghost) == str(expected).encode()
        # Traccar Client's JSON body: 404 as Traccar answers it, counted the same way
        resp = await send(client, build("osmand-json", device=ghost, fix_ms=whole_second_ms(5)), {})
        assert resp.status_code == 404
        assert resp.json() == {
            "error": "unknown_device",
            "message": f"unknown device(s): {ghost}",
            "details": {"deviceIds": [ghost]},
        }
        assert await redis.hget(keys.unknown_devices, ghost) == b"3"
    finally:
        await redis.aclose()


async def test_traccar_url_type_needs_a_key_header_or_query(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    method, url, _ = build("traccar-url", device="DEV002", fix_ms=whole_second_ms(40))
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url + "&apiKey=wrong")).status_code == 401
    foreign = await client.get(url + "&apiKey=traccar-key-tenant-2")  # DEV002 is tenant-1's
    assert foreign.status_code == 400 and foreign.json()["error"] == "unknown_device"
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before
    own = await client.get(url + "&apiKey=" + quote("traccar-key-tenant-1"))
    assert own.status_code == 200, own.text
    assert own.json() == {"status": "accepted", "count": 1}


async def test_a_batch_with_mixed_lines_stores_the_valid_ones_once(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    pg: asyncpg.Pool,
) -> None:
    t = whole_second_ms(300)
    ghost = f"GW-GHOST-{time.time_ns()}"
    good1 = {"deviceId": "DEV001", "fixTime": t, "lat": LAT, "lon": LON, "speed": 30}
    good2 = {"deviceId": "DEV002", "fixTime": iso(t), "lat": LAT, "lon": LON}
    lines = [
        orjson.dumps(good1),
        orjson.dumps({**good1, "lat": 91}),
        b"{truncated",
        orjson.dumps(good2),
        orjson.dumps({**good1, "deviceId": ghost}),
        orjson.dumps(good1),  # the same fix again: accepted, stored once
        orjson.dumps(traccar_forward("DEV003", t, LAT, LON)),  # a Traccar line, tenant-2
        orjson.dumps({**good2, "fixTime": "2099-01-01T00:00:00Z"}),  # too far in the future
    ]
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert len(before) == 6
    resp = await client.post(
        "/api/positions/batch",
        content=b"\n".join(lines),
        headers={**traccar_headers, "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 4
    assert [(r["line"], r["error"]) for r in body["rejected"]] == [
        (2, "invalid_position"),
        (3, "invalid_position"),
        (5, "unknown_device"),
        (8, "invalid_position"),
    ]
    after = await end_offsets(settings.kafka, GPS_POSITIONS)
    assert sum(after.values()) - sum(before.values()) == 4
    redis: Redis = create_redis(settings.redis)
    try:  # the unknown device is counted like on the other receivers
        keys = RedisKeys(settings.redis.key_prefix)
        assert await redis.hget(keys.unknown_devices, ghost) == b"1"
    finally:
        await redis.aclose()

    async def stored() -> list[tuple[str, float | None]]:
        rows = await pg.fetch(
            "SELECT device_unique_id, speed_kmh FROM positions"
            " WHERE fix_time = to_timestamp($1 / 1000.0) AND device_unique_id = ANY($2)"
            " ORDER BY 1",
            t,
            ["DEV001", "DEV002", "DEV003", ghost],
        )
        return [(r["device_unique_id"], r["speed_kmh"]) for r in rows]

    rows = await eventually(stored, lambda rows: len(rows) >= 3, what="batch lines stored")
    await asyncio.sleep(1.0)
    assert await stored() == rows
    assert rows == [("DEV001", 30.0), ("DEV002", None), ("DEV003", pytest.approx(18.52, abs=0.01))]

    # A tenant's own key: another tenant's device is a per-line unknown device.
    resp = await client.post(
        "/api/positions/batch",
        json=[good1, {**good1, "deviceId": "DEV003"}],
        headers={"X-API-Key": "traccar-key-tenant-1"},
    )
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1
    assert [r["error"] for r in resp.json()["rejected"]] == ["unknown_device"]


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"", "application/x-ndjson", 400, "empty_batch"),
        (b"\n\n", "application/x-ndjson", 400, "empty_batch"),
        (b"[]", "application/json", 400, "empty_batch"),
        (b'{"deviceId": "DEV001"}', "application/json", 422, "invalid_position"),
        (b"[{", "application/json", 422, "invalid_position"),
        (b"deviceId=DEV001", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
async def test_batch_bodies_that_are_not_batches(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    content: bytes,
    ctype: str,
    status: int,
    code: str,
) -> None:
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    resp = await client.post(
        "/api/positions/batch", content=content, headers={**traccar_headers, "Content-Type": ctype}
    )
    assert (resp.status_code, resp.json()["error"]) == (status, code), resp.text
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before
    assert (await client.post("/api/positions/batch", content=b"[]")).status_code == 401


async def test_too_many_lines_are_refused_whole(
    client: httpx.AsyncClient, traccar_headers: dict[str, str], settings: Settings
) -> None:
    limit = settings.ingest.max_batch_positions
    line = orjson.dumps({"deviceId": "DEV001", "fixTime": whole_second_ms(9), "lat": 1, "lon": 1})
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    resp = await client.post(
        "/api/positions/batch",
        content=b"\n".join([line] * (limit + 1)),
        headers={**traccar_headers, "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 413 and resp.json()["error"] == "payload_too_large"
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before


async def test_kafka_unreachable_is_503_on_every_receiver(
    settings: Settings, traccar_headers: dict[str, str], database: str
) -> None:
    """A broker that never answers (a closed port; the shared Kafka keeps running)."""
    from api.main import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    broken = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{closed_port}", "produce_timeout_s": 1.0}
            )
        }
    )
    app = create_app(broken)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        server = OsmAndServer(lambda: app.state.fleetpulse, broken.ingest.max_body_bytes)
        port = await server.start("127.0.0.1", 0)
        try:
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://test") as c,
                osmand_port_client(port) as on_port,
            ):
                for receiver in RECEIVERS:
                    request = build(receiver, device="DEV001", fix_ms=whole_second_ms(15))
                    resp = await send(client_for(receiver, c, on_port), request, traccar_headers)
                    assert resp.status_code == 503, (receiver, resp.text)
                    assert resp.json()["error"] in ("broker_unavailable", "service_unavailable")
                    assert resp.headers["retry-after"] == "5"
                    assert "accepted" not in resp.json()
        finally:
            await server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "api"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_api(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


@pytest.mark.slow
async def test_fleetpulse_api_serves_osmand_on_its_own_port(
    settings: Settings, pg: asyncpg.Pool, topics: None
) -> None:
    """A real ``fleetpulse api`` process: a phone's form POST to the OsmAnd port is stored."""
    http_port, osmand_port = free_port(), free_port()
    env = {
        **settings_env(settings),
        "FLEETPULSE_HTTP_PORT": str(http_port),
        "FLEETPULSE_INGEST__OSMAND_PORT": str(osmand_port),
        "FLEETPULSE_HTTP_HOST": "127.0.0.1",
        # Small, so the refused body fits the socket buffers (a 1 MB body refused early makes
        # the client see a reset instead of the 413; the 1 MB case is tested in-process).
        "FLEETPULSE_INGEST__MAX_BODY_BYTES": "8192",
    }
    proc = start_api(env)
    try:
        async with httpx.AsyncClient(timeout=10) as http:

            async def ready() -> int:
                try:
                    return (await http.get(f"http://127.0.0.1:{osmand_port}/")).status_code
                except httpx.TransportError:
                    return 0

            # No parameters: no device, so Traccar's (and our) answer is 400.
            assert await eventually(ready, lambda s: s != 0, within=60, what="osmand port") == 400
            fix_ms = whole_second_ms(50)
            # Exactly what the Traccar Client app sends: a form-encoded POST to "/".
            form = (
                f"id=DEV003&lat={LAT}&lon={LON}&timestamp={fix_ms // 1000}&accuracy=5.0"
                "&altitude=3.0&speed=4.5&bearing=180.0&batt=64.0"
            )
            resp = await http.post(
                f"http://127.0.0.1:{osmand_port}/",
                content=form.encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "TraccarClient/9.0",
                },
            )
            assert (resp.status_code, resp.content) == (200, b"")
            row = await eventually(
                lambda: pg.fetchrow(
                    "SELECT tenant_id, protocol, speed_kmh, course, attributes FROM positions"
                    " WHERE device_unique_id = 'DEV003' AND fix_time = to_timestamp($1 / 1000.0)",
                    fix_ms,
                ),
                lambda r: r is not None,
                what="the phone's fix in history",
            )
            assert row is not None
            assert row["tenant_id"] == "tenant-2" and row["protocol"] == "osmand"
            assert row["speed_kmh"] == pytest.approx(4.5 * 1.852, abs=0.01)
            assert row["course"] == 180.0 and row["attributes"]["batteryLevel"] == 64.0
            # The main port serves the same receiver under /api/osmand.
            main = await http.get(
                f"http://127.0.0.1:{http_port}/api/osmand/",  # with or without the slash
                params={"id": "DEV003", "lat": LAT, "lon": LON, "timestamp": fix_ms // 1000 + 1},
            )
            assert (main.status_code, main.content) == (200, b"")
            big = await http.post(
                f"http://127.0.0.1:{osmand_port}/",
                content=b"id=DEV003&note=" + b"x" * 9000,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert big.status_code == 413
        assert stop_api(proc) == 0  # SIGTERM stops both servers cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def with_accuracy(
    request: tuple[str, str, dict[str, Any]], accuracy: float
) -> tuple[str, str, dict[str, Any]]:
    """An osmand-json or osmand-form request with another accuracy."""
    method, url, kwargs = request
    content: bytes = kwargs["content"]
    if content.startswith(b"{"):
        body = orjson.loads(content)
        body["location"]["coords"]["accuracy"] = accuracy
        return method, url, {**kwargs, "content": orjson.dumps(body)}
    return (
        method,
        url,
        {**kwargs, "content": content.replace(b"accuracy=12.0", f"accuracy={accuracy}".encode())},
    )


@pytest.mark.parametrize("where", ["main", "port"])
async def test_traccars_accuracy_rule_for_json_bodies(
    client: httpx.AsyncClient, port_client: httpx.AsyncClient, settings: Settings, where: str
) -> None:
    # Traccar's osmand.minAccuracy (default 10 m): a JSON coords.accuracy below it is not kept;
    # query and form parameters keep theirs (Traccar applies it to JSON bodies only).
    http = port_client if where == "port" else client
    assert settings.ingest.osmand_json_min_accuracy_m == 10.0
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    sent = [
        ("osmand-json", 3.8, None),
        ("osmand-json", 9.99, None),
        ("osmand-json", 10.0, 10.0),
        ("osmand-json", 25.0, 25.0),
        ("osmand-json", -1.0, None),  # negative: unknown, as before
        ("osmand-form", 5.0, 5.0),
    ]
    for i, (receiver, accuracy, _) in enumerate(sent):
        request = with_accuracy(
            build(receiver, device="DEV002", fix_ms=whole_second_ms(200 + i)), accuracy
        )
        resp = await send(http, request, {})
        assert resp.status_code == 200, resp.text
    produced = sorted(await produced_since(settings, before), key=lambda p: -p.fix_time_ms)
    assert [p.accuracy for p in produced] == [kept for *_, kept in sent]


async def test_a_fix_older_than_the_retention_is_acknowledged_not_stored_on_osmand(
    client: httpx.AsyncClient,
    port_client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
) -> None:
    # Traccar accepts old fixes; a phone refused with 400 would retry the same fix forever.
    old_ms = whole_second_ms(400 * 86400)  # the retention is 365 days
    redis: Redis = create_redis(settings.redis)
    keys = RedisKeys(settings.redis.key_prefix)
    before_count = int(await redis.hget(keys.old_fixes, "DEV003") or 0)
    before = await end_offsets(settings.kafka, GPS_POSITIONS)
    for receiver in ("osmand-get", "osmand-form", "osmand-json", *ON_PORT):
        resp = await send(
            client_for(receiver, client, port_client),
            build(receiver, device="DEV003", fix_ms=old_ms),
            {},
        )
        assert resp.status_code == 200 and resp.content == b"", (receiver, resp.text)
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before  # nothing stored
    assert int(await redis.hget(keys.old_fixes, "DEV003")) == before_count + 6
    # an unknown device is still refused, old fix or not; so is a fix from the far future
    ghost = await send(client, build("osmand-form", device="GHOST-OLD", fix_ms=old_ms), {})
    assert ghost.status_code == 400 and ghost.json()["error"] == "unknown_device"
    future = await send(
        client, build("osmand-form", device="DEV003", fix_ms=whole_second_ms(-3 * 86400)), {}
    )
    assert future.status_code == 400
    # the webhook keeps refusing (Traccar retries a bounded number of times): 422
    hook = await send(
        client, build("traccar-json", device="DEV003", fix_ms=old_ms), traccar_headers
    )
    assert hook.status_code == 422 and "retention" in hook.json()["message"]
    assert await end_offsets(settings.kafka, GPS_POSITIONS) == before
    await redis.aclose()
