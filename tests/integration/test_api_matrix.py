"""The route matrix: every route of the app × {no token, expired token, tampered tokens,
another tenant's token, a lower role}.

Generated from ``app.routes``: a route is bearer-protected when ``get_principal`` is in its
dependency tree, limited to the roles of the ``RoleGuard`` found there; a route without a
bearer must be one of the few public ones listed below. Expected: 401 for missing, expired
or tampered tokens; 403 for a role the route does not admit; 404 for another tenant's
object (never 403: no existence leak); and no response ever carries another tenant's data.
"""

from __future__ import annotations

import base64
import json
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.dependencies import RoleGuard, get_principal
from infrastructure.settings import Settings
from tests.integration.api_support import make_account, make_driver, make_route, make_visit, uniq

ALL_ROLES = frozenset({"admin", "dispatcher", "driver"})
# Public (no bearer): health, the login/refresh pair, and the device receivers (API keys or
# registered device ids instead of users).
PUBLIC = re.compile(
    r"^/api/(health(/.*)?|auth/(login|refresh)|traccar/.*|osmand/?|positions/batch)$"
)
# Path parameters that name a tenant's object; other tenants must get 404 for them.
OBJECT_PARAMS = {"driver_id", "route_id", "visit_id", "customer_id", "geofence_id"}
# The routers of issue #3; other routers get the auth checks and the no-leak rule, and the
# 404 rule when a valid request can be built from their OpenAPI examples.
OUR_ROUTERS = {"auth", "drivers", "routes", "visits", "customers", "geofences"}
# Defaults for required query parameters that have no example in the OpenAPI document.
QUERY_DEFAULTS = {
    "lat": "40.7128",
    "lon": "-74.006",
    "bbox": "-74.1,40.6,-73.9,40.8",
    "from": "2026-02-07T00:00:00Z",
    "to": "2026-02-07T23:00:00Z",
    "date": "2026-02-07",
}


def walk_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for r in routes:
        if hasattr(r, "original_router"):  # an included router (FastAPI ≥ 0.16x)
            yield from walk_routes(r.original_router.routes)
        elif isinstance(r, APIRoute):
            yield r


def calls(dependant: Dependant) -> Iterator[Any]:
    for d in dependant.dependencies:
        yield d.call
        yield from calls(d)


def auth_of(route: APIRoute) -> tuple[bool, frozenset[str]]:
    """Return (needs a bearer, admitted roles)."""
    found = list(calls(route.dependant))
    bearer = get_principal in found
    guards = [c for c in found if isinstance(c, RoleGuard)]
    roles = ALL_ROLES
    for g in guards:
        roles = roles & g.roles
    return bearer, roles


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def b64decode(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


@pytest.fixture(scope="module")
async def world(
    client: httpx.AsyncClient,
    tenant1_headers: dict[str, str],
    tenant2_headers: dict[str, str],
) -> dict[str, Any]:
    """Objects of tenant-1 (two drivers, their routes and visits, a geofence), users of
    every role, and tokens that must not work."""
    mine = await make_driver(client, tenant1_headers)
    other = await make_driver(client, tenant1_headers)
    routes = [
        await make_route(client, tenant1_headers, d["id"], name=uniq("route"))
        for d in (mine, other)
    ]
    visits = [await make_visit(client, tenant1_headers, r["id"], 1, 1) for r in routes]
    gname = uniq("geofence")
    g = await client.post(
        "/api/geofences",
        json={"name": gname, "circle": {"lat": 40.72, "lon": -74.0, "radiusM": 120}},
        headers=tenant1_headers,
    )
    assert g.status_code == 201, g.text
    dispatcher = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    driver = await make_account(client, tenant1_headers, "tenant-1", "driver", driver_id=mine["id"])
    markers = [
        "tenant-1",
        "Downtown Warehouse",
        "John Smith",
        mine["id"],
        mine["name"],
        mine["deviceId"],
        other["id"],
        other["name"],
        gname,
        *(r["id"] for r in routes),
        *(r["name"] for r in routes),
        *(v["id"] for v in visits),
        dispatcher.email,
    ]
    return {
        "mine": mine,
        "other": other,
        "routes": routes,
        "visits": visits,
        "geofence": g.json(),
        "dispatcher": dispatcher,
        "driver": driver,
        "markers": markers,
    }


def forged_tokens(world: dict[str, Any], settings: Settings) -> dict[str, str]:
    real = world["dispatcher"].tokens["accessToken"]
    header, payload, signature = real.split(".")
    claims = b64decode(payload)
    now = int(time.time())
    secret = settings.auth.jwt_secret.get_secret_value()
    admin_claims = claims | {"role": "admin"}
    return {
        "expired": jwt.encode(claims | {"iat": now - 3600, "exp": now - 60}, secret, "HS256"),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(admin_claims)}.",
        "wrong key": jwt.encode(admin_claims, "another-secret-" + "x" * 32, "HS256"),
        "role edited": f"{header}.{b64(admin_claims)}.{signature}",
        "tenant edited": f"{header}.{b64(claims | {'tenant': 'tenant-2'})}.{signature}",
        "garbage": "not.a.jwt",
    }


