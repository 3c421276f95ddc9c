"""Fixtures of the reliability tests: a private fault stack (started here, stopped at the end
of the session), a migrated and seeded database on it, and real api + worker processes.

The shared stack (ports 5433/6380/9092) is never touched: faults are injected into this
private instance only (root ``.stack-faults/``, ports 15433/16380/19092/19093).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from infrastructure.settings import PROJECT_ROOT, Settings
from tests.reliability.support import (
    FAULT_SERVICES,
    RUN_ID,
    Fleet,
    add_fleet_drivers,
    fault_settings,
)


@pytest.fixture(scope="session")
def faults_settings() -> Settings:
    return fault_settings()


@pytest.fixture(scope="session")
def fault_stack(faults_settings: Settings) -> Iterator[Settings]:
    """PostgreSQL, Redis and Kafka of the private fault stack; stopped when the session ends
    (data stays under .stack-faults/ so the next run starts in seconds)."""
    from infrastructure import stack

    stack.up(faults_settings, FAULT_SERVICES)
    try:
        yield faults_settings
    finally:
        # A test may have left a service stopped; down() stops whatever still runs.
        stack.down(faults_settings, FAULT_SERVICES)


@pytest.fixture(scope="session")
async def fault_db(fault_stack: Settings) -> AsyncIterator[asyncpg.Pool]:
    """This run's database on the fault stack: migrated, seeded, 48 extra tenant-1 devices,
    and this run's topics. Dropped (and the topics deleted) at the end."""
    from infrastructure.kafka import delete_topics, ensure_topics
    from infrastructure.migrate import migrate
    from infrastructure.postgres import connect, create_pool
    from infrastructure.seed import seed

    settings = fault_stack
    admin = await connect(settings.pg, database="postgres")
    await admin.execute(f'CREATE DATABASE "{settings.pg.database}"')
    conn = await connect(settings.pg)
    try:
        await migrate(conn)
        await seed(conn)
        await add_fleet_drivers(conn)
    finally:
        await conn.close()
    await ensure_topics(settings.kafka)
    pool = await create_pool(settings.pg, min_size=1, max_size=3)
    yield pool
    await pool.close()
    with contextlib.suppress(Exception):
        await delete_topics(settings.kafka, f"faults-{RUN_ID}")
    with contextlib.suppress(Exception):
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.pg.database}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
async def fleet(fault_stack: Settings, fault_db: asyncpg.Pool) -> AsyncIterator[Fleet]:
    """Two `fleetpulse api` processes and three `fleetpulse worker` processes; their logs
    (of the last run only) in test-artifacts/reliability-logs/."""
    log_dir = PROJECT_ROOT / "test-artifacts" / "reliability-logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    fleet = Fleet(fault_stack, log_dir)
    try:
        for _ in range(3):
            fleet.start_worker()
        await asyncio.gather(fleet.start_api(), fleet.start_api())
        yield fleet
    finally:
        await fleet.stop_all()
