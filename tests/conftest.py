"""Fixtures: the real local stack, isolated per test run.

Each run gets its own PostgreSQL database, Kafka topic prefix and Redis key prefix, so runs
never see each other's data and nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from infrastructure.settings import Settings

RUN_ID = uuid.uuid4().hex[:8]


def make_settings(suffix: str = "") -> Settings:
    """Settings for this test run (a suffix gives a second, separately prefixed pipeline)."""
    base = Settings()
    return base.model_copy(
        update={
            "environment": "test",
            "pg": base.pg.model_copy(update={"database": f"fp_test_{RUN_ID}"}),
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": f"test-{RUN_ID}{suffix}.", "produce_timeout_s": 3.0}
            ),
            "redis": base.redis.model_copy(update={"key_prefix": f"test:{RUN_ID}{suffix}:"}),
        }
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce these settings in a child process."""
    return {
        **os.environ,
        "FLEETPULSE_ENVIRONMENT": "test",
        "FLEETPULSE_PG__DATABASE": settings.pg.database,
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
async def database(settings: Settings, stack_running: None) -> AsyncIterator[str]:
    """A fresh database for this run, migrated and seeded; dropped at the end."""
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect
    from infrastructure.seed import seed

    admin = await connect(settings.pg, database="postgres")
    name = settings.pg.database
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await connect(settings.pg)
    try:
        await migrate(conn)
        await seed(conn)
    finally:
        await conn.close()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


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


async def login(client: httpx.AsyncClient, email: str, tenant: str) -> str:
    resp = await client.post(
        "/api/auth/login", json={"email": email, "password": "admin123", "tenantId": tenant}
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["accessToken"]
    return token


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