def fill(route: APIRoute, values: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)(?::\w+)?}", route.path)
    path = route.path
    for n in names:
        path = re.sub("{" + n + r"(?::\w+)?}", values.get(n, "1"), path)
    return path


def query_for(openapi: dict[str, Any], route: APIRoute, method: str) -> dict[str, str]:
    op = openapi["paths"].get(route.path, {}).get(method.lower(), {})
    params: dict[str, str] = {}
    for p in op.get("parameters", []):
        if p.get("in") != "query" or not p.get("required"):
            continue
        name = p["name"]
        example = p.get("example")
        if example is None and p.get("examples"):
            first = next(iter(p["examples"].values()))
            example = first.get("value") if isinstance(first, dict) else first
        if example is None:
            example = (p.get("schema") or {}).get("examples", [None])[0]
        params[name] = str(example if example is not None else QUERY_DEFAULTS.get(name, "1"))
    return params


def body_for(method: str, path: str, world: dict[str, Any], target: str) -> Any:
    """A valid body naming tenant-1's objects (or None when the route takes none)."""
    r = world["routes"][1]
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/auth/logout"): {},
        ("POST", "/api/auth/register"): {
            "email": f"{uniq('m')}@example.com",
            "password": "matrix-password-1",
            "role": "dispatcher",
        },
        ("POST", "/api/drivers"): {"name": uniq("m"), "deviceId": uniq("M").upper()},
        ("PATCH", "/api/drivers/{driver_id}"): {"vehiclePlate": "MATRIX"},
        ("POST", "/api/drivers/within"): {
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[-74.1, 40.6], [-73.9, 40.6], [-73.9, 40.8], [-74.1, 40.6]]],
            }
        },
        ("POST", "/api/routes"): {"driverId": world[target]["id"], "scheduledDate": "2026-02-07"},
        ("PATCH", "/api/routes/{route_id}"): {"status": "cancelled"},
        ("POST", "/api/visits"): {"routeId": r["id"], "customerId": 1, "sequenceNumber": 77},
        ("PATCH", "/api/visits/{visit_id}/status"): {"status": "skipped"},
        ("POST", "/api/geofences"): {
            "name": uniq("m"),
            "customerId": 2,
            "circle": {"lat": 40.7, "lon": -74.0, "radiusM": 50},
        },
        ("PUT", "/api/geofences/{geofence_id}"): {
            "name": uniq("m"),
            "circle": {"lat": 40.7, "lon": -74.0, "radiusM": 50},
        },
        ("POST", "/api/geofences/traccar"): [
            {"name": uniq("m"), "area": "CIRCLE (40.7 -74.0, 50)"}
        ],
    }
    return bodies.get((method, path))


def cases(app: FastAPI) -> list[tuple[str, APIRoute, bool, frozenset[str]]]:
    out = []
    for route in walk_routes(app.routes):
        bearer, roles = auth_of(route)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, route, bearer, roles))
    return out


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    headers: dict[str, str],
) -> httpx.Response:
    try:
        return await client.request(
            method, path, params=params, json=body if body is not None else None, headers=headers
        )
    except BaseException as exc:  # noqa: BLE001 - one broken route must not hide the others
        # Reported as a 599 so the expectation that follows names the route.
        return httpx.Response(599, text=f"raised {exc!r}")


