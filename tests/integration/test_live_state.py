"""Redis live state (ingest/writers.py LiveState) against the real Redis: forward-only
moves, a TTL on every latest key, and pruning that bounds memory when devices churn."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from infrastructure.redis import RedisKeys, create_redis
from infrastructure.settings import Settings
from ingest.devices import Device
from ingest.model import Position
from ingest.writers import EnrichedPosition, LiveState

RETENTION_S = 3600


@pytest.fixture
async def redis(settings: Settings, redis_clean: None) -> AsyncIterator[Redis]:
    client: Redis = create_redis(settings.redis)
    yield client
    await client.aclose()


@pytest.fixture
def keys(settings: Settings) -> RedisKeys:
    return RedisKeys(f"{settings.redis.key_prefix}ls{uuid.uuid4().hex[:8]}:")


def fix(driver: str, tenant: str, fix_ms: int, lon: float = 24.93) -> EnrichedPosition:
    pos = Position(tenant, f"D-{driver[:8]}", fix_ms, fix_ms, 60.17, lon)
    return EnrichedPosition(pos, Device(f"D-{driver[:8]}", driver, tenant, "x"), 0)


async def move(live: LiveState, batch: list[EnrichedPosition]) -> int:
    return await live.move(batch, [orjson.dumps(e.to_message()) for e in batch])


async def footprint(redis: Redis, keys: RedisKeys) -> tuple[int, int]:
    """(keys under the prefix, bytes they use by MEMORY USAGE)."""
    names = [k async for k in redis.scan_iter(match=keys.prefix + "*", count=1000)]
    sizes = 0
    for i in range(0, len(names), 500):
        pipe = redis.pipeline(transaction=False)
        for name in names[i : i + 500]:
            pipe.memory_usage(name, samples=0)
        sizes += sum(s or 0 for s in await pipe.execute())
    return len(names), sizes


async def test_moves_forward_only_with_a_ttl_and_skips_fixes_past_the_retention(
    redis: Redis, keys: RedisKeys
) -> None:
    live = LiveState(redis, keys, retention_s=RETENTION_S, prune_interval_s=3600)
    now = int(time.time() * 1000)
    d = str(uuid.uuid4())
    assert await move(live, [fix(d, "t1", now - 1000)]) == 1
    assert await move(live, [fix(d, "t1", now - 2000, lon=25.0)]) == 0  # older: ignored
    latest = orjson.loads(await redis.get(keys.latest(d)))
    assert latest["fixTimeMs"] == now - 1000 and latest["lon"] == 24.93
    assert RETENTION_S * 1000 - 5000 < await redis.pttl(keys.latest(d)) <= RETENTION_S * 1000
    # a fix already past the retention never enters (it would only be pruned again)
    old = str(uuid.uuid4())
    assert await move(live, [fix(old, "t1", now - (RETENTION_S + 5) * 1000)]) == 0
    assert await redis.exists(keys.latest(old)) == 0
    assert await redis.zscore(keys.geo("t1"), old) is None


async def test_pruning_bounds_memory_when_devices_churn(redis: Redis, keys: RedisKeys) -> None:
    live = LiveState(redis, keys, retention_s=RETENTION_S, prune_interval_s=3600)
    n = 5000  # per generation; two tenants
    footprints = []
    now = int(time.time() * 1000)
    for generation in range(3):
        gen_now = now + generation * (RETENTION_S + 1) * 1000
        drivers = [str(uuid.uuid4()) for _ in range(n)]
        # each generation reports an hour after the last one (fixes dated on its clock)
        batch = [fix(d, f"t{i % 2}", gen_now - 1000) for i, d in enumerate(drivers)]
        for i in range(0, n, 1000):
            await move(live, batch[i : i + 1000])
        footprints.append(await footprint(redis, keys))
        assert await redis.zcard(keys.geo("t0")) == n // 2  # the previous generation is gone
        # every driver seen in this generation is past the retention an hour later
        assert await live.prune(now_ms=gen_now + (RETENTION_S + 1) * 1000) == n
        count, _ = await footprint(redis, keys)
        assert count == 1  # only the set of tenants with live state is left
        assert await redis.hlen(keys.fix_times) == 0
    # the same footprint every generation: churn does not accumulate
    (k0, b0), (k1, b1), (k2, b2) = footprints
    assert k0 == k1 == k2 == n + 6  # latest keys, 2 GEO, 2 seen, fix-time hash, tenants
    assert abs(b2 - b0) < 0.05 * b0, footprints
    # pruning nothing is a no-op
    assert await live.prune() == 0
