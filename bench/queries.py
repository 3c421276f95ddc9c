"""Read-path benchmark: generated history, then p50/p99 of the analytics queries, on the
TimescaleDB backend and on plain PostgreSQL side by side.

For each backend (``--backend timescale|plain|both``, default both) a dedicated database
(``--database``, default ``fp_bench``: never the dev or test databases) on its cluster: the
main one (``settings.pg``, TimescaleDB preloaded) or ``postgres-plain``
(``settings.stack.plain_pg_port``). Each is migrated (the run stops if a cluster does not get
the backend it should), TimescaleDB's background jobs are paused there (the compression
policy would otherwise compress the generated, months-old chunks behind the measurement's
back), and the same history is written to both: ``--drivers`` drivers in ``--tenants``
tenants for ``--days`` days, ``--hours`` working hours a day, one fix every ``--interval``
seconds, generated once per batch (same seed) and COPied into each database in turn.

Then, per backend: the aggregates refreshed over the whole range (timed per aggregate), the
size of ``positions`` (bytes per position), and in-process calls of the functions the api
routes run, with the same random choices on every backend, samples interleaved across the
backends (so that other load on the machine hits both alike):

* playback of one driver-day (raw fixes, Douglas-Peucker to 2,000 points, events);
* fleet playback of one tenant-hour (raw fixes inside a box around the city, 500 per driver);
* heatmap of one tenant-day (res 8, positions) from ``cells_1h``;
* daily statistics of one tenant-day from ``driver_daily_stats``;
* one driver's daily statistics over the whole range (at most 31 days);
* drivers near a point: Redis GEOSEARCH over the drivers' latest positions (bench key prefix;
  no database, so measured once).

Query days are drawn from all days but the newest. On TimescaleDB the chunks older than the
newest day are then compressed (``compress_chunk``) and the queries timed again
("compressed"): the days queried are all compressed ones, the newest stays as recent data
does under the compression policy. The other backend runs its queries a second time,
interleaved as before (``queries_second_pass``): how far its figures move between the passes
is the noise the machine's other load adds.

Prints one JSON document (progress on stderr). Example::

    .venv/bin/python -m bench.queries --drivers 1000 --tenants 10 --days 3 --interval 30 \\
        --hours 8 --samples 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
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
from analytics.refresh import ROLLUPS, refresh_range, sql
from bench.stats import summary
from infrastructure.migrate import history_backend, migrate
from infrastructure.postgres import connect
from infrastructure.progress import Progress
from infrastructure.redis import create_redis
from infrastructure.seed import seed
from infrastructure.settings import PostgresSettings, Settings

CITY = (-73.98, 40.75)
# Every bench driver's home lies within ±0.08° lon / ±0.06° lat of CITY and the generator keeps
# tracks within ~6 km of it: this box holds every fix (fleet playback filters nothing out).
CITY_BOX = (CITY[0] - 0.2, CITY[1] - 0.15, CITY[0] + 0.2, CITY[1] + 0.15)
BACKENDS = ("plain", "timescale")
SERVER_SETTINGS = (
    "server_version",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "max_parallel_workers_per_gather",
    "jit",
)

Query = Callable[[], Awaitable[Any]]


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


async def timed(fns: dict[str, Query], samples: int, warmup: int = 3) -> dict[str, Any]:
    """Time each function ``samples`` times, interleaved: sample i of every one, then i + 1."""
    for _ in range(warmup):
        for fn in fns.values():
            await fn()
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(samples):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            await fn()
            ms[k].append((time.perf_counter() - t0) * 1000)
    return {k: summary(v) for k, v in ms.items()}


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


@dataclass
class Backend:
    name: str  # 'timescale' or 'plain'
    pg: PostgresSettings
    conn: asyncpg.Connection | None = None
    needs_load: bool = True
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def c(self) -> asyncpg.Connection:
        assert self.conn is not None
        return self.conn


async def prepare(b: Backend, args: argparse.Namespace, first: date) -> None:
    """(Re)create the bench database, migrate it, pause TimescaleDB's jobs, add the fleet."""
    admin = await connect(b.pg, database="postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", args.database)
        if exists and not args.reuse:
            await admin.execute(f'DROP DATABASE "{args.database}" WITH (FORCE)')
            exists = False
        if not exists:
            await admin.execute(f'CREATE DATABASE "{args.database}"')
    finally:
        await admin.close()
    b.conn = conn = await connect(b.pg)
    await migrate(conn)
    got = await history_backend(conn)
    if got != b.name:
        raise SystemExit(
            f"{b.name}: the database on port {b.pg.port} got the {got} backend "
            "(is TimescaleDB preloaded on the main cluster, and not on postgres-plain?)"
        )
    b.result["database"] = args.database
    b.result["port"] = b.pg.port
    b.result["server"] = {
        r["name"]: r["value"]
        for r in await conn.fetch(
            "SELECT name, current_setting(name) AS value FROM pg_settings "
            "WHERE name = any($1::text[]) ORDER BY name",
            list(SERVER_SETTINGS),
        )
    }
    if b.name == "timescale":
        b.result["server"]["timescaledb"] = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
        paused = await conn.fetch(
            """SELECT j.proc_name, alter_job(j.job_id, scheduled => false) IS NOT NULL
               FROM timescaledb_information.jobs j WHERE j.job_id >= 1000 AND j.scheduled"""
        )
        b.result["jobs_paused"] = sorted(r["proc_name"] for r in paused)
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
    b.needs_load = not (
        await conn.fetchval("SELECT EXISTS (SELECT FROM positions)")
        and await conn.fetchval("SELECT EXISTS (SELECT FROM driver_daily_motion)")
    )
    if b.needs_load:
        await conn.execute("TRUNCATE positions")
    elif b.name == "timescale":  # reused: start uncompressed again
        await conn.execute(
            "SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('positions') c"
        )


