"""Helpers for the API tests: users of each role, drivers, routes, visits made through the API.

Everything a test makes carries a fresh suffix: the database is shared by the whole run, so
tests never assume empty tables and never touch the seed's objects except to read them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct-horse-battery-9"


def uniq(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Account:
    headers: dict[str, str]
    user: dict[str, Any]
    tokens: dict[str, Any]
    email: str
    tenant: str


async def login(client: httpx.AsyncClient, email: str, tenant: str) -> dict[str, Any]:
    resp = await client.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "tenantId": tenant}
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def make_account(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tenant: str,
    role: str,
    driver_id: str | None = None,
) -> Account:
    """Register a user through /api/auth/register (as the tenant's admin) and log in."""
    email = f"{uniq(role)}@example.com"
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "name": email, "role": role}
    if driver_id is not None:
        body["driverId"] = driver_id
    resp = await client.post("/api/auth/register", json=body, headers=admin_headers)
    assert resp.status_code == 201, resp.text
    tokens = await login(client, email, tenant)
    return Account(
        headers={"Authorization": f"Bearer {tokens['accessToken']}"},
        user=resp.json(),
        tokens=tokens,
        email=email,
        tenant=tenant,
    )


async def make_driver(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": uniq("driver"), "deviceId": uniq("DEV").upper(), **fields}
    resp = await client.post("/api/drivers", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    driver: dict[str, Any] = resp.json()
    return driver


async def make_route(
    client: httpx.AsyncClient, headers: dict[str, str], driver_id: str, **fields: Any
) -> dict[str, Any]:
    body = {"driverId": driver_id, "scheduledDate": "2026-02-07", **fields}
    resp = await client.post("/api/routes", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    route: dict[str, Any] = resp.json()
    return route


async def make_visit(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    route_id: str,
    customer_id: int,
    sequence: int,
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "routeId": route_id,
        "customerId": customer_id,
        "sequenceNumber": sequence,
        "timeWindowStart": "08:00",
        "timeWindowEnd": "12:00",
        **fields,
    }
    resp = await client.post("/api/visits", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    visit: dict[str, Any] = resp.json()
    return visit
