"""Anonymous input cannot grow memory without bound: a flood of invented device ids.

Receivers refuse unknown devices and count them; the ids are the sender's choice, so both the
Redis count and each process's device cache are bounded (``FLEETPULSE_INGEST__UNKNOWN_DEVICES_*``,
``DEVICE_CACHE_MAX``). The flood goes through the real app (batch endpoint, real Redis and
PostgreSQL); the figures it prints are the ones docs/security.md quotes.
"""

from __future__ import annotations

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
