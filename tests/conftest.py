"""Fixtures: the real local stack, isolated per test run.

Each run gets its own PostgreSQL database, Kafka topic prefix and Redis key prefix, so runs
never see each other's data and nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from infrastructure.secrets import ensure_local_secrets
from infrastructure.settings import AuthSettings, Settings

RUN_ID = uuid.uuid4().hex[:8]
# The suite's own secrets: public (they are here), so accepted in the test environment only,
# and pinned so that tests do not depend on whether the stack wrote .secrets.env yet.
TEST_JWT_SECRET = "test-suite-only-jwt-secret-3b1e0c9a7f52d846"
TEST_TRACCAR_KEY = "traccar-shared-key"


def pytest_configure(config: pytest.Config) -> None:
    """The installation's random database and Redis passwords exist before the run's first
    ``Settings()`` reads ``.secrets.env`` (the stack applies the same ones when it starts)."""
    ensure_local_secrets()


def pinned_auth(base: AuthSettings) -> AuthSettings:
    """``base`` with the suite's pinned secrets."""
    return base.model_copy(
        update={
            "jwt_secret": SecretStr(TEST_JWT_SECRET),
            "traccar_api_key": SecretStr(TEST_TRACCAR_KEY),
        }
    )


def make_settings(suffix: str = "", *, plain: bool = False) -> Settings:
    """Settings for this test run (a suffix gives a second, separately prefixed pipeline).

    ``plain``: the database is on the stack's second cluster, which does not preload
    TimescaleDB, so the plain-PostgreSQL backend is what the migrations choose there.
    """
    base = Settings()
    pg = {"database": f"fp_test_{RUN_ID}"}
    if plain:
        pg["port"] = base.stack.plain_pg_port
    return base.model_copy(
        update={
            "environment": "test",
            "pg": base.pg.model_copy(update=pg),
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"test-{RUN_ID}{suffix}.", "produce_timeout_s": 3.0}
            ),
            "redis": base.redis.model_copy(update={"key_prefix": f"test:{RUN_ID}{suffix}:"}),
            "auth": pinned_auth(base.auth),
            # the session's worker picks up what a test taught it within seconds
            "eta": base.eta.model_copy(update={"profile_reload_s": 5.0}),
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce these settings in a child process."""
    return {
        **os.environ,
        "FLEETPULSE_ENVIRONMENT": "test",
        "FLEETPULSE_AUTH__JWT_SECRET": TEST_JWT_SECRET,
        "FLEETPULSE_AUTH__TRACCAR_API_KEY": TEST_TRACCAR_KEY,
        "FLEETPULSE_PG__DATABASE": settings.pg.database,
        "FLEETPULSE_PG__PORT": str(settings.pg.port),
        "FLEETPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "FLEETPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
    }


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def stack_running() -> None:
    """Start (or reuse) the local services (with the default settings: the test database
    is created by the ``database`` fixture, not by the stack)."""
    from infrastructure import stack

    stack.up(Settings())


@pytest.fixture(scope="session")
def plain_settings() -> Settings:
    """This run's settings with the database on the plain-PostgreSQL cluster."""
    return make_settings("-plain", plain=True)


async def _fresh_database(settings: Settings, backend: str) -> AsyncIterator[str]:
    """Create, migrate and seed this run's database; check the backend; drop it at the end."""
    from infrastructure.migrate import history_backend, migrate
    from infrastructure.postgres import connect
    from infrastructure.seed import seed

    admin = await connect(settings.pg, database="postgres")
    name = settings.pg.database
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await connect(settings.pg)
    try:
        await migrate(conn)
        await seed(conn)
        # a test run on the wrong backend would pass for the wrong reason: refuse it
        assert await history_backend(conn) == backend, f"{name} is not on {backend}"
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def database(settings: Settings, stack_running: None) -> AsyncIterator[str]:
    """A fresh database for this run on TimescaleDB (the production backend)."""
    async for name in _fresh_database(settings, "timescale"):
        yield name


@pytest.fixture(scope="session")
async def plain_database(plain_settings: Settings, stack_running: None) -> AsyncIterator[str]:
    """The same on the plain-PostgreSQL cluster (TimescaleDB installed, not preloaded)."""
    async for name in _fresh_database(plain_settings, "plain"):
        yield name


