"""Drivers, routes, visits, customers through the API: shapes, validation, pagination,
derived route paths, route and visit status transitions (409 and nothing changed)."""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import httpx

from infrastructure.kafka import VISITS_EVENTS, end_offsets
from infrastructure.settings import Settings
from ingest.visit_lifecycle import ALLOWED  # the module was ingest.visit_states (issue 17)
from tests.integration.api_support import (
    make_account,
    make_driver,
    make_route,
    make_visit,
    uniq,
)

# Seed customers of tenant-1 (id: (lat, lng)) and one of tenant-2.
CUSTOMERS = {1: (40.7128, -74.006), 2: (40.7549, -73.984), 3: (40.686, -73.977)}
TENANT2_CUSTOMER = 4


async def collect(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], limit: int
) -> list[dict[str, Any]]:
    """Follow X-Next-Cursor to the end; return every item."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    # httpx replaces a URL's query string with `params`: carry the URL's filters over.
    parsed = httpx.URL(url)
    base, filters = str(parsed.copy_with(query=None)), dict(parsed.params)
    for _ in range(10_000):
        params: dict[str, Any] = {**filters, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(base, params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page) <= limit
        items += page
        cursor = resp.headers.get("X-Next-Cursor")
        if cursor is None:
            return items
        assert 'rel="next"' in resp.headers["Link"]
    raise AssertionError("pagination does not end")


async def test_drivers_crud_validation_and_pagination(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    made = [await make_driver(client, tenant1_headers, vehicleType="van") for _ in range(5)]
    d = made[0]
    assert d["tenantId"] == "tenant-1" and d["status"] == "active" and d["vehicleType"] == "van"
    got = await client.get(f"/api/drivers/{d['id']}", headers=tenant1_headers)
    assert got.status_code == 200 and got.json() == d

    everyone = await collect(client, "/api/drivers", tenant1_headers, limit=2)
    ids = [x["id"] for x in everyone]
    assert len(ids) == len(set(ids)), "a page repeated a driver"
    assert {x["id"] for x in made} <= set(ids)
    assert all(x["tenantId"] == "tenant-1" for x in everyone)
    total = await pg.fetchval("SELECT count(*) FROM drivers WHERE tenant_id = 'tenant-1'")
    assert len(ids) >= 5 and len(ids) <= total  # others may add drivers meanwhile

    bad = await client.get("/api/drivers", params={"cursor": "garbage!"}, headers=tenant1_headers)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"

    upd = await client.patch(
        f"/api/drivers/{d['id']}",
        json={"vehiclePlate": "NEW-0001", "status": "on_break"},
        headers=tenant1_headers,
    )
    assert upd.status_code == 200, upd.text
    assert upd.json()["vehiclePlate"] == "NEW-0001" and upd.json()["name"] == d["name"]

    # Duplicate device (across tenants too), bad bodies, foreign tenant: nothing changes.
    before = await pg.fetchval("SELECT count(*) FROM drivers")
    dup = await client.post(
        "/api/drivers", json={"name": "x", "deviceId": "DEV003"}, headers=tenant1_headers
    )
    assert dup.status_code == 409 and dup.json()["error"] == "conflict"
    for body in (
        {"name": "x"},
        {"name": "", "deviceId": uniq("D")},
        {"name": "x", "deviceId": "has space"},
        {"name": "x", "deviceId": uniq("D"), "tenantId": "tenant-2"},
        {"name": "x", "deviceId": uniq("D"), "surprise": 1},
    ):
        resp = await client.post("/api/drivers", json=body, headers=tenant1_headers)
        assert resp.status_code == 422, (body, resp.text)
    notjson = await client.post(
        "/api/drivers",
        content=b"{nope",
        headers=tenant1_headers | {"Content-Type": "application/json"},
    )
    assert notjson.status_code in (400, 422) and "error" in notjson.json()
    clash = await client.patch(
        f"/api/drivers/{d['id']}", json={"deviceId": made[1]["deviceId"]}, headers=tenant1_headers
    )
    assert clash.status_code == 409
    null = await client.patch(
        f"/api/drivers/{d['id']}", json={"name": None}, headers=tenant1_headers
    )
    assert null.status_code == 422
    assert await pg.fetchval("SELECT count(*) FROM drivers") == before
    row = await pg.fetchrow(
        "SELECT name, device_unique_id FROM drivers WHERE id = $1::uuid", d["id"]
    )
    assert (row["name"], row["device_unique_id"]) == (d["name"], d["deviceId"])


async def test_routes_derived_and_planned_paths_and_status_rules(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    driver = await make_driver(client, tenant1_headers)
    route = await make_route(client, tenant1_headers, driver["id"], name="derived")
    assert route["status"] == "planned" and route["geometry"] is None
    assert route["geomSource"] is None and route["totalStops"] == 0

    # Visits added out of order: the path follows sequence order, straight segments.
    for seq, cust in ((2, 3), (1, 1), (3, 2)):
        await make_visit(client, tenant1_headers, route["id"], cust, seq)
    full = (await client.get(f"/api/routes/{route['id']}", headers=tenant1_headers)).json()
    assert [v["sequenceNumber"] for v in full["visits"]] == [1, 2, 3]
    assert full["geomSource"] == "derived" and full["totalStops"] == 3
    expected = [[CUSTOMERS[c][1], CUSTOMERS[c][0]] for c in (1, 3, 2)]
    assert full["geometry"]["type"] == "LineString"
    assert full["geometry"]["coordinates"] == expected

    line = {"type": "LineString", "coordinates": [[-74.0, 40.7], [-73.99, 40.71], [-73.98, 40.7]]}
    planned = await make_route(client, tenant1_headers, driver["id"], geometry=line)
    assert planned["geomSource"] == "planned" and planned["geometry"] == line
    await make_visit(client, tenant1_headers, planned["id"], 1, 1)
    await make_visit(client, tenant1_headers, planned["id"], 2, 2)
    again = (await client.get(f"/api/routes/{planned['id']}", headers=tenant1_headers)).json()
    assert again["geometry"] == line and again["geomSource"] == "planned"
    # Clearing the planned path derives it from the visits.
    cleared = await client.patch(
        f"/api/routes/{planned['id']}", json={"geometry": None}, headers=tenant1_headers
    )
    assert cleared.json()["geomSource"] == "derived"
    assert cleared.json()["geometry"]["coordinates"] == [
        [CUSTOMERS[1][1], CUSTOMERS[1][0]],
        [CUSTOMERS[2][1], CUSTOMERS[2][0]],
    ]

    count = await pg.fetchval("SELECT count(*) FROM routes")
    for geometry, word in (
        ({"type": "LineString", "coordinates": [[-74.0, 40.7]]}, "at least 2"),
        ({"type": "LineString", "coordinates": [[-74.0, 95.0], [-74.0, 40.0]]}, "latitude 95"),
        ({"type": "Point", "coordinates": [-74.0, 40.7]}, "LineString"),
    ):
        resp = await client.post(
            "/api/routes",
            json={"driverId": driver["id"], "scheduledDate": "2026-02-07", "geometry": geometry},
            headers=tenant1_headers,
        )
        assert resp.status_code == 422 and word in resp.json()["message"], resp.text
    foreign = await client.post(
        "/api/routes",
        json={"driverId": "a1b2c3d4-0003-4000-8000-000000000003", "scheduledDate": "2026-02-07"},
        headers=tenant1_headers,
    )
    assert foreign.status_code == 404
    assert await pg.fetchval("SELECT count(*) FROM routes") == count

    # Status: planned -> in_progress -> completed; no way back; 409 says what is allowed.
    url = f"/api/routes/{route['id']}"
    skip = await client.patch(url, json={"status": "completed"}, headers=tenant1_headers)
    assert skip.status_code == 409
    assert skip.json()["details"] == {
        "current": "planned",
        "requested": "completed",
        "allowedNext": ["cancelled", "in_progress"],
    }
    started = await client.patch(url, json={"status": "in_progress"}, headers=tenant1_headers)
    assert started.status_code == 200 and started.json()["startedAt"] is not None
    active = await client.get(f"/api/routes/driver/{driver['id']}/active", headers=tenant1_headers)
    assert active.status_code == 200 and active.json()["id"] == route["id"]
    assert len(active.json()["visits"]) == 3
    done = await client.patch(url, json={"status": "completed"}, headers=tenant1_headers)
    assert done.status_code == 200 and done.json()["completedAt"] is not None
    back = await client.patch(url, json={"status": "in_progress"}, headers=tenant1_headers)
    assert back.status_code == 409 and back.json()["details"]["allowedNext"] == []
    none_active = await client.get(
        f"/api/routes/driver/{driver['id']}/active", headers=tenant1_headers
    )
    assert none_active.status_code == 404
    late = await client.post(
        "/api/visits",
        json={"routeId": route["id"], "customerId": 1, "sequenceNumber": 9},
        headers=tenant1_headers,
    )
    assert late.status_code == 409

    listed = await collect(client, f"/api/routes?driverId={driver['id']}", tenant1_headers, 1)
    assert sorted(r["id"] for r in listed) == sorted([route["id"], planned["id"]])
    history = await client.get(f"/api/routes/{route['id']}/history", headers=tenant1_headers)
    assert history.status_code == 200 and history.json()["positions"] == []


async def test_route_today_lists_only_todays_routes(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    from datetime import UTC, datetime

    driver = await make_driver(client, tenant1_headers)
    today = datetime.now(UTC).date().isoformat()
    r1 = await make_route(client, tenant1_headers, driver["id"], scheduledDate=today)
    await make_route(client, tenant1_headers, driver["id"], scheduledDate="2020-01-01")
    resp = await client.get(f"/api/routes/driver/{driver['id']}/today", headers=tenant1_headers)
    assert resp.status_code == 200 and [r["id"] for r in resp.json()] == [r1["id"]]


async def test_visit_validation(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    driver = await make_driver(client, tenant1_headers)
    other = await make_driver(client, tenant1_headers)
    route = await make_route(client, tenant1_headers, driver["id"])
    v = await make_visit(client, tenant1_headers, route["id"], 1, 1, visitType="pickup")
    assert v["status"] == "pending" and v["driverId"] == driver["id"]
    assert v["scheduledDate"] == route["scheduledDate"] and v["timeWindowStart"] == "08:00"
    assert v["geofenceId"] is not None and v["visitType"] == "pickup"
    count = await pg.fetchval("SELECT count(*) FROM planned_visits")
    base = {"routeId": route["id"], "customerId": 2, "sequenceNumber": 2}
    for extra, status in (
        ({"sequenceNumber": 1}, 409),
        ({"customerId": TENANT2_CUSTOMER}, 404),
        ({"customerId": 999_999_999}, 404),
        ({"routeId": "00000000-0000-4000-8000-000000000000"}, 404),
        ({"driverId": other["id"]}, 422),
        ({"sequenceNumber": 0}, 422),
        ({"timeWindowStart": "25:00"}, 422),
        ({"timeWindowStart": "12:00", "timeWindowEnd": "08:00"}, 422),
        ({"tenantId": "tenant-2"}, 422),
    ):
        resp = await client.post("/api/visits", json=base | extra, headers=tenant1_headers)
        assert resp.status_code == status, (extra, resp.text)
        assert set(resp.json()) >= {"error", "message"}
    assert await pg.fetchval("SELECT count(*) FROM planned_visits") == count
    by_driver = await collect(client, f"/api/visits/driver/{driver['id']}", tenant1_headers, 1)
    assert [x["id"] for x in by_driver] == [v["id"]]


async def test_every_legal_visit_transition_succeeds_and_every_illegal_one_is_409(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    statuses = list(ALLOWED)
    driver = await make_driver(client, tenant1_headers)
    route = await make_route(client, tenant1_headers, driver["id"])
    pairs = list(itertools.product(statuses, statuses))
    visits = [
        await make_visit(client, tenant1_headers, route["id"], 1 + i % 3, i + 1)
        for i in range(len(pairs))
    ]
    legal = illegal = 0
    for (current, target), visit in zip(pairs, visits, strict=True):
        # Put the visit into `current` (setup only), then ask the API for `target`.
        await pg.execute(
            "UPDATE planned_visits SET status = $2 WHERE id = $1::uuid", visit["id"], current
        )
        before = await pg.fetchrow("SELECT * FROM planned_visits WHERE id = $1::uuid", visit["id"])
        resp = await client.patch(
            f"/api/visits/{visit['id']}/status", json={"status": target}, headers=tenant1_headers
        )
        after = await pg.fetchrow("SELECT * FROM planned_visits WHERE id = $1::uuid", visit["id"])
        if target in ALLOWED[current]:
            legal += 1
            assert resp.status_code == 200, (current, target, resp.text)
            assert resp.json()["status"] == target == after["status"]
            assert resp.json()["allowedNext"] == sorted(ALLOWED[target])
        else:
            illegal += 1
            assert resp.status_code == 409, (current, target, resp.text)
            body = resp.json()
            assert body["error"] == "conflict"
            assert body["details"]["allowedNext"] == sorted(ALLOWED[current])
            assert body["details"]["current"] == current
            assert dict(after) == dict(before), f"{current}->{target} changed the visit"
    assert legal == sum(len(v) for v in ALLOWED.values()) and illegal == 64 - legal

    unknown = await client.patch(
        f"/api/visits/{visits[0]['id']}/status",
        json={"status": "teleported"},
        headers=tenant1_headers,
    )
    assert unknown.status_code == 422
    # The completion record (kept by the 0007 triggers) exists for every API-made finish.
    recorded = {
        str(r["visit_id"]): r["status"]
        for r in await pg.fetch(
            "SELECT visit_id, status FROM visit_completions WHERE route_id = $1::uuid",
            route["id"],
        )
    }
    for (current, target), visit in zip(pairs, visits, strict=True):
        if target in ALLOWED[current] and target in ("completed", "skipped", "failed"):
            assert recorded.get(visit["id"]) == target, (current, target)


async def test_the_seeds_visit_flow_ends_completed_then_departed(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    # Issue 20: the seed allows completed → departed (completed was terminal here before).
    driver = await make_driver(client, tenant1_headers)
    route = await make_route(client, tenant1_headers, driver["id"])
    visit = await make_visit(client, tenant1_headers, route["id"], 1, 1)
    url = f"/api/visits/{visit['id']}/status"
    for status in ("arrived", "in_progress", "completed", "departed"):
        resp = await client.patch(url, json={"status": status}, headers=tenant1_headers)
        assert resp.status_code == 200, (status, resp.text)
        assert resp.json()["status"] == status
    row = await pg.fetchrow("SELECT * FROM planned_visits WHERE id = $1::uuid", visit["id"])
    assert row["completed_at"] is not None and row["departed_at"] >= row["completed_at"]
    # still counted as done: the route's counter and the completion record keep it
    got = await client.get(f"/api/routes/{route['id']}", headers=tenant1_headers)
    assert got.json()["completedStops"] == 1
    done = await pg.fetchrow(
        "SELECT status, departed_at, dwell_s FROM visit_completions WHERE visit_id = $1::uuid",
        visit["id"],
    )
    assert done["status"] == "completed" and done["departed_at"] == row["departed_at"]
    assert done["dwell_s"] >= 0
    # bad input: departing twice, or going back from a completed visit, is still a 409
    again = await client.patch(url, json={"status": "departed"}, headers=tenant1_headers)
    assert again.status_code == 409
    other = await make_visit(client, tenant1_headers, route["id"], 2, 2)
    for status in ("arrived", "completed"):
        resp = await client.patch(
            f"/api/visits/{other['id']}/status", json={"status": status}, headers=tenant1_headers
        )
        assert resp.status_code == 200, resp.text
    for target in ("arrived", "in_progress", "pending", "completed"):
        resp = await client.patch(
            f"/api/visits/{other['id']}/status", json={"status": target}, headers=tenant1_headers
        )
        assert resp.status_code == 409, (target, resp.text)
        assert resp.json()["details"]["allowedNext"] == ["departed"]


async def test_a_driver_user_sees_and_moves_only_their_own(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    mine = await make_driver(client, tenant1_headers)
    theirs = await make_driver(client, tenant1_headers)
    me = await make_account(client, tenant1_headers, "tenant-1", "driver", driver_id=mine["id"])
    my_route = await make_route(client, tenant1_headers, mine["id"])
    their_route = await make_route(client, tenant1_headers, theirs["id"])
    my_visit = await make_visit(client, tenant1_headers, my_route["id"], 1, 1)
    their_visit = await make_visit(client, tenant1_headers, their_route["id"], 1, 1)

    listed = (await client.get("/api/routes", headers=me.headers)).json()
    assert [r["id"] for r in listed] == [my_route["id"]]
    assert (
        await client.get(f"/api/routes/{my_route['id']}", headers=me.headers)
    ).status_code == 200
    for url in (
        f"/api/routes/{their_route['id']}",
        f"/api/visits/{their_visit['id']}",
        f"/api/visits/route/{their_route['id']}",
        f"/api/visits/driver/{theirs['id']}",
        f"/api/drivers/{theirs['id']}",
        f"/api/routes/driver/{theirs['id']}/today",
    ):
        assert (await client.get(url, headers=me.headers)).status_code == 404, url
    ok = await client.patch(
        f"/api/visits/{my_visit['id']}/status", json={"status": "arrived"}, headers=me.headers
    )
    assert ok.status_code == 200
    no = await client.patch(
        f"/api/visits/{their_visit['id']}/status", json={"status": "arrived"}, headers=me.headers
    )
    assert no.status_code == 404
    theirs_now = await client.get(f"/api/visits/{their_visit['id']}", headers=tenant1_headers)
    assert theirs_now.json()["status"] == "pending"


async def test_customers_are_the_tenants(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], tenant2_headers: dict[str, str]
) -> None:
    mine = await collect(client, "/api/customers", tenant1_headers, limit=2)
    assert {1, 2, 3} <= {c["id"] for c in mine}
    assert all(c["tenantId"] == "tenant-1" for c in mine)
    one = (await client.get("/api/customers/1", headers=tenant1_headers)).json()
    assert one["name"] == "Downtown Warehouse" and one["geofenceId"] is not None
    assert (await client.get("/api/customers/1", headers=tenant2_headers)).status_code == 404
    assert (await client.get("/api/customers/abc", headers=tenant1_headers)).status_code == 404


async def test_a_visit_change_is_published_on_visits_events(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool, settings: Settings
) -> None:
    driver = await make_driver(client, tenant1_headers)
    route = await make_route(client, tenant1_headers, driver["id"])
    visit = await make_visit(client, tenant1_headers, route["id"], 1, 1)
    before = sum((await end_offsets(settings.kafka, VISITS_EVENTS)).values())
    resp = await client.patch(
        f"/api/visits/{visit['id']}/status", json={"status": "arrived"}, headers=tenant1_headers
    )
    assert resp.status_code == 200
    after = sum((await end_offsets(settings.kafka, VISITS_EVENTS)).values())
    assert after >= before + 1
    # Published, so nothing of it is left for the workers' outbox flush.
    left = await pg.fetchval(
        "SELECT count(*) FROM event_outbox WHERE value->>'visitId' = $1", visit["id"]
    )
    assert left == 0
    # An illegal change writes no event.
    refused = await client.patch(
        f"/api/visits/{visit['id']}/status", json={"status": "pending"}, headers=tenant1_headers
    )
    assert refused.status_code == 409
    assert sum((await end_offsets(settings.kafka, VISITS_EVENTS)).values()) == after
