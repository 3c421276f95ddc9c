"""The movement labels through the real enrichment worker, on both backends: fixes in order
across batches, a worker restarted mid-day, and late fixes; the stored labels equal one
pass of ``geo.movement.label_fixes`` over the stored day, and the daily aggregate equals
``summarize_day`` of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from analytics.generate import Drive, Stop, script_day
from analytics.refresh import ROLLUPS, refresh_range
from geo.movement import label_fixes, summarize_day
from infrastructure.kafka import GPS_POSITIONS, ensure_topics
from infrastructure.settings import Settings
from ingest.model import Position
from ingest.motion_labels import LABEL_COLUMNS
from ingest.worker import run_worker
from tests.conftest import RUN_ID, Backend
from tests.helpers import eventually

SCRIPT = [
    Stop(420),
    Drive(2_500, 30, pauses_s=(0, 40)),
    Stop(400),
    Drive(1_800, 36),
    Stop(300),
]


def worker_settings(backend: Backend) -> Settings:
    """The backend's settings with a topic prefix of this module's own."""
    s = backend.settings
    return s.model_copy(
        update={
            "kafka": s.kafka.model_copy(
                update={"topic_prefix": f"test-{RUN_ID}-motion-{backend.name}."}
            )
        }
    )


class Worker:
    """An in-process enrichment worker that can be stopped and started again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.task: asyncio.Task[object] | None = None

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_worker(self.settings, self.stop))

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


@pytest.fixture(scope="module")
async def worker(backend: Backend) -> AsyncIterator[Worker]:
    settings = worker_settings(backend)
    await ensure_topics(settings.kafka)
    w = Worker(settings)
    w.start()
    yield w
    await w.halt()


async def send(settings: Settings, positions: list[Position]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        topic = settings.kafka.topic(GPS_POSITIONS)
        for p in positions:
            await producer.send(topic, p.to_bytes(), key=p.device_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def test_worker_labels_equal_one_pass_over_the_stored_day(
    backend: Backend, worker: Worker
) -> None:
    pool = backend.pool
    device = f"MOTION-{backend.name}-{RUN_ID}"
    driver = await pool.fetchval(
        """INSERT INTO drivers (tenant_id, name, device_unique_id) VALUES ('tenant-1', $1, $1)
           RETURNING id::text""",
        device,
    )
    # one UTC day, early enough that the ~35 minutes of driving end before now: today, or
    # yesterday's last hour in today's first 45 minutes (a drive from 00:01 then ended in
    # the future, and a fix from the future moves no live state: the suite failed at 00:20)
    now = time.time()
    day0 = now - now % 86_400
    start = max(day0 + 60, now - 3 * 3600) if now - day0 >= 45 * 60 else day0 - 3600
    track = script_day(
        SCRIPT,
        start=datetime.fromtimestamp(start, UTC),
        lon0=24.93,
        lat0=60.17,
        interval_s=5,
        noise_m=8,
        seed=11,
    )
    received = int(now * 1000)
    positions = [
        Position(
            "tenant-1",
            device,
            int(track.t[i] * 1000),
            received,
            float(track.lat[i]),
            float(track.lon[i]),
            speed_kmh=float(track.speed_kmh[i]),
            accuracy=8.0,
            protocol="osmand",
        )
        for i in range(track.t.size)
    ]
    rng = np.random.default_rng(5)
    late = set(rng.choice(np.arange(10, len(positions) - 10), size=12, replace=False).tolist())
    first = [p for i, p in enumerate(positions[: len(positions) // 2]) if i not in late]
    rest = [p for i, p in enumerate(positions) if i >= len(positions) // 2 and i not in late]

    async def stored() -> int:
        n: int = await pool.fetchval(
            "SELECT count(*) FROM positions WHERE driver_id = $1", uuid.UUID(driver)
        )
        return n

    async def check_labels() -> tuple[np.ndarray, ...]:
        """The stored labels equal one pass over the stored fixes; return those fixes."""
        rows = await pool.fetch(
            """SELECT extract(epoch FROM fix_time)::double precision AS t, lon, lat,
                      speed_kmh, step_s, step_m, motion, trip_m, segment_start, stop_counted
               FROM positions WHERE driver_id = $1 ORDER BY fix_time""",
            uuid.UUID(driver),
        )
        t = np.array([r["t"] for r in rows])
        lon = np.array([r["lon"] for r in rows])
        lat = np.array([r["lat"] for r in rows])
        speed = np.array([r["speed_kmh"] for r in rows], float)
        want, _ = label_fixes(t, lon, lat, speed)
        for i, r in enumerate(rows):
            row = want.label(i).as_row()
            got = tuple(r[k] for k in LABEL_COLUMNS)
            for k, (g, w) in enumerate(zip(got, row, strict=True)):
                if isinstance(w, float) and g is not None:
                    assert np.float32(g) == np.float32(w), (i, k, got, row)
                else:
                    assert g == w or (k == 5 and not g and not w), (i, k, got, row)
        return t, lon, lat, speed

    await send(worker.settings, first)
    await eventually(stored, lambda n: n == len(first), within=60, what="first half stored")
    # a new worker takes over mid-day: it continues the stored day's trips and stops
    await worker.halt()
    worker.start()
    await send(worker.settings, rest)
    await eventually(
        stored, lambda n: n == len(first) + len(rest), within=60, what="second half stored"
    )
    # in order so far: relabels that reached back across batches and the restart
    await check_labels()
    await send(worker.settings, [positions[i] for i in sorted(late)])  # late: out of order
    await eventually(stored, lambda n: n == len(positions), within=60, what="late fixes stored")
    # the late fixes' day was labelled again in their batch's transaction
    t, lon, lat, speed = await check_labels()

    # the script: two trips, three stops of at least 180 s
    summary = summarize_day(t, lon, lat, speed)
    assert (summary.trips, summary.stops) == (2, 3)

    async with pool.acquire() as conn:
        lo = datetime.fromtimestamp(start - start % 86_400, UTC)  # the drive's day
        for name in ROLLUPS:
            await refresh_range(conn, name, lo, lo + timedelta(days=1))
        day = await conn.fetchrow(
            "SELECT * FROM driver_daily_stats WHERE driver_id = $1", uuid.UUID(driver)
        )
    assert day is not None
    assert day["positions"] == len(positions)
    assert (day["trips"], day["stops"]) == (summary.trips, summary.stops)
    assert day["distance_m"] == pytest.approx(summary.distance_m, rel=1e-4)
    assert day["moving_s"] == pytest.approx(summary.moving_s, rel=1e-4)
    assert day["idle_s"] == pytest.approx(summary.idle_s, rel=1e-4, abs=1e-3)
    assert day["stopped_s"] == pytest.approx(summary.stopped_s, rel=1e-4)
