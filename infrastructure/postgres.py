"""PostgreSQL connection pools (asyncpg) with orjson codecs for json/jsonb."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from infrastructure.settings import PostgresSettings

# A connection as callers hold it: a plain one, or one borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Register orjson codecs once per connection so jsonb arrives as Python objects."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads
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
