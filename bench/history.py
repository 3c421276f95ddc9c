"""History generator benchmark: weeks of simulated past driving written through the storage path.

A dedicated database (``--database``, default ``fp_bench_history``: never the dev or test
databases; dropped and recreated) on the main cluster (TimescaleDB when preloaded), migrated
and seeded, with the fleet's drivers inserted directly (the real command creates them through
the API). Then ``api.cli_history.write_history`` — the code ``fleetpulse simulate
--history-weeks`` runs — generates ``--weeks`` weeks of ``--drivers`` drivers on
``--network`` and COPies them into ``positions`` with the movement labels, and refreshes the
positions rollups over the range. Prints one JSON document (progress on stderr)::

    .venv/bin/python -m bench.history --weeks 4 --drivers 20 --network liechtenstein
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from api.cli_history import write_history
from infrastructure.migrate import history_backend, migrate
from infrastructure.postgres import connect
from infrastructure.progress import Progress
from infrastructure.seed import seed
from infrastructure.settings import Settings
from simulator.fleet import FleetConfig
from simulator.history import HistoryConfig
from simulator.network import load_network

TENANT = "tenant-1"


async def main(args: argparse.Namespace) -> dict[str, Any]:
    pg = Settings().pg.model_copy(update={"database": args.database})
    admin = await connect(pg, database="postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    conn = await connect(pg)
    try:
        await migrate(conn)
        await seed(conn)
        fleet = FleetConfig(
            drivers=args.drivers,
            seed=args.seed,
            network=args.network,
            interval_s=args.interval,
            device_prefix="HISTB",
        )
        cfg = HistoryConfig(fleet=fleet, weeks=args.weeks)
        ids = {fleet.device_id(i): str(uuid.uuid4()) for i in range(args.drivers)}
        await conn.executemany(
            """INSERT INTO drivers (id, tenant_id, name, device_unique_id)
               VALUES ($1, $2, $3, $3)""",
            [(uuid.UUID(d), TENANT, device) for device, d in ids.items()],
        )
        t0 = time.perf_counter()
        net = await asyncio.to_thread(load_network, args.network)
        load_s = time.perf_counter() - t0
        result = await write_history(conn, cfg, ids, tenant=TENANT, net=net, progress=Progress)
        return {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "backend": await history_backend(conn),
            "network": args.network,
            "network_load_s": round(load_s, 2),
            "weeks": args.weeks,
            "drivers": args.drivers,
            "interval_s": args.interval,
            "history": result.summary(),
            "bytes_positions": await conn.fetchval(
                "SELECT pg_size_pretty(hypertable_size('positions'))"
                if await history_backend(conn) == "timescale"
                else "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c "
                "JOIN pg_inherits i ON i.inhrelid = c.oid "
                "WHERE i.inhparent = 'positions'::regclass"
            ),
        }
    finally:
        await conn.close()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weeks", type=float, default=4.0)
    p.add_argument("--drivers", type=int, default=20)
    p.add_argument("--network", default="liechtenstein")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database", default="fp_bench_history")
    return p.parse_args(argv)


if __name__ == "__main__":
    out = asyncio.run(main(parse(sys.argv[1:])))
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
