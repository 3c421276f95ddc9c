"""The enrichment worker's sinks, each idempotent so a replayed batch changes nothing.

* history: COPY into a staging table, then ``INSERT .. ON CONFLICT DO NOTHING`` on
  (driver_id, fix_time) — COPY alone cannot skip duplicates;
* snapshot: ``driver_positions`` moves only forward in fix time;
* Redis: latest JSON + GEO member, moved by a script that compares fix times atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from redis.asyncio import Redis

from geo.cells import cell_to_string
from geo.movement import NO_LABEL_ROW
from geo.timestamps import EPOCH, iso_ms, ms_to_datetime
from infrastructure.postgres import Conn
from infrastructure.redis import RedisKeys
from ingest.devices import Device
from ingest.model import EnrichedMessage, Position
from ingest.motion_labels import LABEL_COLUMNS
from ingest.movement import Movement

DAY_MS = 86_400_000
EPOCH_DAY = date(1970, 1, 1)

HISTORY_COLUMNS = (
    "tenant_id",
    "driver_id",
    "device_unique_id",
    "fix_time",
    "received_at",
    "lon",
    "lat",
    "speed_kmh",
    "course",
    "altitude",
    "accuracy",
    "valid",
    "protocol",
    "h3_cell",
    "attributes",
    "route_id",
    "next_visit_id",
    "distance_to_next_m",
    "eta_s",
    "geofence_id",
    *LABEL_COLUMNS,
)

_STAGE_DDL = """CREATE TEMP TABLE IF NOT EXISTS positions_stage
                (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""

_INSERT_HISTORY = f"""INSERT INTO positions ({", ".join(HISTORY_COLUMNS)})
SELECT {", ".join(HISTORY_COLUMNS)} FROM positions_stage
ON CONFLICT (driver_id, fix_time) DO NOTHING"""

_UPSERT_SNAPSHOT = """
INSERT INTO driver_positions AS dp (driver_id, tenant_id, device_unique_id, fix_time, received_at,
    lon, lat, geom, speed_kmh, course, altitude, accuracy, valid, h3_cell, attributes, route_id,
    next_visit_id, distance_to_next_m, eta_s, geofence_id, updated_at)
SELECT DISTINCT ON (driver_id) driver_id, tenant_id, device_unique_id, fix_time, received_at,
    lon, lat, ST_SetSRID(ST_MakePoint(lon, lat), 4326), speed_kmh, course, altitude, accuracy,
    valid, h3_cell, attributes, route_id, next_visit_id, distance_to_next_m, eta_s, geofence_id,
    now()
FROM positions_stage
-- a fix from the future (beyond the tolerance) is history only: it must not pin the snapshot
WHERE fix_time <= received_at + make_interval(secs => $1)
ORDER BY driver_id, fix_time DESC
ON CONFLICT (driver_id) DO UPDATE SET
    tenant_id = EXCLUDED.tenant_id, device_unique_id = EXCLUDED.device_unique_id,
    fix_time = EXCLUDED.fix_time, received_at = EXCLUDED.received_at, lon = EXCLUDED.lon,
    lat = EXCLUDED.lat, geom = EXCLUDED.geom, speed_kmh = EXCLUDED.speed_kmh,
    course = EXCLUDED.course, altitude = EXCLUDED.altitude, accuracy = EXCLUDED.accuracy,
    valid = EXCLUDED.valid, h3_cell = EXCLUDED.h3_cell, attributes = EXCLUDED.attributes,
    route_id = EXCLUDED.route_id, next_visit_id = EXCLUDED.next_visit_id,
    distance_to_next_m = EXCLUDED.distance_to_next_m, eta_s = EXCLUDED.eta_s,
    geofence_id = EXCLUDED.geofence_id, updated_at = now()
WHERE dp.fix_time < EXCLUDED.fix_time"""

# KEYS[1] the fix-time guard hash, KEYS[2] the set of tenants with live state; ARGV[1] the
# latest key's TTL (ms), then 9 values per driver: id, fix ms, lon, lat, json, geo key,
# latest key, seen key, tenant id. Only moves a driver whose new fix is newer than the one
# recorded in KEYS[1].
_MOVE_LIVE_LUA = """
local ttl = tonumber(ARGV[1])
local moved = 0
for i = 2, #ARGV, 9 do
  local id = ARGV[i]
  local fix = tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('HGET', KEYS[1], id) or '-1')
  if fix > current then
    redis.call('HSET', KEYS[1], id, ARGV[i + 1])
    local lat = tonumber(ARGV[i + 3])
    if lat > -85.05112878 and lat < 85.05112878 then
      redis.call('GEOADD', ARGV[i + 5], ARGV[i + 2], ARGV[i + 3], id)
    end
    redis.call('SET', ARGV[i + 6], ARGV[i + 4], 'PX', ttl)
    redis.call('ZADD', ARGV[i + 7], fix, id)
    redis.call('SADD', KEYS[2], ARGV[i + 8])
    moved = moved + 1
  end
end
return moved
"""

# KEYS[1] a tenant's seen set, KEYS[2] its GEO set, KEYS[3] the fix-time guard hash; ARGV:
# cutoff (fix ms), the most drivers to prune in one call, the latest keys' prefix. Removes
# drivers whose latest fix is at or before the cutoff; returns how many.
_PRUNE_LIVE_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('DEL', ARGV[3] .. id)
end
return #ids
"""
PRUNE_CHUNK = 1000  # drivers per script call: Redis is single-threaded, keep each call short


_last_received: tuple[int, datetime] = (0, EPOCH)


def _received_at(ms: int) -> datetime:
    """``ms_to_datetime`` for receive times: the fixes of one request share theirs."""
    global _last_received
    if _last_received[0] != ms:
        _last_received = (ms, ms_to_datetime(ms))
    return _last_received[1]


_last_received_iso: tuple[int, str] = (0, iso_ms(0))


def _received_iso(ms: int) -> str:
    """``iso_ms`` for receive times (see ``_received_at``)."""
    global _last_received_iso
    if _last_received_iso[0] != ms:
        _last_received_iso = (ms, iso_ms(ms))
    return _last_received_iso[1]


class EnrichedPosition(NamedTuple):
    """A position joined with its driver and H3 cell: what history, Redis and the feed get."""

    position: Position
    device: Device
    h3_cell: int
    movement: Movement = Movement()

    def history_row(self) -> tuple[Any, ...]:
        p, m = self.position, self.movement
        return (
            p.tenant_id,
            self.device.driver_id,
            p.device_id,
            ms_to_datetime(p.fix_time_ms),
            _received_at(p.received_ms),
            p.lon,
            p.lat,
            p.speed_kmh,
            p.course,
            p.altitude,
            p.accuracy,
            p.valid,
            p.protocol,
            self.h3_cell,
            p.attributes,
            m.route_id,  # asyncpg encodes a uuid from its text, as it does driver_id
            m.next_visit_id,
            m.distance_to_next_m,
            m.eta_s,
            m.geofence_id,
            *(NO_LABEL_ROW if m.motion is None else m.motion.as_row()),
        )

    def to_message(self) -> EnrichedMessage:
        """The JSON of ``gps.positions.enriched``, Redis latest and ``position:update``."""
        p, m = self.position, self.movement
        fix_ms = p.fix_time_ms
        message: EnrichedMessage = {
            "schema": 1,
            "tenantId": p.tenant_id,
            "driverId": self.device.driver_id,
            "driverName": self.device.driver_name,
            "deviceId": p.device_id,
            "fixTime": iso_ms(fix_ms),
            "fixTimeMs": fix_ms,
            "receivedAt": _received_iso(p.received_ms),
            "lat": p.lat,
            "lon": p.lon,
            "speed": p.speed_kmh,
            "course": p.course,
            "altitude": p.altitude,
            "accuracy": p.accuracy,
            "valid": p.valid,
            "protocol": p.protocol,
            "h3Cell": cell_to_string(self.h3_cell),
            "attributes": p.attributes,
            "routeId": m.route_id,
            "nextVisitId": m.next_visit_id,
            "nextCustomerId": m.next_customer_id,
            "nextCustomerName": m.next_customer_name,
            "distanceToNextM": m.distance_to_next_m,
            "etaSeconds": m.eta_s,
            "eta": None if m.eta_s is None else iso_ms(fix_ms + int(m.eta_s * 1000)),
            "geofenceId": m.geofence_id,
        }
        if m.stop_etas:  # every remaining stop, at most every 30 s per driver (docs/eta.md)
            message["stopEtas"] = [
                {
                    "visitId": visit,
                    "etaSeconds": seconds,
                    "eta": iso_ms(fix_ms + int(seconds * 1000)),
                }
                for visit, seconds in m.stop_etas
            ]
        return message


class PartitionKeeper:
    """Makes sure a daily history partition exists before rows for that day arrive."""

    def __init__(self) -> None:
        self._known: set[date] = set()

    async def ensure(self, conn: Conn, days: set[date]) -> None:
        missing = days - self._known
        if not missing:
            return
        await conn.execute(
            "SELECT fleetpulse_ensure_position_partitions($1, $2)", min(missing), max(missing)
        )
        self._known |= missing


async def write_history_and_snapshot(
    conn: Conn,
    batch: Sequence[EnrichedPosition],
    partitions: PartitionKeeper,
    *,
    future_tolerance_s: float,
) -> int:
    """Store the batch in history and move snapshots forward; return rows newly stored.

    Fixes more than ``future_tolerance_s`` ahead of their receive time go to history only.
    """
    days = {e.position.fix_time_ms // DAY_MS for e in batch}
    await partitions.ensure(conn, {EPOCH_DAY + timedelta(days=d) for d in days})
    async with conn.transaction():
        await conn.execute(_STAGE_DDL)
        await conn.copy_records_to_table(
            "positions_stage", records=[e.history_row() for e in batch], columns=HISTORY_COLUMNS
        )
        status = await conn.execute(_INSERT_HISTORY)
        await conn.execute(_UPSERT_SNAPSHOT, float(future_tolerance_s))
    return int(status.split()[-1])


class LiveState:
    """Latest position per driver in Redis: JSON + tenant GEO set, forward-only, bounded.

    A driver whose latest fix is older than ``retention_s`` leaves Redis (key, GEO member,
    fix-time guard): ``prune`` does it, ``move`` calls it every ``prune_interval_s``, and the
    latest key also expires on its own ``retention_s`` after it was written.
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        *,
        retention_s: float = 86_400,
        prune_interval_s: float = 60.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_MOVE_LIVE_LUA)
        self._prune_script = redis.register_script(_PRUNE_LIVE_LUA)
        self.retention_ms = int(retention_s * 1000)
        self.prune_interval_s = prune_interval_s
        self._pruned_at = time.monotonic()

    async def move(self, batch: Sequence[EnrichedPosition], messages: Sequence[bytes]) -> int:
        """Move drivers whose fix is newer than what Redis has; return how many moved.

        ``messages`` are the batch's encoded ``to_message()``, in the same order. Fixes past
        the retention are left out (they would only be pruned again).
        """
        oldest = int(time.time() * 1000) - self.retention_ms
        newest: dict[str, tuple[EnrichedPosition, bytes]] = {}
        for e, message in zip(batch, messages, strict=True):
            if e.position.fix_time_ms <= oldest:
                continue
            cur = newest.get(e.device.driver_id)
            if cur is None or e.position.fix_time_ms > cur[0].position.fix_time_ms:
                newest[e.device.driver_id] = (e, message)
        args: list[str | bytes | int | float] = [self.retention_ms]
        for driver_id, (e, message) in newest.items():
            tenant = e.position.tenant_id
            args += [
                driver_id,
                e.position.fix_time_ms,
                e.position.lon,
                e.position.lat,
                message,
                self._keys.geo(tenant),
                self._keys.latest(driver_id),
                self._keys.seen(tenant),
                tenant,
            ]
        moved = 0
        if newest:
            keys = [self._keys.fix_times, self._keys.live_tenants]
            moved = int(await self._script(keys=keys, args=args))
        if time.monotonic() - self._pruned_at >= self.prune_interval_s:
            self._pruned_at = time.monotonic()
            await self.prune()
        return moved

    async def prune(self, now_ms: int | None = None) -> int:
        """Remove drivers whose latest fix is past the retention; return how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now_ms - self.retention_ms
        removed = 0
        for raw in await self._redis.smembers(self._keys.live_tenants):
            tenant = raw.decode() if isinstance(raw, bytes) else str(raw)
            keys = [self._keys.seen(tenant), self._keys.geo(tenant), self._keys.fix_times]
            while True:
                n = int(
                    await self._prune_script(
                        keys=keys, args=[cutoff, PRUNE_CHUNK, self._keys.latest("")]
                    )
                )
                removed += n
                if n < PRUNE_CHUNK:
                    break
        return removed
