"""A whole CDC pipeline for a test run: MariaDB database, Debezium connector, PostgreSQL db.

Everything is isolated by the run's names: MariaDB ``core_business_<run><suffix>`` (the app
user has ALL on core_business_*), the Kafka topic prefix (connector name, Debezium topic
prefix, schema-history topic, ``<prefix>cdc.<table>``), and the PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

from infrastructure.mariadb import connect_mariadb
from infrastructure.settings import Settings
from ingest.cdc.connector import connector_status, delete_connector, register


def with_source_db(settings: Settings, database: str) -> Settings:
    """Return settings whose MariaDB database is ``database``."""
    return settings.model_copy(
        update={"mariadb": settings.mariadb.model_copy(update={"database": database})}
    )


async def mysql_exec(settings: Settings, sql: str, *args: Any) -> int:
    """Run one statement in the settings' MariaDB database; return lastrowid (autocommit)."""
    conn = await connect_mariadb(settings.mariadb)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, args or None)
            return int(cur.lastrowid or 0)
    finally:
        conn.close()


async def mysql_rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    conn = await connect_mariadb(settings.mariadb)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def source_database(settings: Settings) -> AsyncIterator[None]:
    """Create the settings' MariaDB database for the test, drop it afterwards."""
    name = settings.mariadb.database
    admin = await connect_mariadb(settings.mariadb, database="core_business")
    try:
        async with admin.cursor() as cur:
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
        yield
    finally:
        with contextlib.suppress(Exception):
            async with admin.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@contextlib.asynccontextmanager
async def connector(settings: Settings) -> AsyncIterator[None]:
    """Load core_business, register the connector, wait until it runs; delete it at the end."""
    await register(settings)
    try:
        for _ in range(240):
            status = await asyncio.to_thread(connector_status, settings)
            tasks = (status or {}).get("tasks") or []
            if tasks and all(t.get("state") == "RUNNING" for t in tasks):
                break
            if any(t.get("state") == "FAILED" for t in tasks):
                raise AssertionError(f"connector failed: {status}")
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("connector not running after 60 s")
        yield
    finally:
        await asyncio.to_thread(delete_connector, settings)


def normalise(value: Any) -> Any:
    """Make MariaDB and PostgreSQL values comparable (decimals, floats, booleans)."""
    if isinstance(value, Decimal):
        return round(float(value), 7)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return round(value, 7)
    return value


def rows(data: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(normalise(v) for v in r) for r in data]
