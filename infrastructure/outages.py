"""The exceptions that mean "a dependency is away" (PostgreSQL, Redis, Kafka, the network).

One list for every caller: the api answers 503 for them, the consumers retry the same batch
without committing, never dead-lettering it.
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionError
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    RedisConnectionError,
    RedisTimeoutError,
    KafkaError,
)