async def test_the_route_matrix(
    client: httpx.AsyncClient,
    tenant2_headers: dict[str, str],
    tenant1_headers: dict[str, str],
    settings: Settings,
    world: dict[str, Any],
) -> None:
    from api.main import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate operation ids are someone else's concern
        app = create_app(settings)
        openapi = app.openapi()
    forged = forged_tokens(world, settings)
    mine_values = {
        "driver_id": world["mine"]["id"],
        "route_id": world["routes"][0]["id"],
        "visit_id": world["visits"][0]["id"],
        "customer_id": "1",
        "geofence_id": str(world["geofence"]["id"]),
    }
    other_values = mine_values | {
        "driver_id": world["other"]["id"],
        "route_id": world["routes"][1]["id"],
        "visit_id": world["visits"][1]["id"],
    }
    role_headers = {
        "admin": tenant1_headers,
        "dispatcher": world["dispatcher"].headers,
        "driver": world["driver"].headers,
    }
    failures: list[str] = []
    checked = 0

    def expect(ok: bool, what: str, resp: httpx.Response) -> None:
        if not ok:
            failures.append(f"{what}: {resp.status_code} {resp.text[:200]}")

    for method, route, bearer, roles in cases(app):
        if route.path in ("/openapi.json", "/docs", "/redoc") or route.path.startswith("/docs"):
            continue
        if not bearer:
            if not PUBLIC.match(route.path):
                failures.append(f"{method} {route.path} has no bearer check and is not public")
            continue
        checked += 1
        names = set(re.findall(r"{(\w+)", route.path))
        params = query_for(openapi, route, method)
        label = f"{method} {route.path}"
        path = fill(route, other_values)
        body = body_for(method, route.path, world, "other")

        # 1. No token, expired and forged tokens: 401, whatever the route.
        resp = await call(client, method, path, params, body, {})
        expect(resp.status_code == 401, f"{label} without token", resp)
        for name, token in forged.items():
            resp = await call(
                client, method, path, params, body, {"Authorization": f"Bearer {token}"}
            )
            expect(resp.status_code == 401, f"{label} with {name} token", resp)
            if name == "expired":
                expect(resp.json().get("error") == "unauthorized", f"{label} error body", resp)

        # 2. A role the route does not admit: 403.
        for role in sorted(ALL_ROLES - roles):
            resp = await call(client, method, path, params, body, role_headers[role])
            expect(resp.status_code == 403, f"{label} as {role}", resp)
            expect(resp.json().get("error") == "forbidden", f"{label} as {role} body", resp)

        # 3. Another tenant's admin: 404 for tenant-1's objects, and never tenant-1's data.
        resp = await call(client, method, path, params, body, tenant2_headers)
        ours = route.endpoint.__module__.rsplit(".", 1)[-1] in OUR_ROUTERS
        if ours:
            expect(resp.status_code < 500, f"{label} as tenant-2 failed", resp)
        if not ours and resp.status_code in (400, 422):
            # Someone else's route we could not build a valid request for (no OpenAPI
            # example for a required parameter): only the no-leak rule can be checked.
            pass
        elif names and names <= OBJECT_PARAMS:
            expect(resp.status_code == 404, f"{label} as tenant-2", resp)
        elif body is not None and any(
            k in json.dumps(body) for k in (world["other"]["id"], world["routes"][1]["id"])
        ):
            expect(resp.status_code == 404, f"{label} as tenant-2 naming tenant-1 objects", resp)
        leaked = [m for m in world["markers"] if m in resp.text]
        expect(not leaked, f"{label} as tenant-2 leaks {leaked}", resp)

        # 4. A driver on a route open to drivers: another driver's objects are 404.
        if "driver" in roles and names and names <= OBJECT_PARAMS and "customer_id" not in names:
            if route.endpoint.__module__.startswith(
                "api.routers."
            ) and route.endpoint.__module__.split(".")[-1] in {
                "drivers",
                "routes",
                "visits",
            }:
                resp = await call(client, method, path, params, body, role_headers["driver"])
                expect(resp.status_code == 404, f"{label} as another driver", resp)
        if "driver" in roles and not names and method == "GET":
            resp = await call(client, method, path, params, None, role_headers["driver"])
            theirs = [world["other"]["id"], world["routes"][1]["id"], world["visits"][1]["id"]]
            expect(not any(t in resp.text for t in theirs), f"{label} as driver shows others", resp)

    assert checked >= 30, f"only {checked} bearer routes found: is the walk broken?"
    assert not failures, "\n".join(failures)

    # Nothing the forbidden calls attempted happened.
    g = await client.get(f"/api/geofences/{world['geofence']['id']}", headers=tenant1_headers)
    assert g.status_code == 200
    v = await client.get(f"/api/visits/{world['visits'][1]['id']}", headers=tenant1_headers)
    assert v.json()["status"] == "pending"
    r = await client.get(f"/api/routes/{world['routes'][1]['id']}", headers=tenant1_headers)
    assert r.json()["status"] == "planned" and r.json()["totalStops"] == 1


def test_the_route_walk_sees_role_guards(settings: Settings) -> None:
    """The matrix is only as good as its walk: it must find the guards we know exist."""
    from api.main import create_app

    app = create_app(settings)
    found = {(m, r.path): auth_of(r) for m, r, _, _ in cases(app) for _ in [0]}
    assert found[("POST", "/api/auth/register")] == (True, frozenset({"admin"}))
    assert found[("GET", "/api/drivers")] == (True, frozenset({"admin", "dispatcher"}))
    assert found[("PATCH", "/api/visits/{visit_id}/status")] == (True, ALL_ROLES)
    assert found[("POST", "/api/auth/login")][0] is False
