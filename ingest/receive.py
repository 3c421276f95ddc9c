"""The receivers' common path: authenticate devices, check times, produce, then answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from infrastructure.kafka import GPS_POSITIONS
from infrastructure.metrics import RECEIVER_PRODUCE_SECONDS
from infrastructure.redis import RedisKeys
from infrastructure.settings import IngestSettings
from ingest.devices import DeviceRegistry
from ingest.errors import FixTooOld, InvalidPosition, UnknownDevice
from ingest.model import Fix, Position
from ingest.producer import Publisher
from ingest.validation import check_fix_time, check_storable

log = logging.getLogger(__name__)


# Where refusals of ids beyond the cap are counted together.
UNKNOWN_OVERFLOW_FIELD = "(beyond the cap)"
# KEYS[1] the hash; ARGV: cap of distinct ids, TTL (s), then the ids refused in one request.
_COUNT_UNKNOWN_LUA = f"""
local cap = tonumber(ARGV[1])
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('HLEN', KEYS[1]) < cap then
    redis.call('HINCRBY', KEYS[1], id, 1)
  else
    redis.call('HINCRBY', KEYS[1], '{UNKNOWN_OVERFLOW_FIELD}', 1)
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
"""


@dataclass
class Receiver:
    """Everything a receiver needs; built once per api process."""

    settings: IngestSettings
    devices: DeviceRegistry
    publisher: Publisher
    redis: Redis
    keys: RedisKeys
    retention_days: int = 365

    async def accept(
        self, fixes: list[Fix], *, tenant_id: str | None = None, discard_old: bool = False
    ) -> list[Position]:
        """Publish the fixes to ``gps.positions`` and return them once Kafka acknowledged.

        ``tenant_id`` restricts the devices to one tenant (a per-tenant API key); a device of
        another tenant is treated as unknown. Raises before producing anything if one fix is
        bad, so a request is all-or-nothing. With ``discard_old`` a fix older than the
        history retention of a known device is acknowledged without being stored (counted per
        device), instead of refused: a phone would retry it forever (the OsmAnd receivers).
        """
        now_ms = int(time.time() * 1000)
        old: list[Fix] = []
        for fix in fixes:
            try:
                self._check_time(fix, now_ms)
            except FixTooOld:
                if not discard_old:
                    raise
                old.append(fix)
            check_storable(fix.device_id, fix.attributes)
        known = await self.devices.resolve_many({f.device_id for f in fixes})
        unknown = sorted(
            {
                f.device_id
                for f in fixes
                if f.device_id not in known
                or (tenant_id is not None and known[f.device_id].tenant_id != tenant_id)
            }
        )
        if unknown:
            await self._count_unknown(unknown)
            raise UnknownDevice(unknown)
        if old:
            await self._count_old(old)
            fixes = [f for f in fixes if not any(f is o for o in old)]
            if not fixes:
                return []
        positions = [f.to_position(known[f.device_id].tenant_id, now_ms) for f in fixes]
        await self._publish(positions)
        return positions

    async def accept_valid(
        self, fixes: Sequence[Fix], *, tenant_id: str | None = None
    ) -> tuple[list[Position], dict[int, InvalidPosition | UnknownDevice]]:
        """Publish the acceptable fixes in one Kafka batch; refuse the others one by one.

        Returns the published positions (once Kafka acknowledged all of them) and, by index
        into ``fixes``, why each other fix was refused (fix time out of range, unknown
        device — counted like :meth:`accept` does, once per device and call). Raises
        BrokerUnavailable if Kafka does not acknowledge: then nothing counts as accepted.
        """
        now_ms = int(time.time() * 1000)
        rejected: dict[int, InvalidPosition | UnknownDevice] = {}
        for i, fix in enumerate(fixes):
            try:
                self._check_time(fix, now_ms)
                check_storable(fix.device_id, fix.attributes)
            except InvalidPosition as exc:
                rejected[i] = exc
        candidates = [i for i in range(len(fixes)) if i not in rejected]
        known = await self.devices.resolve_many({fixes[i].device_id for i in candidates})
        unknown: set[str] = set()
        positions: list[Position] = []
        for i in candidates:
            fix = fixes[i]
            device = known.get(fix.device_id)
            if device is None or (tenant_id is not None and device.tenant_id != tenant_id):
                unknown.add(fix.device_id)
                rejected[i] = UnknownDevice([fix.device_id])
            else:
                positions.append(fix.to_position(device.tenant_id, now_ms))
        if unknown:
            await self._count_unknown(sorted(unknown))
        if positions:
            await self._publish(positions)
        return positions, rejected

    async def _publish(self, positions: list[Position]) -> None:
        """Produce to gps.positions and wait for the acknowledgement (timed for /metrics)."""
        records = [(p.device_id.encode(), p.to_bytes()) for p in positions]
        with RECEIVER_PRODUCE_SECONDS.time():
            await self.publisher.publish(GPS_POSITIONS, records)

    async def _count_old(self, fixes: list[Fix]) -> None:
        """Count fixes acknowledged but not stored for their age, per (known) device."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            for fix in fixes:
                pipe.hincrby(self.keys.old_fixes, fix.device_id, 1)
            await pipe.execute()
        except RedisError as exc:  # counting is best effort
            log.warning("could not count old fixes: %s", exc)

    def _check_time(self, fix: Fix, now_ms: int) -> None:
        """Refuse a fix time from a broken clock: too far ahead, or older than retention."""
        check_fix_time(
            fix.fix_time_ms,
            now_ms,
            max_future_s=self.settings.max_future_skew_s,
            max_age_s=self.retention_days * 86400,
        )

    async def _count_unknown(self, device_ids: list[str]) -> None:
        """Count refused ids: per id up to a cap, beyond it together (anonymous senders may
        invent any number of ids), in a hash that expires once the refusals stop."""
        try:
            await self.redis.eval(
                _COUNT_UNKNOWN_LUA,
                1,
                self.keys.unknown_devices,
                self.settings.unknown_devices_max,
                self.settings.unknown_devices_ttl_s,
                *device_ids,
            )
        except RedisError as exc:  # counting is best effort; the rejection is what matters
            log.warning("could not count unknown devices: %s", exc)
