"""Conventions of the REST API: OpenAPI with examples, CORS from settings, error envelope,
body size limit."""

from __future__ import annotations

import warnings
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from infrastructure.settings import Settings

OURS = (
    "/api/auth",
    "/api/drivers",
    "/api/routes",
    "/api/visits",
    "/api/customers",
    "/api/geofences",
)
# Routes of other issues that live under a prefix of ours.
NOT_OURS = ("/playback", "/stats", "/trips", "/export")


def _has_example(spec: dict[str, Any], content: dict[str, Any] | None) -> bool:
    for media in (content or {}).values():
        if "example" in media or "examples" in media:
            return True
        schema = media.get("schema", {})
        if "examples" in schema:
            return True
        ref = schema.get("$ref")
        if ref and "examples" in spec["components"]["schemas"][ref.split("/")[-1]]:
            return True
    return False


def test_openapi_documents_every_route_with_examples(settings: Settings) -> None:
    from api.main import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = create_app(settings).openapi()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problems = []
    count = 0
    for path, ops in spec["paths"].items():
        if not path.startswith(OURS) or path.endswith(NOT_OURS):
            continue
        for method, op in ops.items():
            count += 1
            where = f"{method.upper()} {path}"
            if not op.get("summary"):
                problems.append(f"{where}: no summary")
            ok = [
                c
                for c, r in op["responses"].items()
                if c.startswith("2") and (c == "204" or _has_example(spec, r.get("content")))
            ]
            if not ok:
                problems.append(f"{where}: no example of a successful response")
            body = op.get("requestBody")
            if body is not None and not _has_example(spec, body.get("content")):
                problems.append(f"{where}: no request body example")
            for p in op.get("parameters", []):
                if p["in"] == "query" and p.get("required"):
                    if "example" not in p and "examples" not in p.get("schema", {}):
                        problems.append(f"{where}: required ?{p['name']} has no example")
            public = path in ("/api/auth/login", "/api/auth/refresh")
            if not public and not op.get("security"):
                problems.append(f"{where}: bearer security not declared")
    assert count >= 30
    assert not problems, "\n".join(problems)
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert sorted({i for i in ids if ids.count(i) > 1}) == []  # clients generate from these


async def test_cors_follows_settings(settings: Settings, client: httpx.AsyncClient) -> None:
    """(``client`` makes sure the run's database exists before these apps start.)"""
    from api.main import create_app

    configured = settings.model_copy(
        update={"api": settings.api.model_copy(update={"cors_origins": "https://dash.example"})}
    )
    for app_settings, allowed in ((configured, True), (settings, False)):
        app = create_app(app_settings)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                pre = await c.options(
                    "/api/drivers",
                    headers={
                        "Origin": "https://dash.example",
                        "Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "Authorization",
                    },
                )
                got = pre.headers.get("access-control-allow-origin")
                assert (got == "https://dash.example") is allowed, pre.headers
                other = await c.options(
                    "/api/drivers",
                    headers={
                        "Origin": "https://evil.example",
                        "Access-Control-Request-Method": "GET",
                    },
                )
                assert other.headers.get("access-control-allow-origin") is None
                simple = await c.get("/api/health", headers={"Origin": "https://dash.example"})
                if allowed:
                    assert "X-Next-Cursor" in simple.headers["access-control-expose-headers"]


async def test_errors_share_one_envelope(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    unknown = await client.get("/api/nowhere", headers=tenant1_headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    wrong = await client.delete("/api/drivers", headers=tenant1_headers)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    huge = await client.post(
        "/api/geofences",
        content=b'{"name": "x", "area": "' + b"9" * 2_000_000 + b'"}',
        headers=tenant1_headers | {"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"
    missing = await client.get("/api/drivers/near", params={"lat": 1}, headers=tenant1_headers)
    assert missing.status_code == 422 and missing.json()["error"] == "validation_error"
    assert {d["loc"] for d in missing.json()["details"]} == {"query.lon"}
