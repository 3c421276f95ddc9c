"""MariaDB / MySQL (the business source of truth): async connections with aiomysql.

aiomysql (pure Python, on PyMySQL) rather than asyncmy (a Cython build): the traffic here is
a schema load, the customer cache's rare fallback reads and tests' writes, so a compiled
driver buys nothing and a pure-Python wheel installs everywhere.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiomysql
from pymysql.constants import CLIENT

from infrastructure.settings import MariaDBSettings

CORE_BUSINESS_SQL = Path(__file__).resolve().parent.parent / "deploy/mysql/01-core_business.sql"


def _kwargs(settings: MariaDBSettings, database: str | None) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": settings.password.get_secret_value(),
        "db": database or settings.database,
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": 5,
        # DATETIME columns hold UTC (the seed's convention): read them in a UTC session.
        "init_command": "SET time_zone = '+00:00'",
    }


async def create_mariadb_pool(
    settings: MariaDBSettings, *, database: str | None = None, maxsize: int = 4
) -> aiomysql.Pool:
    """Create a small autocommit pool; the caller closes it (``close()`` + ``wait_closed()``)."""
    return await aiomysql.create_pool(minsize=0, maxsize=maxsize, **_kwargs(settings, database))


async def connect_mariadb(
    settings: MariaDBSettings, *, database: str | None = None, multi_statements: bool = False
) -> aiomysql.Connection:
    """Open one autocommit connection (optionally allowing several statements per query)."""
    kwargs = _kwargs(settings, database)
    if multi_statements:
        kwargs["client_flag"] = CLIENT.MULTI_STATEMENTS
    return await aiomysql.connect(**kwargs)


async def load_core_business(
    settings: MariaDBSettings, *, database: str | None = None, path: Path = CORE_BUSINESS_SQL
) -> None:
    """Create the core_business tables and demo rows where missing (the file is idempotent)."""
    sql = await asyncio.to_thread(path.read_text, encoding="utf-8")
    conn = await connect_mariadb(settings, database=database, multi_statements=True)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            while await cur.nextset():
                pass
    finally:
        conn.close()
