"""The local stack manager against the real services: up, probes, an outage and recovery."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from infrastructure import stack
from infrastructure.settings import Settings
from infrastructure.stack.kafka import kafka_broker_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack_settings() -> Settings:
    """Default settings (the shared local stack), started or reused once for this module."""
    settings = Settings()
    stack.up(settings)
    return settings


def _mariadb(settings: Settings, sql: str) -> str:
    """Run SQL as the app user over TCP with the mariadb client; return tab-separated rows."""
    client = shutil.which("mariadb")
    assert client is not None
    my = settings.mariadb
    done = subprocess.run(
        [client, "--no-defaults", "--protocol=TCP", "-h", my.host, "-P", str(my.port)]
        + ["-u", my.user, "-N", "-B", "-e", sql],
        env={**os.environ, "MYSQL_PWD": my.password.get_secret_value()},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_status_lists_every_service_up(stack_settings: Settings) -> None:
    rows = stack.status(stack_settings)
    assert [r.name for r in rows] == list(stack.SERVICES)
    for row in rows:
        assert row.up, row
        assert isinstance(row.pid, int)
        assert row.log.is_file()
    ports = {r.name: r.port for r in rows}
    assert ports["postgres"] == stack_settings.pg.port
    assert ports["redis"] == stack_settings.redis.port
    assert ports["mariadb"] == stack_settings.mariadb.port


def test_up_again_reuses_running_services(stack_settings: Settings) -> None:
    before = {r.name: r.pid for r in stack.status(stack_settings)}
    stack.up(stack_settings)
    assert {r.name: r.pid for r in stack.status(stack_settings)} == before


async def test_postgres_app_role_creates_database_with_postgis(stack_settings: Settings) -> None:
    pg = stack_settings.pg
    name = f"stack_test_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(pg.dsn(name))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            version = await conn.fetchval("SELECT postgis_full_version()")
            assert str(version).startswith("POSTGIS=")
            available = await conn.fetchval(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgrouting'"
            )
            assert available == 1
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


async def test_redis_answers_ping(stack_settings: Settings) -> None:
    client = aioredis.from_url(stack_settings.redis.url())
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_mariadb_app_user_and_row_binlog(stack_settings: Settings) -> None:
    assert _mariadb(stack_settings, "SELECT 1") == "1"
    assert _mariadb(stack_settings, "SHOW VARIABLES LIKE 'binlog_format'") == "binlog_format\tROW"
    assert _mariadb(stack_settings, "SELECT @@log_bin, @@binlog_row_image") == "1\tFULL"
    databases = _mariadb(stack_settings, "SHOW DATABASES").split()
    assert stack_settings.mariadb.database in databases


async def test_kafka_serves_metadata(stack_settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack_settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
        cluster = await admin.describe_cluster()
        assert [b["node_id"] for b in cluster["brokers"]] == [1]
    finally:
        await admin.close()


def test_kafka_outage_and_recovery(stack_settings: Settings) -> None:
    host, port = stack_settings.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    try:
        stack.stop(stack_settings, "kafka")
        rows = {r.name: r for r in stack.status(stack_settings)}
        assert not rows["kafka"].up
        assert rows["kafka"].pid is None
        assert all(rows[n].up for n in ("postgres", "redis", "mariadb"))
    finally:
        stack.start(stack_settings, "kafka")
    rows = {r.name: r for r in stack.status(stack_settings)}
    assert rows["kafka"].up
    assert kafka_broker_ids(host, int(port)) == [1]


def test_failure_names_the_service_and_its_log(tmp_path: Path) -> None:
    base = Settings()
    # An invalid port: redis-server rejects its config at once, before daemonizing.
    broken = base.model_copy(
        update={
            "redis": base.redis.model_copy(update={"port": 70000}),
            "stack": base.stack.model_copy(update={"root": tmp_path}),
        }
    )
    with pytest.raises(stack.StackError) as caught:
        stack.start(broken, "redis")
    log = tmp_path / "redis" / "redis.log"
    message = str(caught.value)
    assert message.startswith("redis:")
    assert str(log) in message
    assert "port" in message.lower()  # the log's tail is quoted
    assert not stack.status(broken)[1].up
