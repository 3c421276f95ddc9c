"""Read-path benchmark: a month of generated history, then p50/p99 of the analytics queries.

Generates (once; ``--reuse`` keeps it) ``--drivers`` drivers in ``--tenants`` tenants for
``--days`` days, ``--hours`` working hours a day, one fix every ``--interval`` seconds, with
COPY into a dedicated database (default ``fp_bench``: never the dev or test databases),
refreshes the rollups over the whole range, then times in-process calls of the same
functions the api routes run:

* playback of one driver-day (raw fixes, Douglas-Peucker to 2,000 points, events);
* heatmap of one tenant-day (res 8, positions) from ``cells_1h``;
* daily statistics of one tenant-day from ``driver_daily_stats``;
* drivers near a point: Redis GEOSEARCH over the drivers' latest positions (bench key prefix).

Prints one JSON document. Example::

    .venv/bin/python -m bench.queries --drivers 1000 --days 30 --interval 30 --hours 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from analytics import queries
from analytics.generate import (
    DriverSpec,
    day_start,
    random_legs,
    script_day,
    track_records,
    write_tracks,
)
from analytics.refresh import ROLLUPS, refresh_range
from infrastructure.migrate import migrate
from infrastructure.postgres import connect
from infrastructure.redis import create_redis
from infrastructure.seed import seed
from infrastructure.settings import Settings

CITY = (-73.98, 40.75)


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


async def timed(
    fn: Callable[[], Awaitable[Any]], samples: int, warmup: int = 3
) -> dict[str, float]:
    for _ in range(warmup):
        await fn()
    ms = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await fn()
        ms.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "samples": samples,
    }


def specs_for(drivers: int, tenants: int) -> list[DriverSpec]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(drivers):
        out.append(
            DriverSpec(
                f"bench-{i % tenants}",
                str(uuid.UUID(int=(0xBE0C << 112) + i)),
                f"BENCH{i:05d}",
                CITY[0] + float(rng.uniform(-0.08, 0.08)),
                CITY[1] + float(rng.uniform(-0.06, 0.06)),
            )
        )
    return out


async def generate(args: argparse.Namespace, settings: Settings, first: date) -> dict[str, Any]:
    conn = await connect(settings.pg)
    try:
        await migrate(conn)
        await seed(conn)
        specs = specs_for(args.drivers, args.tenants)
        await conn.executemany(
            "INSERT INTO tenants (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING",
            [(f"bench-{t}",) for t in range(args.tenants)],
        )
        await conn.executemany(
            """INSERT INTO drivers (id, tenant_id, name, device_unique_id)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
            [
                (uuid.UUID(s.driver_id), s.tenant_id, s.device_unique_id, s.device_unique_id)
                for s in specs
            ],
        )
        last = first + timedelta(days=args.days - 1)
        await conn.execute("SELECT fleetpulse_ensure_position_partitions($1, $2)", first, last)
        rows = 0
        t0 = time.perf_counter()
        rng = np.random.default_rng(7)
        for d in range(args.days):
            day = first + timedelta(days=d)
            batch: list[tuple[object, ...]] = []
            for n, s in enumerate(specs):
                track = script_day(
                    random_legs(rng, args.hours),
                    start=day_start(day, 8) + timedelta(seconds=float(rng.integers(0, 1800))),
                    lon0=s.lon0,
                    lat0=s.lat0,
                    interval_s=args.interval,
                    seed=int(rng.integers(1 << 30)),
                )
                end = track.t[0] + args.hours * 3600
                keep = track.t < end
                track.t, track.lon, track.lat = track.t[keep], track.lon[keep], track.lat[keep]
                track.speed_kmh, track.course = track.speed_kmh[keep], track.course[keep]
                track.eta_s = None
                batch.extend(track_records(s, track))
                if len(batch) >= 200_000 or n == len(specs) - 1:
                    rows += await write_tracks(conn, batch)
                    batch = []
            log(f"day {day}: {rows:,} rows so far, {rows / (time.perf_counter() - t0):,.0f} rows/s")
        gen_s = time.perf_counter() - t0
        await conn.execute("VACUUM (ANALYZE) positions")
        t1 = time.perf_counter()
        d0 = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        d1 = d0 + timedelta(days=args.days)
        refresh_s = {}
        for name in ROLLUPS:
            t = time.perf_counter()
            await refresh_range(conn, name, d0, d1)
            refresh_s[name] = round(time.perf_counter() - t, 1)
            log(f"refreshed {name} in {refresh_s[name]} s")
        for name in ROLLUPS:
            await conn.execute(f"VACUUM (ANALYZE) {name}")
        return {
            "rows": rows,
            "generate_and_copy_s": round(gen_s, 1),
            "rows_per_s": round(rows / gen_s),
            "refresh_s": refresh_s,
            "refresh_total_s": round(time.perf_counter() - t1, 1),
        }
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    settings = base.model_copy(
        update={
            "pg": base.pg.model_copy(update={"database": args.database}),
            "redis": base.redis.model_copy(update={"key_prefix": "bench:"}),
        }
    )
    first = date.fromisoformat(args.first_day)
    admin = await connect(base.pg, database="postgres")
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database)
    if exists and not args.reuse:
        await admin.execute(f'DROP DATABASE "{args.database}" WITH (FORCE)')
        exists = False
    if not exists:
        await admin.execute(f'CREATE DATABASE "{args.database}"')
    await admin.close()

    result: dict[str, Any] = {
        "dataset": {
            "database": args.database,
            "drivers": args.drivers,
            "tenants": args.tenants,
            "days": args.days,
            "hours_per_day": args.hours,
            "fix_interval_s": args.interval,
            "first_day": str(first),
        }
    }
    conn = await connect(settings.pg)
    have = (
        await conn.fetchval("SELECT to_regclass('positions') IS NOT NULL")
        and await conn.fetchval("SELECT count(*) FROM driver_daily_stats") > 0
    )
    await conn.close()
    if not have:
        result["load"] = await generate(args, settings, first)
    conn = await connect(settings.pg)
    result["dataset"]["positions"] = await conn.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'positions'"
    ) or await conn.fetchval(
        "SELECT sum(reltuples)::bigint FROM pg_class WHERE relname LIKE 'positions_p%'"
    )
    specs = specs_for(args.drivers, args.tenants)
    rnd = random.Random(3)

    def pick_day() -> date:
        return first + timedelta(days=rnd.randrange(args.days))

    async def playback() -> None:
        s = rnd.choice(specs)
        d0, d1 = queries.day_bounds(pick_day())
        await queries.playback(
            conn, driver_id=uuid.UUID(s.driver_id), start=d0, end=d1, max_points=2000
        )

    async def heatmap() -> None:
        d0, d1 = queries.day_bounds(pick_day())
        await queries.heatmap(
            conn,
            tenant=f"bench-{rnd.randrange(args.tenants)}",
            start=d0,
            end=d1,
            resolution=8,
            metric="positions",
        )

    async def daily() -> None:
        await queries.daily_stats(
            conn, tenant=f"bench-{rnd.randrange(args.tenants)}", day=pick_day()
        )

    redis = create_redis(settings.redis)
    geo_key = f"{settings.redis.key_prefix}geo:all"
    await redis.delete(geo_key)
    for s in specs:
        await redis.geoadd(
            geo_key,
            (s.lon0 + rnd.uniform(-0.02, 0.02), s.lat0 + rnd.uniform(-0.02, 0.02), s.driver_id),
        )

    async def near() -> None:
        await redis.geosearch(
            geo_key,
            longitude=CITY[0] + rnd.uniform(-0.05, 0.05),
            latitude=CITY[1] + rnd.uniform(-0.05, 0.05),
            radius=2_000,
            unit="m",
            sort="ASC",
            count=50,
            withdist=True,
        )

    try:
        result["queries"] = {
            "playback_driver_day": await timed(playback, args.samples),
            "heatmap_tenant_day": await timed(heatmap, args.samples),
            "daily_stats_tenant_day": await timed(daily, args.samples),
            "drivers_near_point_redis": await timed(near, args.samples * 5),
        }
        if args.explain:
            s = specs[0]
            d0, d1 = queries.day_bounds(first + timedelta(days=args.days // 2))
            plans = {}
            for name, sql, params in [
                (
                    "playback_raw",
                    "playback_raw",
                    (uuid.UUID(s.driver_id), d0, d1),
                ),
                ("heatmap", "heatmap", ("bench-0", d0, d1, 8)),
                ("daily_stats", "daily_stats", ("bench-0", d0.date())),
            ]:
                from analytics.refresh import sql as load_sql

                rows = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + load_sql(sql), *params
                )
                plans[name] = [r[0] for r in rows]
            result["plans"] = plans
    finally:
        await redis.delete(geo_key)
        await redis.aclose()
        await conn.close()
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--drivers", type=int, default=1000)
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--hours", type=float, default=8)
    p.add_argument("--interval", type=float, default=30)
    p.add_argument("--first-day", default="2026-01-05")
    p.add_argument("--database", default="fp_bench")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--reuse", action="store_true", help="keep an existing bench database")
    p.add_argument("--explain", action="store_true", help="add EXPLAIN ANALYZE plans")
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=2))