async def load(backends: list[Backend], args: argparse.Namespace, first: date) -> dict[str, Any]:
    """Generate the history once per batch and COPY each batch into every backend in turn."""
    specs = specs_for(args.drivers, args.tenants)
    rows = 0
    copy_s = {b.name: 0.0 for b in backends}
    t0 = time.perf_counter()
    rng = np.random.default_rng(7)
    progress = Progress("generating and copying history", args.days * len(specs), "driver-days")
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
            progress.advance()
            if len(batch) >= 200_000 or n == len(specs) - 1:
                for b in backends:
                    t = time.perf_counter()
                    await write_tracks(b.c, batch)
                    copy_s[b.name] += time.perf_counter() - t
                rows += len(batch)
                batch = []
        log(f"day {day}: {rows:,} rows so far (copy s: {copy_s})")
    progress.close()
    total_s = time.perf_counter() - t0
    gen_s = total_s - sum(copy_s.values())
    for b in backends:
        b.result["load"] = {
            "copy_s": round(copy_s[b.name], 1),
            "copy_rows_per_s": round(rows / copy_s[b.name]),
            # comparable with single-backend runs: generation + this backend's COPY
            "generate_and_copy_rows_per_s": round(rows / (gen_s + copy_s[b.name])),
        }
    return {
        "rows": rows,
        "generate_s": round(gen_s, 1),
        "generate_rows_per_s": round(rows / gen_s),
        "total_s": round(total_s, 1),
    }


async def aggregate_relations(conn: asyncpg.Connection, backend: str) -> dict[str, str]:
    """Return the relation holding each aggregate's rows (the materialization hypertable)."""
    if backend == "plain":
        return {name: name for name in ROLLUPS}
    rows = await conn.fetch(
        """SELECT view_name, format('%I.%I', materialization_hypertable_schema,
                  materialization_hypertable_name) AS rel
           FROM timescaledb_information.continuous_aggregates"""
    )
    return {r["view_name"]: r["rel"] for r in rows if r["view_name"] in ROLLUPS}


