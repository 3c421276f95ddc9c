"""The local stack manager against the real services: up, probes, an outage and recovery,
TimescaleDB built and preloaded on the main cluster, the plain cluster without it, and the
installation's passwords (applied in place to a stack that ran with others)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_exceptions
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from infrastructure import stack
from infrastructure.kafka import delete_topics
from infrastructure.mariadb import load_core_business
from infrastructure.secrets import public_passwords
from infrastructure.settings import REPOSITORY_DB_PASSWORD, PostgresSettings, Settings
from infrastructure.stack.connect import Connect
from infrastructure.stack.kafka import kafka_broker_ids
from infrastructure.stack.postgres import Postgres
from infrastructure.stack.timescaledb import PgConfig, Stamp, TimescaleDB, find_source, sha256_of
from ingest.cdc.connector import connector_name, connector_status, delete_connector, put_connector

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
    assert ports["postgres-plain"] == stack_settings.stack.plain_pg_port
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


def _timescaledb_build(settings: Settings) -> TimescaleDB:
    """The main cluster's TimescaleDB build; skips when this machine has no source for it."""
    if not settings.stack.timescaledb:
        pytest.skip("TimescaleDB switched off (FLEETPULSE_STACK__TIMESCALEDB=false)")
    if find_source(settings.stack.timescaledb_source) is None:
        pytest.skip(f"no TimescaleDB source at {settings.stack.timescaledb_source}")
    build = Postgres(settings).timescaledb()
    assert build is not None
    return build


def _plain(settings: Settings) -> PostgresSettings:
    return settings.pg.model_copy(update={"port": settings.stack.plain_pg_port})


async def test_main_cluster_preloads_timescaledb_and_creates_it(stack_settings: Settings) -> None:
    _timescaledb_build(stack_settings)
    pg = stack_settings.pg
    name = f"stack_tsdb_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn("postgres"))
    try:
        preload = await admin.fetchval("SHOW shared_preload_libraries")
        assert "timescaledb" in [lib.strip() for lib in preload.split(",")]
        assert await admin.fetchval("SHOW timescaledb.telemetry_level") == "off"
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(pg.dsn(name))
        try:
            await conn.execute("CREATE EXTENSION timescaledb")
            await conn.execute("CREATE EXTENSION postgis")
            await conn.execute("CREATE TABLE t (ts timestamptz NOT NULL, v int)")
            await conn.execute("SELECT create_hypertable('t', 'ts')")
            await conn.execute("INSERT INTO t VALUES (now(), 1)")
            assert await conn.fetchval("SELECT count(*) FROM timescaledb_information.chunks") == 1
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_plain_cluster_never_preloads_timescaledb(stack_settings: Settings) -> None:
    plain = _plain(stack_settings)
    name = f"stack_plain_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(plain.dsn("postgres"))
    try:
        preload = await admin.fetchval("SHOW shared_preload_libraries")
        assert "timescaledb" not in preload
        # The app role exists there, but no app database: tests create their own.
        assert not await admin.fetchval(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", plain.database
        )
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(plain.dsn(name))
        try:
            await conn.execute("CREATE EXTENSION postgis")
            installed = await conn.fetchval(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
            )
            if installed:
                # Installed for every cluster of this PostgreSQL, but not preloaded here: the
                # server answers with FATAL and closes the connection (the app checks first).
                with pytest.raises(asyncpg.PostgresError, match="must be preloaded"):
                    await conn.execute("CREATE EXTENSION timescaledb")
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_timescaledb_stamp_names_tarball_and_server(stack_settings: Settings) -> None:
    build = _timescaledb_build(stack_settings)
    source = build.source()
    assert source is not None
    text = build.stamp_path.read_text()
    pg_version = PgConfig.of(build.pg_config).version
    assert f"sha256 {sha256_of(source)}\n" in text
    assert f"postgresql {pg_version}\n" in text
    assert Stamp.parse(text) == Stamp(sha256_of(source), pg_version)


