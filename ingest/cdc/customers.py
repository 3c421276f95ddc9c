"""Customer reads through three cache levels, then the source of truth.

1. in-process dict (TTL ``cdc.customer_memory_ttl_s``, 60 s),
2. Redis JSON (TTL ``cdc.customer_redis_ttl_s``, 5 min),
3. the PostgreSQL cache table ``customers`` (kept fresh by CDC),
4. MariaDB/MySQL ``core_business.customers`` (when CDC has not delivered the row yet).

The CDC consumer invalidates: it deletes the Redis key and publishes the changed ids on a
Redis channel; every process holding a ``CustomerCache`` listens and evicts its level 1. The
TTLs bound staleness if a message is missed (a process disconnected from Redis). Beside the
consumer that feeds it; level 3 is ``ingest.cdc.tables``' read of the cache table.

Examples
--------
>>> cache = CustomerCache(settings, pool, redis)          # doctest: +SKIP
>>> await cache.start()                                   # doctest: +SKIP
>>> await cache.get("tenant-1", 1)                        # doctest: +SKIP
{'id': 1, 'tenantId': 'tenant-1', 'name': 'Downtown Warehouse', ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pymysql
from redis.asyncio import Redis

from infrastructure.mariadb import create_mariadb_pool
from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.cdc.tables import cached_customer

log = logging.getLogger(__name__)
Customer = dict[str, Any]

_MYSQL_SQL = """
    SELECT id, tenant_id, account_id, name, address, lat, lng, geofence_radius,
           customer_type, contact_name, contact_phone, contact_email, active, updated_at
    FROM customers WHERE id = %s"""


@dataclass
class CacheStats:
    memory_hits: int = 0
    redis_hits: int = 0
    postgres_hits: int = 0
    source_hits: int = 0
    misses: int = 0
    invalidations: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the counters and hit rates (fraction of lookups answered at each level)."""
        total = (
            self.memory_hits + self.redis_hits + self.postgres_hits + self.source_hits + self.misses
        )

        def rate(n: int) -> float | None:
            return round(n / total, 4) if total else None

        return {
            "lookups": total,
            "memoryHits": self.memory_hits,
            "redisHits": self.redis_hits,
            "postgresHits": self.postgres_hits,
            "sourceHits": self.source_hits,
            "misses": self.misses,
            "invalidations": self.invalidations,
            "hitRate": {
                "memory": rate(self.memory_hits),
                "redis": rate(self.redis_hits),
                "postgres": rate(self.postgres_hits),
                "source": rate(self.source_hits),
                "cached": rate(self.memory_hits + self.redis_hits + self.postgres_hits),
            },
        }


def _from_mysql(r: tuple[Any, ...]) -> Customer:
    updated = r[13]
    return {
        "id": int(r[0]),
        "tenantId": r[1],
        "accountId": r[2],
        "name": r[3],
        "address": r[4],
        "lat": float(r[5]),
        "lng": float(r[6]),
        "geofenceRadius": int(r[7]),
        "customerType": r[8],
        "contactName": r[9],
        "contactPhone": r[10],
        "contactEmail": r[11],
        "active": bool(r[12]),
        # The session runs in UTC: a naive DATETIME from it is UTC.
        "updatedAt": updated.isoformat(timespec="milliseconds") + "Z" if updated else None,
        "syncedAt": None,
    }


@dataclass
class CustomerCache:
    """Read-through customer cache; ``start()`` subscribes to invalidations, ``close()`` ends."""

    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    stats: CacheStats = field(default_factory=CacheStats)
    _memory: dict[int, tuple[float, Customer]] = field(default_factory=dict)
    _listener: asyncio.Task[None] | None = None
    _mysql: Any = None
    _mysql_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.settings.redis.key_prefix)

    async def start(self) -> None:
        """Start listening for CDC invalidations."""
        self._listener = asyncio.create_task(self._listen())

    async def close(self) -> None:
        """Stop listening and close the MariaDB pool (if one was opened)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._mysql is not None:
            self._mysql.close()
            await self._mysql.wait_closed()

    def evict(self, customer_id: int) -> None:
        """Forget a customer in this process (level 1)."""
        if self._memory.pop(customer_id, None) is not None:
            self.stats.invalidations += 1

    async def get(self, tenant_id: str, customer_id: int) -> Customer | None:
        """Return the tenant's customer, or None (unknown, deleted or another tenant's)."""
        customer = await self._lookup(customer_id)
        if customer is None or customer["tenantId"] != tenant_id:
            return None
        return customer

    async def _lookup(self, customer_id: int) -> Customer | None:
        now = time.monotonic()
        hit = self._memory.get(customer_id)
        if hit is not None and hit[0] > now:
            self.stats.memory_hits += 1
            return hit[1]
        key = self.keys.customer(customer_id)
        raw = await self.redis.get(key)
        if raw is not None:
            self.stats.redis_hits += 1
            customer: Customer = orjson.loads(raw)
            self._remember(customer_id, customer)
            return customer
        async with self.pool.acquire() as conn:
            cached = await cached_customer(conn, customer_id)
        if cached is not None:
            self.stats.postgres_hits += 1
            customer = cached
        else:
            found = await self._from_source(customer_id)
            if found is None:
                self.stats.misses += 1
                return None
            self.stats.source_hits += 1
            customer = found
        await self.redis.set(key, orjson.dumps(customer), ex=self.settings.cdc.customer_redis_ttl_s)
        self._remember(customer_id, customer)
        return customer

    def _remember(self, customer_id: int, customer: Customer) -> None:
        ttl = self.settings.cdc.customer_memory_ttl_s
        self._memory[customer_id] = (time.monotonic() + ttl, customer)

    async def _from_source(self, customer_id: int) -> Customer | None:
        """Read the source of truth (rare: CDC has not delivered the row yet)."""
        async with self._mysql_lock:
            if self._mysql is None:
                self._mysql = await create_mariadb_pool(self.settings.mariadb, maxsize=2)
        try:
            async with self._mysql.acquire() as conn, conn.cursor() as cur:
                await cur.execute(_MYSQL_SQL, (customer_id,))
                row = await cur.fetchone()
        except pymysql.err.ProgrammingError as exc:
            # No such table: the source schema is not loaded here (no CDC set up), so the
            # row cannot exist there either; the cache's "not found" stands.
            log.warning("customer source not readable: %s", exc)
            return None
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            raise ConnectionError(f"the customer source is unavailable: {exc}") from exc
        return _from_mysql(row) if row is not None else None

    async def _listen(self) -> None:
        """Evict level 1 entries named on the invalidation channel; resubscribe after outages."""
        channel = self.keys.customer_invalidations
        while True:
            # Its own client without a read timeout: a quiet channel is not an error.
            client = Redis.from_url(self.settings.redis.url(), socket_connect_timeout=2)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(channel)
                # Entries cached while unsubscribed may have missed an invalidation.
                self._memory.clear()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    for part in bytes(message["data"]).decode().split(","):
                        if part.strip().isdigit():
                            self.evict(int(part))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: retry, TTLs bound staleness
                log.warning("customer invalidation listener: %r; resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
