"""Putting the simulated fleet into FleetPulse: drivers, customers, geofences, routes, visits.

Through the REST API: drivers (``POST /api/drivers``), geofences (``POST /api/geofences``),
routes with their planned street geometry (``POST /api/routes``) and planned visits
(``POST /api/visits``).

Two steps are plain SQL, kept apart in :func:`sql_upsert_customers` and
:func:`sql_close_open_routes`: customers belong to the business system (MariaDB, synchronised
by CDC) and FleetPulse's REST API has no route to create them; and a driver's routes left
open by an earlier run would otherwise stay that driver's active route.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import httpx

from simulator.planning import Customer, RoutePlan

CUSTOMER_ID_BASE = 900_000_000_000_000  # + OSM node id: the same street spot, the same id


class SetupError(RuntimeError):
    """The API refused part of the set-up."""


@dataclass(frozen=True, slots=True)
class CreatedRoute:
    route_id: str
    visit_ids: tuple[str, ...]


def _check(resp: httpx.Response, what: str, ok: tuple[int, ...] = (200, 201)) -> Any:
    if resp.status_code not in ok:
        raise SetupError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp.json() if resp.content else None


async def login(
    client: httpx.AsyncClient, email: str, password: str, tenant: str
) -> dict[str, str]:
    """Bearer headers for a user of the tenant."""
    body = _check(
        await client.post(
            "/api/auth/login", json={"email": email, "password": password, "tenantId": tenant}
        ),
        "login",
    )
    return {"Authorization": f"Bearer {body['accessToken']}"}


async def ensure_drivers(
    client: httpx.AsyncClient, headers: dict[str, str], device_ids: list[str]
) -> dict[str, str]:
    """Driver id by device id; creates the drivers that do not exist yet."""
    known: dict[str, str] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get("/api/drivers", params=params, headers=headers)
        for d in _check(resp, "list drivers"):
            known[d["deviceId"]] = d["id"]
        cursor = resp.headers.get("X-Next-Cursor")
        if not cursor:
            break
    missing = [d for d in device_ids if d not in known]
    sem = asyncio.Semaphore(16)

    async def create(device: str) -> None:
        async with sem:
            resp = await client.post(
                "/api/drivers",
                json={"name": f"Sim driver {device}", "deviceId": device, "vehicleType": "van"},
                headers=headers,
            )
        known[device] = _check(resp, f"create driver {device}")["id"]

    await asyncio.gather(*(create(d) for d in missing))
    return {d: known[d] for d in device_ids}


async def sql_upsert_customers(
    conn: asyncpg.Connection, tenant: str, cs: list[Customer], radius_m: float
) -> None:
    """Customers by SQL (no REST route creates them; the business system owns them)."""
    await conn.executemany(
        """INSERT INTO customers (id, tenant_id, name, address, lat, lng, geofence_radius_m,
                                  customer_type, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'simulated', true)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, lat = EXCLUDED.lat,
               lng = EXCLUDED.lng, updated_at = now()""",
        [(c.id, tenant, c.name, c.name, c.lat, c.lon, round(radius_m)) for c in cs],
    )


async def sql_close_open_routes(conn: asyncpg.Connection, driver_ids: list[str]) -> int:
    """Cancel the simulated drivers' routes still open from an earlier run."""
    status = await conn.execute(
        """UPDATE routes SET status = 'cancelled', updated_at = now()
           WHERE driver_id = ANY($1::uuid[]) AND status IN ('planned', 'in_progress')""",
        driver_ids,
    )
    return int(status.split()[-1])


async def ensure_geofences(
    client: httpx.AsyncClient, headers: dict[str, str], cs: list[Customer], radius_m: float
) -> None:
    """A circular geofence per customer (a customer that already has one keeps it)."""
    sem = asyncio.Semaphore(16)

    async def create(c: Customer) -> None:
        async with sem:
            resp = await client.post(
                "/api/geofences",
                json={
                    "name": c.name,
                    "customerId": c.id,
                    "circle": {"lat": c.lat, "lon": c.lon, "radiusM": radius_m},
                },
                headers=headers,
            )
        _check(resp, f"geofence of customer {c.id}", ok=(201, 409))

    await asyncio.gather(*(create(c) for c in cs))


async def create_route(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    driver_id: str,
    day: date,
    plan: RoutePlan,
    name: str,
) -> CreatedRoute:
    """The route with its street geometry, then its visits in order."""
    geometry = {"type": "LineString", "coordinates": [list(c) for c in plan.geometry()]}
    route = _check(
        await client.post(
            "/api/routes",
            json={
                "driverId": driver_id,
                "scheduledDate": day.isoformat(),
                "name": name,
                "status": "in_progress",
                "geometry": geometry,
            },
            headers=headers,
        ),
        "create route",
    )
    visit_ids = []
    for seq, c in enumerate(plan.stops, start=1):
        visit = _check(
            await client.post(
                "/api/visits",
                json={"routeId": route["id"], "customerId": c.id, "sequenceNumber": seq},
                headers=headers,
            ),
            "create visit",
        )
        visit_ids.append(str(visit["id"]))
    return CreatedRoute(str(route["id"]), tuple(visit_ids))
