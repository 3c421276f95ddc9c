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
