"""Versioned SQL migrations with a small runner.

Why not Alembic: the schema's interesting parts are PostgreSQL-specific DDL that autogenerate
cannot see (declarative partitions, a TimescaleDB hypertable chosen at run time, plpgsql), so
plain, reviewable ``.sql`` files applied in order are simpler and honest. A file named
``NNNN_name.sql`` always applies; ``NNNN_name.timescale.sql`` / ``NNNN_name.plain.sql`` are
alternatives chosen by whether the ``timescaledb`` extension can be created in the database.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from infrastructure.postgres import Conn

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<variant>timescale|plain))?\.sql$"
)
_LOCK_KEY = 7_316_220_001  # pg_advisory_lock key: one migrator at a time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    variant: str | None
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Return the migration files in version order."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"badly named migration file: {path.name}")
        found.append(Migration(m["version"], m["name"], m["variant"], path))
    return found


async def timescale_available(conn: Conn) -> bool:
    """Return True when the timescaledb extension is (or can be) installed here.

    Installed but not preloaded, the server answers ``CREATE EXTENSION timescaledb`` with
    FATAL and closes the connection, so the preload is checked first and the attempt is
    made only where it can succeed.
    """
    if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        return True
    if not await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        return False
    preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries')")
    if "timescaledb" not in {lib.strip() for lib in str(preload).split(",")}:
        log.info("timescaledb is installed but not preloaded here: plain PostgreSQL backend")
        return False
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except asyncpg.PostgresError as exc:  # e.g. no privilege
        log.warning("timescaledb is preloaded but cannot be created: %s", exc)
        return False
    return True


async def migrate(conn: Conn) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the versions applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   variant text,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        variant = "timescale" if await timescale_available(conn) else "plain"
        applied = []
        for mig in discover():
            if mig.version in done or mig.variant not in (None, variant):
                continue
            log.info("applying migration %s_%s (%s)", mig.version, mig.name, mig.variant or "all")
            async with conn.transaction():
                await conn.execute(mig.path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.variant,
                )
            applied.append(mig.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def history_backend(conn: Conn) -> str:
    """Return 'timescale' or 'plain': which variant built the positions table."""
    variant = await conn.fetchval("SELECT variant FROM schema_migrations WHERE version = '0002'")
    return str(variant or "plain")
