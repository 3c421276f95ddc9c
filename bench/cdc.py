"""End-to-end CDC latency: MariaDB commit -> Debezium -> Kafka -> `fleetpulse cdc` -> PostgreSQL.

    .venv/bin/python -m bench.cdc [--updates 200]

Runs against the local stack (``fleetpulse stack up``, Kafka Connect included) in a pipeline
of its own: MariaDB database core_business_bench<id>, PostgreSQL database fp_bench_<id>,
topic prefix bench-<id>., its own connector; all removed at the end. The consumer runs as a
subprocess (``fleetpulse cdc``). Each update is committed, then the cache is polled until it
holds it; latency = the cache row's ``synced_at`` (set by the consumer at apply time) minus
the moment the MariaDB commit returned (same machine clock). Updates are sequential, so this
is latency at a low rate, not throughput. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import orjson

from bench.stats import percentile
from infrastructure.kafka import delete_topics
from infrastructure.mariadb import connect_mariadb
from infrastructure.migrate import migrate
from infrastructure.postgres import connect
from infrastructure.seed import seed
from infrastructure.settings import Settings
from ingest.cdc.connector import connector_status, delete_connector, register


def _settings(run: str) -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "pg": base.pg.model_copy(update={"database": f"fp_bench_{run}"}),
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"bench-{run}."}),
            "redis": base.redis.model_copy(update={"key_prefix": f"bench:{run}:"}),
            "mariadb": base.mariadb.model_copy(update={"database": f"core_business_bench{run}"}),
        }
    )


async def main(updates: int) -> dict[str, object]:
    run = uuid.uuid4().hex[:6]
    settings = _settings(run)
    admin = await connect(settings.pg, database="postgres")
    await admin.execute(f'CREATE DATABASE "{settings.pg.database}"')
    pg = await connect(settings.pg)
    my_admin = await connect_mariadb(settings.mariadb, database="core_business")
    async with my_admin.cursor() as cur:
        await cur.execute(f"CREATE DATABASE `{settings.mariadb.database}`")
    my = await connect_mariadb(settings.mariadb)
    env = {
        **os.environ,
        "FLEETPULSE_PG__DATABASE": settings.pg.database,
        "FLEETPULSE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "FLEETPULSE_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "FLEETPULSE_MARIADB__DATABASE": settings.mariadb.database,
        "FLEETPULSE_LOG_LEVEL": "WARNING",
    }
    child: subprocess.Popen[bytes] | None = None
    try:
        await migrate(pg)
        await seed(pg)
        await register(settings)
        # A real, separate consumer process; starting it takes no time worth awaiting.
        child = subprocess.Popen([sys.executable, "-m", "api.cli", "cdc"], env=env)  # noqa: ASYNC220
        # The snapshot has arrived when the seed customers carry a source position.
        pending = "SELECT count(*) FROM customers WHERE source_position IS NULL"
        while await pg.fetchval(pending):  # noqa: ASYNC110 - polling another process's writes
            await asyncio.sleep(0.1)
        latencies: list[float] = []
        began = time.monotonic()
        for i in range(updates):
            customer = i % 5 + 1
            marker = f"bench {i}"
            async with my.cursor() as cur:
                await cur.execute(
                    "UPDATE customers SET address = %s WHERE id = %s", (marker, customer)
                )
            committed = datetime.now(UTC)
            while True:
                row = await pg.fetchrow(
                    "SELECT address, synced_at FROM customers WHERE id = $1", customer
                )
                if row is not None and row["address"] == marker:
                    break
                await asyncio.sleep(0.002)
            latencies.append((row["synced_at"] - committed).total_seconds() * 1000)
        elapsed = time.monotonic() - began
        status = await asyncio.to_thread(connector_status, settings)
        return {
            "benchmark": "cdc_end_to_end_latency",
            "updates": updates,
            "connector": (status or {}).get("connector", {}).get("state"),
            "p50_ms": round(statistics.median(latencies), 1),
            "p90_ms": round(percentile(latencies, 0.90), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "min_ms": round(min(latencies), 1),
            "wall_s": round(elapsed, 2),
            "note": "commit returned -> row applied in PostgreSQL (synced_at), sequential updates",
        }
    finally:
        if child is not None:
            child.terminate()
            child.wait(20)
        await asyncio.to_thread(delete_connector, settings)
        my.close()
        async with my_admin.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{settings.mariadb.database}`")
        my_admin.close()
        await pg.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{settings.pg.database}" WITH (FORCE)')
        await admin.close()
        await delete_topics(settings.kafka, settings.kafka.topic_prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(main(args.updates))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
