"""Drivers' latest positions (Redis) as the live queries read them: active or stale.

The enrichment worker writes each driver's latest ``EnrichedMessage`` (``ingest.writers.
LiveState``); ``latest_positions`` is the one read of it. A driver is active while its latest
fix is at most ``FLEETPULSE_LIVE__ACTIVE_WINDOW_S`` old (the seed kept the latest position 5
minutes). ``/api/drivers/near``, ``/within``, ``/api/map/live`` and the socket's
``get-active-drivers`` use this one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from infrastructure.redis import RedisKeys
from ingest.errors import UndecodableMessage
from ingest.model import EnrichedMessage, parse_enriched

_MGET_CHUNK = 1000  # keys per MGET: Redis is single-threaded, keep each call short


async def latest_positions(
    redis: Redis, keys: RedisKeys, driver_ids: Sequence[str]
) -> list[EnrichedMessage | None]:
    """Each driver's latest enriched position, in order; None where Redis has none (expired,
    pruned, never seen) or holds something that is not one."""
    out: list[EnrichedMessage | None] = []
    for i in range(0, len(driver_ids), _MGET_CHUNK):
        values = await redis.mget([keys.latest(d) for d in driver_ids[i : i + _MGET_CHUNK]])
        for raw in values:
            try:
                out.append(None if raw is None else parse_enriched(raw))
            except UndecodableMessage:
                out.append(None)
    return out


def fix_age_s(message: EnrichedMessage, now_ms: int) -> float | None:
    """Seconds since the message's fix (``fixTimeMs``), None when it has none."""
    fix = message.get("fixTimeMs")
    if not isinstance(fix, int | float) or isinstance(fix, bool):
        return None
    return round(max(0.0, (now_ms - fix) / 1000), 1)


def is_active(age_s: float | None, window_s: float) -> bool:
    """Whether a latest position of this age counts as a driver being there now."""
    return age_s is not None and age_s <= window_s
