"""PostgreSQL connection pools (asyncpg) with orjson codecs for json/jsonb."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from infrastructure.settings import PostgresSettings

# A connection as callers hold it: a plain one, or one borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)  # binary jsonb: a version byte, then the text


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def init_connection(conn: Conn) -> None:
    """Register orjson codecs once per connection so json/jsonb arrive as Python objects.

    Binary format, so that COPY (always binary in asyncpg) can write jsonb columns too.
    """
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        format="binary",
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=orjson.dumps, decoder=orjson.loads, format="binary"
    )


async def create_pool(settings: PostgresSettings, **overrides: Any) -> asyncpg.Pool:
    """Create the application pool; the caller closes it."""
    kwargs: dict[str, Any] = {
        "dsn": settings.dsn(),
        "min_size": settings.pool_min,
        "max_size": settings.pool_max,
        "init": init_connection,
        "command_timeout": 30,
    }
    kwargs.update(overrides)
    pool = await asyncpg.create_pool(**kwargs)
    assert pool is not None
    return pool


async def connect(settings: PostgresSettings, database: str | None = None) -> asyncpg.Connection:
    """Open a single connection (migrations, admin tasks)."""
    conn: asyncpg.Connection = await asyncpg.connect(settings.dsn(database), timeout=10)
    await init_connection(conn)
    return conn


async def server_versions(conn: Conn) -> tuple[str, str | None, str | None]:
    """PostgreSQL's, PostGIS's and TimescaleDB's versions (None: not installed)."""
    version: str = await conn.fetchval("SHOW server_version")
    postgis: str | None = await conn.fetchval("SELECT postgis_lib_version()")
    return version, postgis, await timescale_version(conn)


async def timescale_version(conn: Conn) -> str | None:
    """The TimescaleDB extension's version in this database, None without it."""
    version: str | None = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    return version


async def road_edges_signature(conn: Conn) -> tuple[int, str]:
    """``road_edges``' row count and last load: what says that a graph or an index built from
    it is still current (a network is loaded whole, so either changes when one is)."""
    row = await conn.fetchrow("SELECT count(*) AS n, max(loaded_at)::text AS at FROM road_edges")
    return (0, "") if row is None else (int(row["n"]), str(row["at"]))


async def timescale_jobs(conn: Conn) -> list[asyncpg.Record]:
    """TimescaleDB's background jobs of ours (policies, not its own) with their last run."""
    return list(
        await conn.fetch(
            """SELECT j.job_id, j.proc_name, j.hypertable_name AS relation,
                      s.last_run_started_at, s.last_run_status, s.last_successful_finish,
                      s.total_failures, s.next_start
               FROM timescaledb_information.jobs j
               LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
               WHERE j.job_id >= 1000
               ORDER BY j.job_id"""
        )
    )