def test_second_up_does_not_rebuild_timescaledb(stack_settings: Settings) -> None:
    build = _timescaledb_build(stack_settings)

    def mtime(path: Path) -> int | None:
        # no build log in a stack root whose up found TimescaleDB already installed (the
        # stamp beside PostgreSQL's control file): nothing was built there, then or now
        return path.stat().st_mtime_ns if path.exists() else None

    stamp_before, log_before = mtime(build.stamp_path), mtime(build.log)
    assert not build.pending()
    stack.up(stack_settings, ["postgres"])
    assert mtime(build.stamp_path) == stamp_before
    assert mtime(build.log) == log_before
    assert not build.pending()


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A stack root the postgres account can traverse (pytest's tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="fp-stack-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_up_restarts_a_running_cluster_to_preload_timescaledb(
    stack_settings: Settings, scratch_root: Path
) -> None:
    _timescaledb_build(stack_settings)
    base = stack_settings.model_copy(
        update={
            "environment": "test",
            "pg": stack_settings.pg.model_copy(update={"port": _free_port()}),
        }
    )

    def with_timescaledb(on: bool) -> Settings:
        update = {"root": scratch_root, "timescaledb": on}
        return base.model_copy(update={"stack": base.stack.model_copy(update=update)})

    async def preload() -> str:
        conn = await asyncpg.connect(base.pg.dsn("postgres"))
        try:
            return str(await conn.fetchval("SHOW shared_preload_libraries"))
        finally:
            await conn.close()

    plain = with_timescaledb(False)
    try:
        stack.up(plain, ["postgres"])  # an existing cluster that runs without TimescaleDB
        assert "timescaledb" not in await preload()
        pid = Postgres(plain).pid()
        stack.up(with_timescaledb(True), ["postgres"])
        assert "timescaledb" in await preload()
        assert Postgres(plain).pid() != pid  # restarted, not reloaded
        again = Postgres(plain).pid()
        stack.up(with_timescaledb(True), ["postgres"])
        assert Postgres(plain).pid() == again  # nothing to apply: left running
    finally:
        stack.down(plain, ["postgres"])


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
        assert all(rows[n].up for n in ("postgres", "postgres-plain", "redis", "mariadb"))
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
    assert not {r.name: r for r in stack.status(broken)}["redis"].up


async def test_services_refuse_the_repository_password(stack_settings: Settings) -> None:
    """The stack runs with the installation's random passwords (.secrets.env): the
    repository's default opens neither PostgreSQL cluster, MariaDB nor Redis, and Redis
    answers nothing to a client without the password."""
    assert public_passwords(stack_settings) == []
    for pg in (stack_settings.pg, _plain(stack_settings)):
        public = pg.model_copy(update={"password": SecretStr(REPOSITORY_DB_PASSWORD)})
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(public.dsn("postgres"))
        conn = await asyncpg.connect(pg.dsn("postgres"))
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    public_my = stack_settings.mariadb.model_copy(
        update={"password": SecretStr(REPOSITORY_DB_PASSWORD)}
    )
    with pytest.raises(subprocess.CalledProcessError):
        _mariadb(stack_settings.model_copy(update={"mariadb": public_my}), "SELECT 1")
    assert _mariadb(stack_settings, "SELECT 1") == "1"
    redis = stack_settings.redis
    anonymous = aioredis.from_url(redis.model_copy(update={"password": SecretStr("")}).url())
    try:
        with pytest.raises(redis_exceptions.AuthenticationError):
            await anonymous.ping()
        with pytest.raises(redis_exceptions.AuthenticationError):
            await anonymous.get("fp:anything")
    finally:
        await anonymous.aclose()


