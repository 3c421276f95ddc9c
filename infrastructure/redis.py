"""Redis client factory and the key names every process agrees on."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infrastructure.settings import RedisSettings


def create_redis(settings: RedisSettings) -> Redis:
    """Create the async client (connections are opened lazily)."""
    return Redis.from_url(
        settings.url(),
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=15,
        # After a Redis restart every pooled connection is dead; without a retry the first
        # command on each one fails (found by tests/reliability: a 503 per stale connection).
        # Our commands are idempotent (forward-only Lua, GEO/SET, reads) except the
        # unknown-device counter, which a retry may count twice: acceptable for a hint.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


class RedisKeys:
    """Key names under the configured prefix (tests isolate by prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def latest(self, driver_id: str) -> str:
        """JSON of a driver's latest enriched position (seed: pos:driver:{id})."""
        return f"{self.prefix}pos:driver:{driver_id}"

    def geo(self, tenant_id: str) -> str:
        """GEO set of a tenant's drivers at their latest position."""
        return f"{self.prefix}geo:drivers:{tenant_id}"

    def seen(self, tenant_id: str) -> str:
        """Sorted set of a tenant's drivers scored by latest fix time (ms): what to prune."""
        return f"{self.prefix}pos:seen:{tenant_id}"

    @property
    def live_tenants(self) -> str:
        """Set of the tenants that have live state (the pruner walks their ``seen`` sets)."""
        return f"{self.prefix}pos:tenants"

    @property
    def fix_times(self) -> str:
        """Hash driver id -> latest fix time in ms; guards live state against going back."""
        return f"{self.prefix}pos:fix"

    def logged_out(self, user_id: str) -> str:
        """Epoch seconds of the user's last logout (kept an access token's lifetime): the
        live feed drops sockets whose token was issued before it."""
        return f"{self.prefix}auth:logged_out:{user_id}"

    @property
    def old_fixes(self) -> str:
        """Hash device unique id -> fixes acknowledged but not stored: older than the
        history retention (OsmAnd: a phone would otherwise retry them forever)."""
        return f"{self.prefix}ingest:old_fixes"

    @property
    def unknown_devices(self) -> str:
        """Hash device unique id -> rejected fixes from it (admins register from this)."""
        return f"{self.prefix}ingest:unknown_devices"

    def customer(self, customer_id: int) -> str:
        """JSON of a cached customer (read-through cache, level 2; CDC deletes it)."""
        return f"{self.prefix}customer:{customer_id}"

    @property
    def customer_invalidations(self) -> str:
        """Pub/sub channel: customer ids changed by CDC (processes evict their level 1)."""
        return f"{self.prefix}customers:invalidate"
