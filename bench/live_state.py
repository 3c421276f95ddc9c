"""Redis memory of the live state when devices churn: ``--generations`` fleets of
``--drivers`` new drivers each report once (real LiveState writes, a bench key prefix), each
an hour of retention after the last; between generations the workers' prune runs.

Prints one JSON document: bytes per driver (MEMORY USAGE of every key of the prefix), the
footprint after each generation before pruning, and after pruning. Example::

    .venv/bin/python -m bench.live_state --drivers 50000 --generations 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import orjson
from redis.asyncio import Redis

from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from ingest.devices import Device
from ingest.model import Position
from ingest.writers import EnrichedPosition, LiveState

RETENTION_S = 3600


async def footprint(redis: Redis, prefix: str) -> tuple[int, int]:
    """(keys under the prefix, bytes by MEMORY USAGE)."""
    names = [k async for k in redis.scan_iter(match=prefix + "*", count=1000)]
    total = 0
    for i in range(0, len(names), 1000):
        pipe = redis.pipeline(transaction=False)
        for name in names[i : i + 1000]:
            pipe.memory_usage(name, samples=0)
        total += sum(s or 0 for s in await pipe.execute())
    return len(names), total


async def main(drivers: int, generations: int, tenants: int) -> dict[str, object]:
    settings = Settings()
    redis = create_redis(settings.redis)
    keys = RedisKeys(f"fpbench:live{uuid.uuid4().hex[:6]}:")
    live = LiveState(redis, keys, retention_s=RETENTION_S, prune_interval_s=1e9)
    now = int(time.time() * 1000)
    rounds = []
    try:
        for g in range(generations):
            gen_now = now + g * (RETENTION_S + 1) * 1000
            batch = []
            for i in range(drivers):
                d = str(uuid.uuid4())
                t = f"tenant-{i % tenants}"
                pos = Position(t, f"DEV-{d[:12]}", gen_now, gen_now, 60.17, 24.93 + i * 1e-6)
                batch.append(EnrichedPosition(pos, Device(pos.device_id, d, t, f"driver {i}"), 0))
            for i in range(0, drivers, 2000):
                chunk = batch[i : i + 2000]
                await live.move(chunk, [orjson.dumps(e.to_message()) for e in chunk])
            n_keys, before = await footprint(redis, keys.prefix)
            started = time.perf_counter()
            pruned = await live.prune(now_ms=gen_now + (RETENTION_S + 1) * 1000)
            prune_s = time.perf_counter() - started
            left_keys, after = await footprint(redis, keys.prefix)
            rounds.append(
                {
                    "generation": g,
                    "keys": n_keys,
                    "bytes": before,
                    "bytesPerDriver": round(before / drivers, 1),
                    "pruned": pruned,
                    "pruneSeconds": round(prune_s, 3),
                    "keysAfterPrune": left_keys,
                    "bytesAfterPrune": after,
                }
            )
            print(f"generation {g + 1}/{generations} done", file=sys.stderr)
    finally:
        names = [k async for k in redis.scan_iter(match=keys.prefix + "*", count=1000)]
        if names:
            await redis.delete(*names)
        await redis.aclose()
    return {"drivers": drivers, "tenants": tenants, "rounds": rounds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", type=int, default=50_000)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=10)
    a = parser.parse_args()
    result = asyncio.run(main(a.drivers, a.generations, a.tenants))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
