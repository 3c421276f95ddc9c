"""Security: response headers, secrets never logged, and the JWT tampering cases the route
matrix (tests/integration/test_api_matrix.py: no token, expired, alg none, wrong key, role
edited, another tenant's objects) does not already cover.

Refresh-token rotation and reuse, and login brute-force limits, are proven in
tests/integration/test_api_auth.py; the socket.io handshake's bad tokens in
tests/integration/test_live.py.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings

import httpx
import jwt
import pytest
from pydantic import SecretStr

from api.security_headers import HSTS
from infrastructure.settings import Settings
from tests.helpers import traccar_forward

pytestmark = [pytest.mark.integration]

STRONG_SECRET = "s3cr3t-for-the-production-header-test-0123456789"
STRONG_KEY = "k3y-for-the-production-header-test-8c1d"


def b64(obj: dict[str, object]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_security_headers_on_api_and_errors(client: httpx.AsyncClient) -> None:
    for resp in (
        await client.get("/api/health"),
        await client.get("/api/no-such-route"),
        await client.post("/api/auth/login", content=b"not json"),
    ):
        h = resp.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "strict-origin-when-cross-origin"
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "worker-src 'self' blob:" in csp  # MapLibre's workers
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
        assert "unsafe-eval" not in csp
        assert "strict-transport-security" not in h  # not in development / test


async def test_docs_get_a_csp_that_lets_swagger_ui_load(client: httpx.AsyncClient) -> None:
    resp = await client.get("/docs")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in csp  # where FastAPI's Swagger UI comes from
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["x-frame-options"] == "DENY"


async def test_hsts_only_in_production(settings: Settings) -> None:
    from api.main import create_app

    for environment, hsts in (("production", True), ("development", False)):
        prod = settings.model_copy(
            update={
                "environment": environment,
                "auth": settings.auth.model_copy(
                    update={
                        "jwt_secret": SecretStr(STRONG_SECRET),
                        "traccar_api_key": SecretStr(STRONG_KEY),
                    }
                ),
            }
        )
        app = create_app(prod)  # no lifespan needed for a 404
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            resp = await c.get("/api/no-such-route")
        assert resp.status_code == 404
        assert resp.headers.get("strict-transport-security") == (HSTS if hsts else None)


async def test_outside_the_tests_no_key_from_the_repository_is_accepted(
    settings: Settings, database: str, topics: None
) -> None:
    """The seed's per-tenant keys and the example shared key are in the repository: a
    development or production instance refuses them, even from a database seeded with them."""
    from asgi_lifespan import LifespanManager

    from api.main import create_app

    dev = settings.model_copy(
        update={
            "environment": "development",
            "auth": settings.auth.model_copy(
                update={
                    "jwt_secret": SecretStr(STRONG_SECRET),
                    "traccar_api_key": SecretStr(STRONG_KEY),
                }
            ),
        }
    )
    app = create_app(dev)
    fix = int(time.time() * 1000) - 60_000
    body = traccar_forward("DEV001", fix, 40.7135, -74.0050)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for key, status in (
                ("traccar-key-tenant-1", 401),  # its digest is in this database's tenants
                ("traccar-shared-key", 401),
                (STRONG_KEY, 200),
            ):
                resp = await c.post("/api/traccar/positions", json=body, headers={"X-API-Key": key})
                assert resp.status_code == status, (key, resp.text)


async def test_secrets_never_reach_the_logs(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secrets: list[str] = ["admin123", "traccar-shared-key", "wrong-password-7f3a", "bad-key-9c1e"]
    caplog.set_level(logging.DEBUG)
    ok = await client.post(
        "/api/auth/login",
        json={"email": "admin@tenant1.com", "password": "admin123", "tenantId": "tenant-1"},
    )
    assert ok.status_code == 200
    secrets += [ok.json()["accessToken"], ok.json()["refreshToken"]]
    bad = await client.post(
        "/api/auth/login",
        json={"email": "admin@tenant1.com", "password": "wrong-password-7f3a", "tenantId": "x"},
    )
    assert bad.status_code == 401
    refreshed = await client.post(
        "/api/auth/refresh", json={"refreshToken": ok.json()["refreshToken"]}
    )
    assert refreshed.status_code == 200
    secrets += [refreshed.json()["accessToken"], refreshed.json()["refreshToken"]]
    fix = int(time.time() * 1000) - 90_000
    body = traccar_forward("DEV002", fix, 40.7135, -74.0050)
    for key, status in (("traccar-shared-key", 200), ("bad-key-9c1e", 401)):
        resp = await client.post("/api/traccar/positions", json=body, headers={"X-API-Key": key})
        assert resp.status_code == status, resp.text
    # OsmAnd has no key, but a phone may be configured with one in the URL: never logged.
    resp = await client.get(
        "/api/osmand",
        params={"id": "DEV002", "lat": 40.71, "lon": -74.0, "timestamp": fix // 1000 + 1},
        headers={"X-Forwarded-For": "10.0.0.1"},
    )
    assert resp.status_code == 200, resp.text
    resp = await client.get("/api/osmand", params={"id": "NOPE", "apiKey": "bad-key-9c1e"})
    assert resp.status_code == 400
    # What the server side logged (httpx's own request log is this test's client, not us).
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server, "nothing was logged: the capture is not working"
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in server)
    for secret in secrets:
        assert secret not in text, f"a secret reached the logs: {secret[:12]}..."


def hs512(claims: dict[str, object], secret: str) -> str:
    with warnings.catch_warnings():  # pyjwt finds the key short for SHA-512: beside the point
        warnings.simplefilter("ignore")
        return jwt.encode(claims, secret, "HS512")


async def test_tampered_tokens_the_matrix_does_not_cover(
    client: httpx.AsyncClient, settings: Settings, tenant1_headers: dict[str, str]
) -> None:
    good = tenant1_headers["Authorization"].removeprefix("Bearer ")
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = settings.auth.jwt_secret.get_secret_value()
    now = int(time.time())
    forged = {
        # the tenant claim edited, signature kept
        "tenant edited": f"{header}.{b64(claims | {'tenant': 'tenant-2'})}.{signature}",
        # a well-signed token that is not an access token
        "typ refresh": jwt.encode(claims | {"typ": "refresh"}, secret, "HS256"),
        # the right key but another algorithm (the verifier pins HS256)
        "HS512": hs512(claims, secret),
        # no expiry at all
        "no exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, "HS256"),
        # issued in the future (clock games)
        "not yet valid": jwt.encode(claims | {"nbf": now + 3600}, secret, "HS256"),
        # signature stripped
        "unsigned": f"{header}.{payload}.",
        # garbage
        "not a jwt": "abc.def",
    }
    assert (await client.get("/api/auth/profile", headers=tenant1_headers)).status_code == 200
    for name, token in forged.items():
        resp = await client.get("/api/auth/profile", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["error"] == "unauthorized", name


@pytest.mark.parametrize("field", ["name"])
async def test_text_with_a_nul_character_is_a_422_and_nothing_is_stored(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: object, field: str
) -> None:
    """Found by the schemathesis run: a NUL in register's text answered 500 (asyncpg)."""
    import asyncpg

    assert isinstance(pg, asyncpg.Pool)
    email = f"nul-{field}-{int(time.time() * 1000)}@tenant1.com"
    body = {"email": email, "password": "a-long-passphrase", "name": "Dana", "role": "dispatcher"}
    body[field] = f"bad\x00{body[field]}"
    resp = await client.post("/api/auth/register", json=body, headers=tenant1_headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] in ("invalid_input", "validation_error")
    assert await pg.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
