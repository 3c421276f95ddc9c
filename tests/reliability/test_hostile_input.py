"""Anonymous input cannot grow memory without bound: a flood of invented device ids.

Receivers refuse unknown devices and count them; the ids are the sender's choice, so both the
Redis count and each process's device cache are bounded (``FLEETPULSE_INGEST__UNKNOWN_DEVICES_*``,
``DEVICE_CACHE_MAX``). The flood goes through the real app (batch endpoint, real Redis and
PostgreSQL); the figures it prints are the ones docs/security.md quotes.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.receive import UNKNOWN_OVERFLOW_FIELD
from tests.helpers import eventually

pytestmark = [pytest.mark.integration]

CAP = 500
CACHE_MAX = 1_000
ROUNDS, PER_ROUND = 10, 2_000  # 20,000 invented ids


@pytest.fixture(scope="module")
async def flood_app(
    settings: Settings, database: str, topics: None, redis_clean: None
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, object]]:
    from api.main import create_app

    small = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(
                update={"key_prefix": f"{settings.redis.key_prefix}flood:"}
            ),
            "ingest": settings.ingest.model_copy(
                update={
                    "unknown_devices_max": CAP,
                    "unknown_devices_ttl_s": 3_600,
                    "device_cache_max": CACHE_MAX,
                }
            ),
        }
    )
    app = create_app(small)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c, small, app.state.fleetpulse


async def test_a_flood_of_invented_device_ids_stays_bounded(
    flood_app: tuple[httpx.AsyncClient, Settings, object],
    traccar_headers: dict[str, str],
) -> None:
    client, settings, state = flood_app
    redis = state.redis  # type: ignore[attr-defined]
    devices = state.devices  # type: ignore[attr-defined]
    key = RedisKeys(settings.redis.key_prefix).unknown_devices
    now = int(time.time() * 1000)
    first_id = ""
    for _ in range(ROUNDS):
        ids = [f"ghost-{uuid.uuid4().hex}" for _ in range(PER_ROUND)]
        first_id = first_id or min(ids)  # refusals are counted in id order
        lines = [
            orjson.dumps({"deviceId": i, "fixTime": now - 1_000, "lat": 1.0, "lon": 2.0})
            for i in ids
        ]
        resp = await client.post(
            "/api/positions/batch",
            content=b"\n".join(lines),
            headers={**traccar_headers, "Content-Type": "application/x-ndjson"},
        )
        # per-line refusals (batch semantics), nothing accepted, never a 5xx
        assert resp.status_code == 200 and resp.json()["accepted"] == 0, resp.status_code
        assert len(devices) <= CACHE_MAX + PER_ROUND  # one batch may overshoot, not more
    fields = await redis.hlen(key)
    assert fields == CAP + 1  # the first CAP ids one by one, the rest together
    assert await redis.hget(key, first_id) == b"1"  # an early id still counted on its own
    overflow = int(await redis.hget(key, UNKNOWN_OVERFLOW_FIELD))
    assert overflow == ROUNDS * PER_ROUND - CAP
    assert 0 < await redis.ttl(key) <= 3_600  # forgotten once the refusals stop
    usage = await redis.memory_usage(key)
    print(  # noqa: T201 - the figures docs/security.md quotes
        f"\nflood: {ROUNDS * PER_ROUND} invented ids -> unknown-devices hash {fields} fields, "
        f"{usage} bytes; device cache {len(devices)} entries (cap {CACHE_MAX})"
    )
    await redis.delete(key)


async def test_text_postgresql_cannot_store_is_refused_at_the_edge(
    client: httpx.AsyncClient, traccar_headers: dict[str, str]
) -> None:
    """A NUL was acknowledged (200) and then dead-lettered by the worker; now it is a 4xx and
    nothing is produced."""
    ts = int(time.time()) - 30
    resp = await client.get(
        "/api/osmand?id=DEV002&lat=40.71&lon=-74.0&timestamp=" + str(ts) + "&note=a%00b"
    )
    assert resp.status_code == 400 and "NUL" in resp.text
    body = {
        "device_id": "DEV002",
        "location": {
            "timestamp": datetime.fromtimestamp(ts, UTC).isoformat(),
            "coords": {"latitude": 40.71, "longitude": -74.0},
            "extras": {"note": "a\u0000b"},
        },
    }
    resp = await client.post(
        "/api/osmand", content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and "NUL" in resp.text
    line = {
        "deviceId": "DEV002",
        "fixTime": ts * 1000,
        "lat": 40.71,
        "lon": -74.0,
        "attributes": {"nested": ["ok", {"k\u0000": 1}]},
    }
    resp = await client.post(
        "/api/positions/batch",
        content=orjson.dumps(line),
        headers={**traccar_headers, "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code < 500
    report = resp.json()
    assert report["accepted"] == 0 and "NUL" in report["rejected"][0]["message"]


async def test_a_forged_future_fix_cannot_pin_the_live_position(
    app: Any,
    client: httpx.AsyncClient,
    pg: Any,
    settings: Settings,
    worker: None,
    tenant1_headers: dict[str, str],
) -> None:
    """OsmAnd has no key: anyone who guesses a device id could send a fix dated 23 h ahead,
    which the forward-only live state kept for 23 hours. Now it is history only."""
    device = f"FUTURE-{uuid.uuid4().hex[:8]}"
    driver = await pg.fetchval(
        """INSERT INTO drivers (tenant_id, name, device_unique_id) VALUES ('tenant-1', $1, $1)
           RETURNING id::text""",
        device,
    )
    now = int(time.time())

    async def osmand(ts: int, lat: float, lon: float) -> None:
        resp = await client.get(
            "/api/osmand", params={"id": device, "lat": lat, "lon": lon, "timestamp": ts}
        )
        assert resp.status_code == 200, resp.text

    await osmand(now - 20, 40.7130, -74.0060)
    await osmand(now + 23 * 3600, 41.0, -73.5)  # the forgery: accepted (clock skew allowed)
    await osmand(now - 10, 40.7135, -74.0050)

    async def stored() -> int:
        n: int = await pg.fetchval(
            "SELECT count(*) FROM positions WHERE driver_id = $1::uuid", driver
        )
        return n

    await eventually(stored, lambda n: n == 3, within=30, what="three fixes in history")
    snapshot = await pg.fetchrow(
        "SELECT lat, lon, fix_time FROM driver_positions WHERE driver_id = $1::uuid", driver
    )
    assert (snapshot["lat"], snapshot["lon"]) == (40.7135, -74.0050)
    latest = await app.state.fleetpulse.redis.get(
        RedisKeys(settings.redis.key_prefix).latest(driver)
    )
    assert latest is not None and orjson.loads(latest)["lat"] == 40.7135
    near = await client.get(
        "/api/drivers/near",
        params={"lat": 40.7135, "lon": -74.0050, "radius_m": 50},
        headers=tenant1_headers,
    )
    assert near.status_code == 200
    assert driver in {d.get("driverId", d.get("id")) for d in near.json()["drivers"]}


def cursor(values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


BAD_CURSORS = [
    cursor([123]),
    cursor([1.5]),
    cursor([{"a": 1}]),
    cursor(["2026-01-01", 5]),
    cursor([2**63]),
    cursor([2**31]),
    cursor(["0001-01-01T00:00:00+14:00", "a1b2c3d4-0001-4000-8000-000000000001"]),
    cursor([None]),
    "WzEyM10",
    "!!!",
]


async def test_no_cursor_and_no_date_gets_a_5xx(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    """What the attacker found answering 500: malformed or out-of-range cursors, dates at the
    ends of the calendar, a route for 9999-12-31, the dead-letter list."""
    john, jane = "a1b2c3d4-0001-4000-8000-000000000001", "a1b2c3d4-0002-4000-8000-000000000002"
    resp = await client.post(
        "/api/routes",
        json={"driverId": john, "scheduledDate": "2026-06-01", "name": "hostile"},
        headers=tenant1_headers,
    )
    assert resp.status_code == 201, resp.text
    route = resp.json()["id"]
    lists = [
        "/api/drivers",
        "/api/routes",
        "/api/customers",
        "/api/geofences",
        f"/api/visits/route/{route}",
        f"/api/visits/driver/{john}",
        f"/api/drivers/{jane}/history",
    ]
    statuses: dict[tuple[str, str], int] = {}
    for path in lists:
        for bad in BAD_CURSORS:
            resp = await client.get(path, params={"cursor": bad}, headers=tenant1_headers)
            statuses[(path, bad)] = resp.status_code
            assert resp.status_code < 500, (path, bad, resp.text[:200])
    # malformed for the column: 400 (bigint ids: 2**63 is past the range; int4 sequence
    # numbers: 2**31 is; uuid ids: a number is not one)
    for path, bad in [
        ("/api/customers", cursor([1.5])),
        ("/api/customers", cursor([{"a": 1}])),
        ("/api/customers", cursor([2**63])),
        ("/api/customers", "!!!"),
        (f"/api/visits/route/{route}", cursor([2**31])),
        ("/api/drivers", cursor([123])),
        ("/api/drivers", "WzEyM10"),
    ]:
        assert statuses[(path, bad)] == 400, (path, bad)
    extremes = [
        {"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00+14:00"},
        {"from": "9999-12-30T00:00:00-14:00", "to": "9999-12-31T00:00:00-14:00"},
        {"to": "0001-01-01T00:00:00"},
        {"from": "1999-12-31T00:00:00Z", "to": "2000-01-01T10:00:00Z"},
    ]
    windows = [
        f"/api/drivers/{john}/history",
        f"/api/routes/{route}/history",
        f"/api/drivers/{john}/playback",
        "/api/playback",
        "/api/analytics/heatmap",
    ]
    for path in windows:
        for params in extremes:
            extra = {"bbox": "-180,-80,180,80"} if path == "/api/playback" else {}
            resp = await client.get(path, params=params | extra, headers=tenant1_headers)
            assert 400 <= resp.status_code < 500, (path, params, resp.text[:200])
            assert "error" in resp.json()
    days = [
        (f"/api/drivers/{john}/trips", {}),
        (f"/api/drivers/{john}/export", {}),
        ("/api/analytics/drivers/daily", {}),
        (f"/api/drivers/{john}/stats", {"from": "2026-01-01"}),
        ("/api/routes", {}),
        (f"/api/visits/driver/{john}", {}),
    ]
    for path, extra in days:
        for day in ("9999-12-31", "0001-01-01"):
            key = "to" if "from" in extra else "date"
            resp = await client.get(path, params=extra | {key: day}, headers=tenant1_headers)
            assert 400 <= resp.status_code < 500, (path, day, resp.text[:200])
    resp = await client.post(
        "/api/routes",
        json={"driverId": john, "scheduledDate": "9999-12-31", "name": "never"},
        headers=tenant1_headers,
    )
    assert resp.status_code == 422, resp.text
    resp = await client.get("/api/admin/dead-letters", headers=tenant1_headers)
    assert resp.status_code < 500 and resp.headers["content-type"].startswith("application/")
    assert resp.headers.get("x-content-type-options") == "nosniff"


async def test_link_is_never_built_from_the_host_header(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    """A client picks its Host header: pagination's Link used to carry it (a cache in front
    could hand that link to others). Without FLEETPULSE_API__PUBLIC_BASE_URL the link is a
    relative reference, which still leads to the next page."""
    hostile = {**tenant1_headers, "Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    resp = await client.get("/api/drivers", params={"limit": 1}, headers=hostile)
    assert resp.status_code == 200, resp.text
    link = resp.headers["Link"]
    assert "evil" not in link
    target = link.removeprefix("<").removesuffix('>; rel="next"')
    assert target.startswith("/api/drivers?") and "limit=1" in target
    assert f"cursor={resp.headers['X-Next-Cursor']}" in target
    following = await client.get(target, headers=tenant1_headers)
    assert following.status_code == 200 and following.json()
    assert following.json()[0]["id"] != resp.json()[0]["id"]
