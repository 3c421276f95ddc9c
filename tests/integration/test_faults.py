"""Outages: Kafka away -> 503 (never 2xx) and nothing lost; a worker killed mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from infrastructure.kafka import ensure_topics
from infrastructure.settings import Settings
from tests.conftest import make_settings, settings_env
from tests.helpers import eventually, seed_array_item, traccar_forward

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]

JOHN = "a1b2c3d4-0001-4000-8000-000000000001"


async def count_history(pg: asyncpg.Pool, device: str, start_ms: int, end_ms: int) -> int:
    n: int = await pg.fetchval(
        """SELECT count(*) FROM positions WHERE device_unique_id = $1
           AND fix_time >= to_timestamp($2 / 1000.0) AND fix_time <= to_timestamp($3 / 1000.0)""",
        device,
        start_ms,
        end_ms,
    )
    return n


async def test_kafka_down_means_503_then_the_same_post_succeeds_and_is_stored_once(
    client: httpx.AsyncClient,
    traccar_headers: dict[str, str],
    settings: Settings,
    pg: asyncpg.Pool,
) -> None:
    from infrastructure import stack

    fix = int(time.time() * 1000) - 120_000
    body = traccar_forward("DEV001", fix, 40.7135, -74.0050)
    await asyncio.to_thread(stack.stop, settings, "kafka")
    try:
        resp = await client.post("/api/traccar/positions", json=body, headers=traccar_headers)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "broker_unavailable"
        assert resp.headers["Retry-After"]
        health = (await client.get("/api/health")).json()
        assert health["status"] == "degraded" and health["services"]["kafka"] == "down"
        assert (await client.get("/api/health/ready")).status_code == 503
    finally:
        await asyncio.to_thread(stack.start, settings, "kafka")

    async def post() -> int:
        r = await client.post("/api/traccar/positions", json=body, headers=traccar_headers)
        assert r.status_code in (200, 503), r.text
        return r.status_code

    await eventually(post, lambda s: s == 200, within=90, interval=1.0, what="post accepted")
    await eventually(
        lambda: count_history(pg, "DEV001", fix, fix),
        lambda n: n == 1,
        within=60,
        what="the position stored",
    )
    await asyncio.sleep(2)  # a late duplicate delivery would land now; there must be none
    assert await count_history(pg, "DEV001", fix, fix) == 1


@pytest.fixture
async def second_pipeline(database: str) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    """An api on its own topic prefix (same database) whose only worker is a child process."""
    from api.main import create_app

    settings = make_settings("-kill")
    await ensure_topics(settings.kafka)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield settings, c


def start_worker(settings: Settings, log_path: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_a_worker_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    second_pipeline: tuple[Settings, httpx.AsyncClient],
    traccar_headers: dict[str, str],
    pg: asyncpg.Pool,
    tmp_path: object,
) -> None:
    settings, client = second_pipeline
    log_path = os.path.join(str(tmp_path), "worker.log")
    base = int(time.time() * 1000) - 6 * 3600_000  # a window no other test writes to
    devices = ("DEV001", "DEV002", "DEV003")
    batches, per_batch = 60, 50
    accepted = 0

    async def send(batch: int) -> None:
        nonlocal accepted
        items = [
            seed_array_item(
                devices[i % 3], base + (batch * per_batch + i) * 1000, 60.17 + i * 1e-4, 24.94
            )
            for i in range(per_batch)
        ]
        resp = await client.post("/api/traccar/positions", json=items, headers=traccar_headers)
        assert resp.status_code == 200, resp.text
        accepted += resp.json()["count"]

    async def stored() -> int:
        total = 0
        for dev in devices:
            total += await count_history(pg, dev, base, base + batches * per_batch * 1000)
        return total

    async def send_all() -> None:
        for b in range(batches):
            await send(b)
            await asyncio.sleep(0.1)  # a steady stream, so the kill lands in its middle

    worker = start_worker(settings, log_path)
    try:
        sender = asyncio.create_task(send_all())
        # Kill -9 as soon as the worker is demonstrably in the middle of the stream.
        await eventually(stored, lambda n: n > 0, within=60, what="worker started storing")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        in_flight = await stored()
        await sender
        assert in_flight < accepted, "the kill came too late to prove anything"
        worker = start_worker(settings, log_path)
        final = await eventually(
            stored, lambda n: n >= accepted, within=90, interval=0.5, what="all stored"
        )
        assert final == accepted == batches * per_batch
        await asyncio.sleep(2)
        assert await stored() == accepted
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(20)
