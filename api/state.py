"""What the lifespan creates and the routes use, in one typed object."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from api.live.gateway import LiveGateway
from infrastructure.redis import RedisKeys
from infrastructure.settings import Settings
from ingest.devices import DeviceRegistry
from ingest.producer import Publisher
from ingest.receive import Receiver


@dataclass
class AppState:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    keys: RedisKeys
    publisher: Publisher
    devices: DeviceRegistry
    receiver: Receiver
    live: LiveGateway | None = None