@pytest.mark.slow
async def test_up_moves_running_services_to_new_passwords(
    stack_settings: Settings, scratch_root: Path
) -> None:
    """An existing stack whose services use other passwords (a dev stack from before
    .secrets.env had them: the repository default, Redis without one) is moved to the
    configured ones by `up`, in place: PostgreSQL's role on both clusters and MariaDB's
    account by ALTER, Redis by CONFIG SET without a restart (its connected clients go on),
    a Debezium connector reading that MariaDB gets the new password and keeps running.
    A Redis with yet another password is restarted with the configured one."""
    services = ["postgres", "postgres-plain", "redis", "mariadb"]
    ports = {name: _free_port() for name in services}
    prefix = f"test-pw-{uuid.uuid4().hex[:8]}."

    def installation(pg: str, my: str, redis: str) -> Settings:
        base = stack_settings
        return base.model_copy(
            update={
                "environment": "test",
                "pg": base.pg.model_copy(
                    update={"port": ports["postgres"], "password": SecretStr(pg)}
                ),
                "redis": base.redis.model_copy(
                    update={"port": ports["redis"], "password": SecretStr(redis)}
                ),
                "mariadb": base.mariadb.model_copy(
                    update={"port": ports["mariadb"], "password": SecretStr(my)}
                ),
                "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
                "stack": base.stack.model_copy(
                    update={
                        "root": scratch_root,
                        "timescaledb": False,
                        "plain_pg_port": ports["postgres-plain"],
                    }
                ),
            }
        )

    async def pg_login(settings: Settings) -> list[bool]:
        results = []
        for pg in (settings.pg, _plain(settings)):
            try:
                conn = await asyncpg.connect(pg.dsn("postgres"))
            except asyncpg.InvalidPasswordError:
                results.append(False)
            else:
                await conn.close()
                results.append(True)
        return results

    def my_login(settings: Settings) -> bool:
        try:
            return _mariadb(settings, "SELECT 1") == "1"
        except subprocess.CalledProcessError:
            return False

    # Not the repository's default itself: `up` never applies that one (it would take
    # .secrets.env's); any other old password takes the same ALTER path.
    old = installation("old-pg-password", "old-mariadb-password", "")
    new = installation(secrets.token_urlsafe(24), secrets.token_urlsafe(24), "new-redis-pw")
    connector = old.model_copy(
        update={"cdc": old.cdc.model_copy(update={"connector_name": "password-move"})}
    )
    try:
        stack.up(old, services)
        await load_core_business(old.mariadb)  # tables to capture (and a binlog GTID)
        await asyncio.to_thread(put_connector, connector)
        assert await _connector_running(connector)
        client = aioredis.from_url(old.redis.url(), single_connection_client=True)
        await client.set(f"{prefix}k", "v")
        pids = {r.name: r.pid for r in stack.status(old) if r.name in services}

        stack.up(new, services)
        assert {r.name: r.pid for r in stack.status(new) if r.name in services} == pids
        assert await pg_login(new) == [True, True]
        assert await pg_login(old) == [False, False]
        assert my_login(new) and not my_login(old)
        assert await client.get(f"{prefix}k") == b"v"  # connected before: goes on
        anonymous = aioredis.from_url(old.redis.url())
        with pytest.raises(redis_exceptions.AuthenticationError):
            await anonymous.ping()
        await anonymous.aclose()
        await client.aclose()
        # stack.up moves connectors when it manages `connect`; here the shared one is used
        moved = new.model_copy(update={"cdc": connector.cdc})
        assert Connect(moved).update_connector_passwords() == [connector_name(connector)]
        assert Connect(moved).update_connector_passwords() == []  # nothing left to move
        # The connector logs in with the new password: a change made now reaches Kafka.
        marker = f"moved-{uuid.uuid4().hex[:8]}"
        _mariadb(new, f"UPDATE core_business.customers SET name = '{marker}' LIMIT 1")
        assert await _topic_has(new, "cdc.customers", marker.encode())
        assert await _connector_running(moved)

        newer = new.model_copy(
            update={"redis": new.redis.model_copy(update={"password": SecretStr("newer-pw")})}
        )
        stack.up(newer, ["redis"])
        assert {r.name: r.pid for r in stack.status(newer)}["redis"] != pids["redis"]
        fresh = aioredis.from_url(newer.redis.url())
        assert await fresh.get(f"{prefix}k") == b"v"  # restarted from its AOF
        await fresh.aclose()
        stale = aioredis.from_url(new.redis.url())
        with pytest.raises(redis_exceptions.AuthenticationError):
            await stale.ping()
        await stale.aclose()
    finally:
        with contextlib.suppress(Exception):
            delete_connector(connector)
        with contextlib.suppress(Exception):
            await delete_topics(connector.kafka, prefix)
        stack.down(old, services)


async def _topic_has(settings: Settings, topic: str, needle: bytes, wait_s: float = 120.0) -> bool:
    """Whether a record of the (prefixed) topic holding ``needle`` arrives within wait_s."""
    consumer = AIOKafkaConsumer(
        settings.kafka.topic(topic),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            if any(needle in (r.value or b"") for rs in batches.values() for r in rs):
                return True
        return False
    finally:
        await consumer.stop()


async def _connector_running(settings: Settings, wait_s: float = 120.0) -> bool:
    """Wait until the connector and its task run; False when they did not within wait_s."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        status = await asyncio.to_thread(connector_status, settings)
        tasks = (status or {}).get("tasks") or []
        if (
            status is not None
            and status["connector"]["state"] == "RUNNING"
            and tasks
            and all(t["state"] == "RUNNING" for t in tasks)
        ):
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.5)
