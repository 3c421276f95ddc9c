"""Which driver (and tenant) a device unique id belongs to, cached in-process.

Receivers authenticate every fix through this and the worker joins the driver from it, so a
position costs no database round trip once its device is known. Entries expire after a short
TTL so a re-assigned or newly registered device is picked up without a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class Device:
    unique_id: str
    driver_id: str
    tenant_id: str
    driver_name: str


class DeviceRegistry:
    """Resolve device unique ids to drivers with a positive and a (shorter) negative cache."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float = 30.0,
        negative_ttl_s: float = 2.0,
        max_entries: int = 100_000,
    ) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        # anonymous senders choose the ids: bound what their misses can make us hold
        self._max_entries = max_entries
        self._cache: dict[str, tuple[Device | None, float]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def _make_room(self, now: float) -> None:
        """Drop expired entries; if still full, the unknown ones; if still full, all."""
        if len(self._cache) < self._max_entries:
            return
        self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] is not None}
        if len(self._cache) >= self._max_entries:
            self._cache.clear()

    async def resolve_many(self, unique_ids: set[str]) -> dict[str, Device]:
        """Return the known devices among unique_ids (unknown ones are absent)."""
        now = time.monotonic()
        found: dict[str, Device] = {}
        missing: list[str] = []
        for uid in unique_ids:
            hit = self._cache.get(uid)
            if hit is not None and hit[1] > now:
                if hit[0] is not None:
                    found[uid] = hit[0]
            else:
                missing.append(uid)
        if missing:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT device_unique_id, id::text AS driver_id, tenant_id, name
                       FROM drivers WHERE device_unique_id = ANY($1::text[]) AND active""",
                    missing,
                )
            self._make_room(now)
            for row in rows:
                dev = Device(
                    row["device_unique_id"], row["driver_id"], row["tenant_id"], row["name"]
                )
                found[dev.unique_id] = dev
                self._cache[dev.unique_id] = (dev, now + self._ttl_s)
            for uid in missing:
                if uid not in found:
                    self._cache[uid] = (None, now + self._negative_ttl_s)
        return found

    def invalidate(self, unique_id: str | None = None) -> None:
        """Forget one device (or all) so the next lookup reads the database."""
        if unique_id is None:
            self._cache.clear()
        else:
            self._cache.pop(unique_id, None)