async def refresh_all(b: Backend, first: date, days: int) -> None:
    conn = b.c
    await conn.execute("VACUUM (ANALYZE) positions")
    d0 = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    d1 = d0 + timedelta(days=days)
    refresh_s = {}
    t1 = time.perf_counter()
    for name in ROLLUPS:
        t = time.perf_counter()
        await refresh_range(conn, name, d0, d1)
        refresh_s[name] = round(time.perf_counter() - t, 2)
        log(f"{b.name}: refreshed {name} in {refresh_s[name]} s")
    b.result["refresh_s"] = refresh_s
    b.result["refresh_total_s"] = round(time.perf_counter() - t1, 2)
    for rel in (await aggregate_relations(conn, b.name)).values():
        await conn.execute(f"VACUUM (ANALYZE) {rel}")


async def fingerprint(conn: asyncpg.Connection) -> dict[str, Any]:
    """Counts and sums that must agree between backends holding the same data."""
    r = await conn.fetchrow(
        """SELECT count(*) AS positions, min(fix_time) AS first_fix, max(fix_time) AS last_fix,
                  round(sum(trip_m)::numeric, 0) AS trip_m, count(DISTINCT driver_id) AS drivers
           FROM positions"""
    )
    a = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM positions_1m) AS positions_1m_rows,
                  (SELECT sum(positions) FROM driver_daily_motion) AS daily_positions,
                  (SELECT round(sum(distance_m)::numeric, 0) FROM driver_daily_motion)
                      AS daily_distance_m,
                  (SELECT count(*) FROM cells_1h) AS cells_1h_rows,
                  (SELECT sum(positions) FROM cells_1h) AS cells_positions"""
    )
    assert r is not None and a is not None
    out = {**dict(r), **dict(a)}
    return {k: (str(v) if not isinstance(v, int) else v) for k, v in out.items()}


async def sizes(b: Backend) -> dict[str, Any]:
    conn = b.c
    rows = b.result["fingerprint"]["positions"]
    if b.name == "timescale":
        total = await conn.fetchval("SELECT hypertable_size('positions')")
    else:
        total = await conn.fetchval(
            "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree('positions')"
        )
    aggs = {}
    for name, rel in (await aggregate_relations(conn, b.name)).items():
        if b.name == "timescale":
            aggs[name] = await conn.fetchval("SELECT hypertable_size($1::regclass)", rel)
        else:
            aggs[name] = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", rel)
    return {
        "positions_bytes": int(total),
        "bytes_per_position": round(int(total) / rows, 1),
        "aggregate_bytes": aggs,
    }


async def compress(b: Backend, first: date, days: int) -> dict[str, Any]:
    """Compress every chunk of positions older than the newest day; return sizes and ratio."""
    conn = b.c
    newest = datetime.combine(first + timedelta(days=days - 1), datetime.min.time(), tzinfo=UTC)
    t = time.perf_counter()
    chunks = await conn.fetch(
        "SELECT compress_chunk(c, if_not_compressed => true) "
        "FROM show_chunks('positions', older_than => $1::timestamptz) c",
        newest,
    )
    compress_s = time.perf_counter() - t
    log(f"timescale: compressed {len(chunks)} chunks in {compress_s:.1f} s")
    await conn.execute("VACUUM (ANALYZE) positions")
    st = await conn.fetchrow("SELECT * FROM hypertable_compression_stats('positions')")
    compressed_rows = await conn.fetchval(
        "SELECT count(*) FROM positions WHERE fix_time < $1", newest
    )
    assert st is not None
    before = int(st["before_compression_total_bytes"] or 0)
    after = int(st["after_compression_total_bytes"] or 0)
    size = await sizes(b)
    return {
        "chunks_compressed": len(chunks),
        "compress_s": round(compress_s, 1),
        "positions_bytes": size["positions_bytes"],
        "bytes_per_position": size["bytes_per_position"],
        # the compressed chunks alone: before and after, per position and as a ratio
        "compressed_chunks_positions": compressed_rows,
        "compressed_chunks_before_bytes": before,
        "compressed_chunks_after_bytes": after,
        "compressed_chunks_bytes_per_position_before": round(before / compressed_rows, 1)
        if compressed_rows
        else None,
        "compressed_chunks_bytes_per_position_after": round(after / compressed_rows, 1)
        if compressed_rows
        else None,
        "compression_ratio": round(before / after, 2) if after else None,
    }


def query_set(
    conn: asyncpg.Connection, args: argparse.Namespace, first: date, specs: list[DriverSpec]
) -> dict[str, Query]:
    """The timed calls; each draws from its own seeded generator, so every backend (and every
    pass) sees the same drivers, tenants and days in the same order."""
    query_days = max(1, args.days - 1)
    last = first + timedelta(days=min(args.days, 31) - 1)

    def rng(name: str) -> random.Random:
        return random.Random(f"bench.queries:{name}")

    r_play, r_fleet, r_heat, r_daily, r_driver = (
        rng(n) for n in ("playback", "fleet", "heatmap", "daily", "driver")
    )

    def day(r: random.Random) -> date:
        return first + timedelta(days=r.randrange(query_days))

    async def playback() -> None:
        s = r_play.choice(specs)
        d0, d1 = queries.day_bounds(day(r_play))
        await queries.playback(
            conn, driver_id=uuid.UUID(s.driver_id), start=d0, end=d1, max_points=2000
        )

    async def fleet_playback() -> None:
        tenant = f"bench-{r_fleet.randrange(args.tenants)}"
        d0, _ = queries.day_bounds(day(r_fleet))
        start = d0 + timedelta(hours=9, minutes=r_fleet.randrange(6 * 60))
        await queries.fleet_playback(
            conn,
            tenant=tenant,
            start=start,
            end=start + timedelta(hours=1),
            bbox=CITY_BOX,
            max_points_per_driver=500,
        )

    async def heatmap() -> None:
        tenant = f"bench-{r_heat.randrange(args.tenants)}"
        d0, d1 = queries.day_bounds(day(r_heat))
        await queries.heatmap(
            conn, tenant=tenant, start=d0, end=d1, resolution=8, metric="positions"
        )

    async def daily() -> None:
        tenant = f"bench-{r_daily.randrange(args.tenants)}"
        await queries.daily_stats(conn, tenant=tenant, day=day(r_daily))

    async def driver() -> None:
        s = r_driver.choice(specs)
        await queries.driver_stats(conn, driver_id=uuid.UUID(s.driver_id), first=first, last=last)

    return {
        "playback_driver_day": playback,
        "fleet_playback_tenant_hour": fleet_playback,
        "heatmap_tenant_day": heatmap,
        "daily_stats_tenant_day": daily,
        "driver_stats_range": driver,
    }


async def run_queries(
    backends: list[Backend], args: argparse.Namespace, first: date, label: str
) -> dict[str, dict[str, Any]]:
    """Time every query on every backend, samples interleaved; return backend -> query -> stats."""
    specs = specs_for(args.drivers, args.tenants)
    sets = {b.name: query_set(b.c, args, first, specs) for b in backends}
    out: dict[str, dict[str, Any]] = {b.name: {} for b in backends}
    for q in next(iter(sets.values())):
        t = time.perf_counter()
        res = await timed({name: s[q] for name, s in sets.items()}, args.samples)
        for name, stats in res.items():
            out[name][q] = stats
        log(
            f"{label} {q}: "
            + ", ".join(f"{n} p50 {s['p50_ms']} p99 {s['p99_ms']} ms" for n, s in res.items())
            + f" ({time.perf_counter() - t:.0f} s, load {loadavg()})"
        )
    return out


async def explain(conn: asyncpg.Connection, args: argparse.Namespace, first: date) -> Any:
    s = specs_for(args.drivers, args.tenants)[0]
    d0, d1 = queries.day_bounds(first + timedelta(days=max(0, args.days - 2) // 2))
    h0 = d0 + timedelta(hours=11)
    plans = {}
    for name, params in [
        ("playback_raw", (uuid.UUID(s.driver_id), d0, d1)),
        ("fleet_playback", ("bench-0", h0, h0 + timedelta(hours=1), *CITY_BOX)),
        ("heatmap", ("bench-0", d0, d1, 8)),
        ("daily_stats", ("bench-0", d0.date())),
    ]:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql(name), *params)
        plans[name] = [r[0] for r in rows]
    return plans


async def redis_near(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    specs = specs_for(args.drivers, args.tenants)
    rnd = random.Random(3)
    redis = create_redis(settings.redis)
    geo_key = f"{settings.redis.key_prefix}geo:all"
    try:
        await redis.delete(geo_key)
        for s in specs:
            await redis.geoadd(
                geo_key,
                (
                    s.lon0 + rnd.uniform(-0.02, 0.02),
                    s.lat0 + rnd.uniform(-0.02, 0.02),
                    s.driver_id,
                ),
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

        res = await timed({"near": near}, args.samples * 5)
        return {"drivers_near_point_redis": res["near"]}
    finally:
        await redis.delete(geo_key)
        await redis.aclose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    settings = base.model_copy(
        update={"redis": base.redis.model_copy(update={"key_prefix": "bench:"})}
    )
    ports = {"timescale": base.pg.port, "plain": base.stack.plain_pg_port}
    names = BACKENDS if args.backend == "both" else (args.backend,)
    backends = [
        Backend(n, base.pg.model_copy(update={"database": args.database, "port": ports[n]}))
        for n in names
    ]
    first = date.fromisoformat(args.first_day)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": loadavg()},
        "dataset": {
            "drivers": args.drivers,
            "tenants": args.tenants,
            "days": args.days,
            "hours_per_day": args.hours,
            "fix_interval_s": args.interval,
            "first_day": str(first),
            "query_days": max(1, args.days - 1),
        },
    }
    try:
        for b in backends:
            await prepare(b, args, first)
        to_load = [b for b in backends if b.needs_load]
        if to_load:
            log(f"generating into {[b.name for b in to_load]}")
            result["generation"] = await load(to_load, args, first)
            for b in to_load:
                await refresh_all(b, first, args.days)
        for b in backends:
            b.result["fingerprint"] = await fingerprint(b.c)
            b.result["size"] = await sizes(b)
        prints = [json.dumps(b.result["fingerprint"], sort_keys=True) for b in backends]
        result["dataset"]["positions"] = backends[0].result["fingerprint"]["positions"]
        result["dataset"]["identical_on_backends"] = len(set(prints)) == 1
        if len(set(prints)) != 1:
            log("WARNING: the backends' data differ (see fingerprint)")

        res = await run_queries(backends, args, first, "uncompressed")
        for b in backends:
            b.result["queries"] = res[b.name]
            b.result["loadavg_after_queries"] = loadavg()
            if args.explain:
                b.result["plans"] = await explain(b.c, args, first)
        ts = next((b for b in backends if b.name == "timescale"), None)
        if ts is not None and args.days < 2:
            ts.result["compressed"] = {"skipped": "one day only: no chunk older than it"}
        elif ts is not None:
            comp = await compress(ts, first, args.days)
            # interleaved with the other backends again, as the first pass was: their second
            # figures show how much the machine's load moved between the passes
            res = await run_queries(backends, args, first, "compressed")
            comp["queries"] = res[ts.name]
            comp["loadavg_after_queries"] = loadavg()
            if args.explain:
                comp["plans"] = await explain(ts.c, args, first)
            ts.result["compressed"] = comp
            for b in backends:
                if b is not ts:
                    b.result["queries_second_pass"] = res[b.name]
        result["redis"] = await redis_near(settings, args)
    finally:
        for b in backends:
            if b.conn is not None:
                await b.conn.close()
    result["backends"] = {b.name: b.result for b in backends}
    result["machine"]["loadavg_end"] = loadavg()
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("timescale", "plain", "both"), default="both")
    p.add_argument("--drivers", type=int, default=1000)
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--hours", type=float, default=8)
    p.add_argument("--interval", type=float, default=30)
    p.add_argument("--first-day", default="2026-01-05")
    p.add_argument("--database", default="fp_bench")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--reuse", action="store_true", help="keep existing bench databases")
    p.add_argument("--explain", action="store_true", help="add EXPLAIN ANALYZE plans")
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=2, default=str))
