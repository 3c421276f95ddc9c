"""The seed system's clients, unmodified, against FleetPulse (issue 20).

Acts as the seed README's examples do: its login body, its socket.io client (token in
``auth``, joins by payload, listens for ``position:update`` / ``visit:update`` only, never
asks for batches), its Traccar webhook body, its route → visit → status calls and its
health check; and Traccar Client's request shapes on the OsmAnd receiver, written from the
protocol facts (form POST, JSON body), with the answers Traccar gives. The README's demo
passwords work here because tests seed them (environment "test"); outside tests the public
demo credentials and keys are refused (docs/security.md).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import socketio

from tests.helpers import eventually
from tests.integration.test_live import NS, LiveServer, live  # noqa: F401 - the live fixture

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"  # the seed's John Smith, device DEV001
SEED_BODY_KEYS = {"accessToken", "refreshToken", "expiresIn", "user"}


class SeedClient:
    """The seed README's socket.io client: records position:update and visit:update."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.got: dict[str, list[Any]] = {"position:update": [], "visit:update": [], "error": []}
        for name, seen in self.got.items():
            self.sio.on(name, lambda data=None, seen=seen: seen.append(data), namespace=NS)

    async def connect(self, url: str, token: str | None) -> None:
        await self.sio.connect(
            url, namespaces=[NS], auth={"token": token} if token else None, wait_timeout=10
        )