@pytest.fixture(scope="session")
async def topics(settings: Settings, stack_running: None) -> AsyncIterator[None]:
    from infrastructure.kafka import delete_topics, ensure_topics

    await ensure_topics(settings.kafka)
    yield
    with contextlib.suppress(Exception):
        await delete_topics(settings.kafka, f"test-{RUN_ID}")


@pytest.fixture(scope="session")
async def redis_clean(settings: Settings, stack_running: None) -> AsyncIterator[None]:
    from infrastructure.redis import create_redis

    yield
    redis = create_redis(settings.redis)
    async for key in redis.scan_iter(match=f"test:{RUN_ID}*", count=1000):
        await redis.delete(key)
    await redis.aclose()


@pytest.fixture(scope="session")
async def pg(settings: Settings, database: str) -> AsyncIterator[object]:
    from infrastructure.postgres import create_pool

    pool = await create_pool(settings.pg, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def plain_pg(plain_settings: Settings, plain_database: str) -> AsyncIterator[object]:
    from infrastructure.postgres import create_pool

    pool = await create_pool(plain_settings.pg, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def worker(
    settings: Settings, database: str, topics: None, redis_clean: None
) -> AsyncIterator[None]:
    """One in-process enrichment worker for the whole run."""
    from ingest.worker import run_worker

    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture(scope="session")
async def app(
    settings: Settings, database: str, topics: None, redis_clean: None
) -> AsyncIterator[FastAPI]:
    """The app through its lifespan, talking to the real services."""
    from api.main import create_app

    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture(scope="session")
async def plain_client(
    plain_settings: Settings, plain_database: str, topics: None, redis_clean: None
) -> AsyncIterator[httpx.AsyncClient]:
    """A second app through its lifespan, on the plain-PostgreSQL database."""
    from api.main import create_app
    from infrastructure.kafka import ensure_topics

    await ensure_topics(plain_settings.kafka)
    app = create_app(plain_settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


SESSION_TOKEN_TTL_S = 4 * 3600


async def login(client: httpx.AsyncClient, email: str, tenant: str) -> str:
    """A real login's access token, made to last the whole run.

    The session's shared headers outlive a 15-minute access token once the suite runs longer
    than that (it does): the login's own claims are signed again with the suite's pinned
    secret and a later expiry, which the app accepts as it would any token it issued. Tests
    of expiry and refresh log in themselves.
    """
    resp = await client.post(
        "/api/auth/login", json={"email": email, "password": "admin123", "tenantId": tenant}
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["accessToken"]
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    claims["exp"] = int(time.time()) + SESSION_TOKEN_TTL_S
    lasting: str = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    return lasting


@pytest.fixture(scope="session")
async def tenant1_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {await login(client, 'admin@tenant1.com', 'tenant-1')}"}


@pytest.fixture(scope="session")
async def tenant2_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {await login(client, 'admin@tenant2.com', 'tenant-2')}"}


@pytest.fixture(scope="session")
def traccar_headers() -> dict[str, str]:
    return {"X-API-Key": "traccar-shared-key"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration and tests/e2e needs the stack: mark it so."""
    for item in items:
        if "/tests/integration/" in str(item.path) or "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.integration)


BACKENDS = ("timescale", "plain")


@dataclasses.dataclass(frozen=True)
class Backend:
    """One database backend of this run: its settings, pool, app client and tokens."""

    name: str
    settings: Settings
    pool: Any
    client: httpx.AsyncClient
    tenant1_headers: dict[str, str]
    tenant2_headers: dict[str, str]


@pytest.fixture(scope="session")
async def plain_headers(plain_client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    one = await login(plain_client, "admin@tenant1.com", "tenant-1")
    two = await login(plain_client, "admin@tenant2.com", "tenant-2")
    return {"Authorization": f"Bearer {one}"}, {"Authorization": f"Bearer {two}"}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test that takes this runs on TimescaleDB and again on plain PostgreSQL."""
    if request.param == "timescale":
        return Backend(
            "timescale",
            request.getfixturevalue("settings"),
            request.getfixturevalue("pg"),
            request.getfixturevalue("client"),
            request.getfixturevalue("tenant1_headers"),
            request.getfixturevalue("tenant2_headers"),
        )
    one, two = request.getfixturevalue("plain_headers")
    return Backend(
        "plain",
        request.getfixturevalue("plain_settings"),
        request.getfixturevalue("plain_pg"),
        request.getfixturevalue("plain_client"),
        one,
        two,
    )
