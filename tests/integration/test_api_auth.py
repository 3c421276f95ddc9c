"""Auth: login, refresh rotation and reuse detection, logout, disabled users, register,
login rate limiting per account and per client address."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from infrastructure.settings import Settings
from tests.integration.api_support import PASSWORD, login, make_account, uniq

JANE = "a1b2c3d4-0002-4000-8000-000000000002"  # tenant-1
BOB = "a1b2c3d4-0003-4000-8000-000000000003"  # tenant-2


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/auth/refresh", json={"refreshToken": token})


async def test_login_answers_the_seed_shape_and_stores_only_a_digest(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    t = acct.tokens
    assert set(t) >= {"accessToken", "refreshToken", "expiresIn", "user"}
    assert t["expiresIn"] == 900
    assert t["user"]["role"] == "dispatcher" and t["user"]["tenantId"] == "tenant-1"
    stored = await pg.fetch(
        """SELECT token_sha256 FROM refresh_tokens rt JOIN users u ON u.id = rt.user_id
           WHERE u.email = $1""",
        acct.email,
    )
    assert [r["token_sha256"] for r in stored] == [
        hashlib.sha256(t["refreshToken"].encode()).hexdigest()
    ]
    prof = await client.get("/api/auth/profile", headers=acct.headers)
    assert prof.status_code == 200
    assert prof.json()["email"] == acct.email and prof.json()["name"] == acct.email


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    r1 = acct.tokens["refreshToken"]
    first = await refresh(client, r1)
    assert first.status_code == 200, first.text
    r2 = first.json()["refreshToken"]
    assert r2 != r1
    access2 = {"Authorization": f"Bearer {first.json()['accessToken']}"}
    assert (await client.get("/api/auth/profile", headers=access2)).status_code == 200
    r3 = (await refresh(client, r2)).json()["refreshToken"]

    # r1 is spent: presenting it again is theft; the whole family (r3 too) is revoked.
    reuse = await refresh(client, r1)
    assert reuse.status_code == 401
    assert reuse.json()["error"] == "unauthorized"
    assert (await refresh(client, r3)).status_code == 401

    # Another session of the same user (another family) is untouched.
    other = await login(client, acct.email, "tenant-1")
    assert (await refresh(client, other["refreshToken"])).status_code == 200


async def test_unknown_and_expired_refresh_tokens_are_refused(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    assert (await refresh(client, "not-a-token")).status_code == 401
    bad = await client.post("/api/auth/refresh", json={"refresh": "x"})
    assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    token = acct.tokens["refreshToken"]
    await pg.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' "
        "WHERE token_sha256 = $1",
        hashlib.sha256(token.encode()).hexdigest(),
    )
    assert (await refresh(client, token)).status_code == 401


async def test_logout_revokes_that_session_or_all(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str]
) -> None:
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    second = await login(client, acct.email, "tenant-1")
    resp = await client.post(
        "/api/auth/logout",
        json={"refreshToken": acct.tokens["refreshToken"]},
        headers=acct.headers,
    )
    assert resp.status_code == 204
    assert (await refresh(client, acct.tokens["refreshToken"])).status_code == 401
    rotated = await refresh(client, second["refreshToken"])
    assert rotated.status_code == 200  # the other session survives a targeted logout

    third = await login(client, acct.email, "tenant-1")
    assert (await client.post("/api/auth/logout", headers=acct.headers)).status_code == 204
    assert (await refresh(client, rotated.json()["refreshToken"])).status_code == 401
    assert (await refresh(client, third["refreshToken"])).status_code == 401
    # Logout needs a valid access token; someone else's refresh token is left alone.
    victim = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    assert (await client.post("/api/auth/logout")).status_code == 401
    resp = await client.post(
        "/api/auth/logout",
        json={"refreshToken": victim.tokens["refreshToken"]},
        headers=(await make_account(client, tenant1_headers, "tenant-1", "dispatcher")).headers,
    )
    assert resp.status_code == 204
    assert (await refresh(client, victim.tokens["refreshToken"])).status_code == 200


async def test_a_user_disabled_later_cannot_refresh_or_log_in(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], pg: asyncpg.Pool
) -> None:
    acct = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    await pg.execute("UPDATE users SET active = false WHERE email = $1", acct.email)
    resp = await refresh(client, acct.tokens["refreshToken"])
    assert resp.status_code == 401 and "disabled" in resp.json()["message"]
    await pg.execute("UPDATE users SET active = true WHERE email = $1", acct.email)
    # The family was revoked when the disabled user tried: re-enabling does not revive it.
    assert (await refresh(client, acct.tokens["refreshToken"])).status_code == 401
    assert (await login(client, acct.email, "tenant-1"))["accessToken"]


async def test_register_validates_and_is_tenant_scoped(
    client: httpx.AsyncClient,
    tenant1_headers: dict[str, str],
    tenant2_headers: dict[str, str],
    pg: asyncpg.Pool,
) -> None:
    email = f"{uniq('dup')}@example.com"
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "role": "dispatcher"}
    assert (
        await client.post("/api/auth/register", json=body, headers=tenant1_headers)
    ).status_code == 201
    dup = await client.post(
        "/api/auth/register", json=body | {"email": email.upper()}, headers=tenant1_headers
    )
    assert dup.status_code == 409 and dup.json()["error"] == "conflict"
    # The same email in another tenant is another user.
    assert (
        await client.post("/api/auth/register", json=body, headers=tenant2_headers)
    ).status_code == 201

    cases: list[tuple[dict[str, Any], int]] = [
        ({"role": "driver"}, 422),  # a driver user needs driverId
        ({"role": "dispatcher", "driverId": JANE}, 422),
        ({"role": "driver", "driverId": BOB}, 404),  # tenant-2's driver
        ({"role": "superuser"}, 422),
        ({"role": "dispatcher", "password": "short"}, 422),
        ({"role": "dispatcher", "email": "not-an-email"}, 422),
        ({"role": "dispatcher", "tenantId": "tenant-2"}, 422),  # tenant only from the token
    ]
    for extra, status in cases:
        fresh = f"{uniq('bad')}@example.com"
        resp = await client.post(
            "/api/auth/register",
            json={"email": fresh, "password": PASSWORD} | extra,
            headers=tenant1_headers,
        )
        assert resp.status_code == status, (extra, resp.text)
        assert set(resp.json()) >= {"error", "message"}
        assert await pg.fetchval("SELECT count(*) FROM users WHERE email = $1", fresh) == 0
    ok = await make_account(client, tenant1_headers, "tenant-1", "driver", driver_id=JANE)
    assert ok.tokens["user"]["driverId"] == JANE


def _limited_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "auth": settings.auth.model_copy(
                update={"login_max_failures_per_account": 3, "login_max_failures_per_address": 6}
            )
        }
    )


async def test_login_is_rate_limited_per_account_and_per_address(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], settings: Settings
) -> None:
    victim = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    bystander = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    from api.main import create_app

    app = create_app(_limited_settings(settings))
    async with LifespanManager(app) as manager:

        def from_address(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=manager.app, client=(ip, 40000))
            return httpx.AsyncClient(transport=transport, base_url="http://test")

        def attempt(email: str, password: str) -> dict[str, str]:
            return {"email": email, "password": password, "tenantId": "tenant-1"}

        async with from_address("198.51.100.10") as a:
            for _ in range(3):
                resp = await a.post("/api/auth/login", json=attempt(victim.email, "wrong"))
                assert resp.status_code == 401
            # The account is locked for the window, even with the right password...
            locked = await a.post("/api/auth/login", json=attempt(victim.email, PASSWORD))
            assert locked.status_code == 429, locked.text
            assert locked.json()["error"] == "too_many_requests"
            retry = int(locked.headers["Retry-After"])
            assert 0 < retry <= settings.auth.login_window_s
            # ...but the address is not: another account still logs in from it.
            ok = await a.post("/api/auth/login", json=attempt(bystander.email, PASSWORD))
            assert ok.status_code == 200

        async with from_address("203.0.113.77") as b, from_address("203.0.113.78") as c:
            for i in range(6):
                resp = await b.post(
                    "/api/auth/login", json=attempt(f"nobody{i}-{uniq()}@x.org", "wrong")
                )
                assert resp.status_code == 401
            blocked = await b.post("/api/auth/login", json=attempt(bystander.email, PASSWORD))
            assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
            # Another address is not affected.
            ok = await c.post("/api/auth/login", json=attempt(bystander.email, PASSWORD))
            assert ok.status_code == 200


async def test_spellings_of_one_account_share_its_login_counter(
    client: httpx.AsyncClient, tenant1_headers: dict[str, str], settings: Settings
) -> None:
    """PostgreSQL lowers 'İ' to 'i', Python to 'i̇': each dotted-İ spelling of an email finds
    the same user, so it must count on the same counter (it had one of its own)."""
    victim = await make_account(client, tenant1_headers, "tenant-1", "dispatcher")
    k = victim.email.index("i")
    dotted = victim.email[:k] + "İ" + victim.email[k + 1 :]
    spellings = [victim.email.upper(), dotted, dotted.upper()]
    from api.main import create_app

    app = create_app(_limited_settings(settings))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("198.51.100.31", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as a:
            for email in spellings:  # three failures, three spellings
                resp = await a.post(
                    "/api/auth/login",
                    json={"email": email, "password": "wrong", "tenantId": "tenant-1"},
                )
                assert resp.status_code == 401, resp.text
            locked = await a.post(
                "/api/auth/login",
                json={"email": victim.email, "password": PASSWORD, "tenantId": "tenant-1"},
            )
            assert locked.status_code == 429, locked.text