def iso_now(offset_s: float = 0) -> str:
    t = datetime.fromtimestamp(time.time() + offset_s, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed_traccar_body(unique_id: str, lat: float, lon: float) -> list[dict[str, Any]]:
    """The README's "Simulate a GPS position" body, at the current time."""
    now = iso_now()
    return [
        {
            "id": 1,
            "deviceId": 1001,
            "protocol": "osmand",
            "serverTime": now,
            "deviceTime": now,
            "fixTime": now,
            "valid": True,
            "latitude": lat,
            "longitude": lon,
            "altitude": 10,
            "speed": 5,
            "course": 90,
            "accuracy": 10,
            "attributes": {"uniqueId": unique_id},
        }
    ]


async def test_the_seed_readmes_client_flow(
    live: LiveServer,  # noqa: F811 - the fixture imported above
    traccar_headers: dict[str, str],
    worker: None,
) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        # 1. login with the seed's body; the seed's answer shape
        body = {"email": "admin@tenant1.com", "password": "admin123", "tenantId": "tenant-1"}
        resp = await http.post("/api/auth/login", json=body)
        assert resp.status_code == 200, resp.text
        login = resp.json()
        assert set(login) >= SEED_BODY_KEYS
        # a remaining difference (docs/api.md): seconds as a number, the seed sent "15m"
        assert login["expiresIn"] == 900
        assert login["user"]["role"] == "admin" and login["user"]["tenantId"] == "tenant-1"
        wrong = await http.post("/api/auth/login", json=body | {"password": "admin124"})
        assert wrong.status_code == 401
        headers = {"Authorization": f"Bearer {login['accessToken']}"}

        # 2. the seed's socket client: token in auth, joins, position:update only
        seed = SeedClient()
        await seed.connect(live.url, login["accessToken"])
        await seed.sio.emit("join-tenant", {"tenantId": "tenant-1"}, namespace=NS)
        await seed.sio.emit("join-driver", {"driverId": JOHN}, namespace=NS)
        # a client without a token gets `error` and is disconnected, as in the seed
        anonymous = SeedClient()
        await anonymous.connect(live.url, None)
        await eventually(
            lambda: asyncio.sleep(0, anonymous.got["error"]), bool, within=10, what="error"
        )
        assert "token" in anonymous.got["error"][0]["message"]

        # 3. the seed's Traccar webhook body, with the X-API-Key header
        resp = await http.post(
            "/api/traccar/positions",
            json=seed_traccar_body("DEV001", 40.7130, -74.0055),
            headers=traccar_headers,
        )
        assert resp.status_code == 200, resp.text
        updates = await eventually(
            lambda: asyncio.sleep(0, list(seed.got["position:update"])),
            lambda us: any(u["driverId"] == JOHN for u in us),
            within=60,
            what="position:update for John",
        )
        john = next(u for u in updates if u["driverId"] == JOHN)
        assert john["tenantId"] == "tenant-1" and abs(john["lat"] - 40.713) < 1e-9
        # get-active-drivers with no payload, as the seed's client calls it
        active = await seed.sio.call("get-active-drivers", namespace=NS, timeout=10)
        assert JOHN in {a["driverId"] for a in active}

        # 4. health: the seed's keys
        health = (await http.get("/api/health")).json()
        assert health["status"] in ("ok", "degraded") and "timestamp" in health
        assert {"kafka", "redis", "timescale"} <= set(health["services"])
        assert health["websocket"]["connectedClients"] >= 1
        assert health["websocket"]["activeRooms"] >= 2  # tenant-1's room and John's

        # 5. the README's route and visit calls, with its bodies, then the seed's lifecycle
        today = datetime.now(UTC).date().isoformat()
        route_body = {"tenantId": "tenant-1", "driverId": JOHN, "scheduledDate": today}
        route = await http.post("/api/routes", json=route_body, headers=headers)
        assert route.status_code in (200, 201), route.text
        route_id = route.json()["id"]
        resp = await http.patch(
            f"/api/routes/{route_id}", json={"status": "in_progress"}, headers=headers
        )
        assert resp.status_code == 200, resp.text
        visit_body = {
            "tenantId": "tenant-1",
            "routeId": route_id,
            "driverId": JOHN,
            "customerId": 1,
            "sequenceNumber": 1,
            "visitType": "delivery",
            "scheduledDate": today,
            "timeWindowStart": "08:00",
            "timeWindowEnd": "12:00",
        }
        visit = await http.post("/api/visits", json=visit_body, headers=headers)
        assert visit.status_code in (200, 201), visit.text
        visit_id = visit.json()["id"]
        await seed.sio.emit("join-route", {"routeId": route_id}, namespace=NS)
        for status in ("arrived", "in_progress", "completed", "departed"):
            resp = await http.patch(
                f"/api/visits/{visit_id}/status", json={"status": status}, headers=headers
            )
            assert resp.status_code == 200, (status, resp.text)
        events = await eventually(
            lambda: asyncio.sleep(0, list(seed.got["visit:update"])),
            lambda es: any(e.get("visitId") == visit_id and e["status"] == "departed" for e in es),
            within=30,
            what="visit:update departed",
        )
        mine = [e["status"] for e in events if e.get("visitId") == visit_id]
        assert mine[-1] == "departed" and "completed" in mine
        await seed.sio.disconnect()
        await anonymous.sio.disconnect()


async def test_traccar_clients_request_shapes_on_the_osmand_receiver(
    client: httpx.AsyncClient,
) -> None:
    fix_s = int(time.time()) - 30
    # Traccar Client's form POST (the current app)
    form = urlencode(
        {"id": "DEV002", "lat": 40.713, "lon": -74.0055, "timestamp": fix_s, "accuracy": 5.0}
    )
    resp = await client.post(
        "/api/osmand",
        content=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200 and resp.content == b""
    # the legacy client's query string
    resp = await client.get(f"/api/osmand?id=DEV002&lat=40.7131&lon=-74.0056&timestamp={fix_s}")
    assert resp.status_code == 200 and resp.content == b""
    # the JSON body (background-geolocation format)
    json_body = {
        "device_id": "DEV002",
        "location": {
            "timestamp": iso_now(-20),
            "coords": {"latitude": 40.713, "longitude": -74.0055, "accuracy": 5, "speed": 3},
            "is_moving": True,
            "battery": {"level": 0.5, "is_charging": False},
        },
    }
    resp = await client.post(
        "/api/osmand", content=orjson.dumps(json_body), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 200 and resp.content == b""
    # Traccar's answers to an unknown device: 404 for a JSON body, 400 for query and form
    ghost = {**json_body, "device_id": "GHOST-SEED"}
    resp = await client.post(
        "/api/osmand", content=orjson.dumps(ghost), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_device"
    resp = await client.get(f"/api/osmand?id=GHOST-SEED&lat=40.7&lon=-74.0&timestamp={fix_s}")
    assert resp.status_code == 400
    # bad input: not JSON under a JSON content type, and no coordinates
    resp = await client.post(
        "/api/osmand", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    resp = await client.get(f"/api/osmand?id=DEV002&timestamp={fix_s}")
    assert resp.status_code == 400
