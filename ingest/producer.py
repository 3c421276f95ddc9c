"""Producing to Kafka: acks=all, and nothing counts as sent before the broker said yes.

The receivers (no 2xx before the ack) and the consumers (enriched positions, events, dead
letters) produce through one ``Publisher`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, OutOfOrderSequenceNumber, ProducerFenced

from infrastructure.kafka import create_producer, produce_batches
from infrastructure.settings import KafkaSettings
from ingest.errors import BrokerUnavailable

log = logging.getLogger(__name__)


class Publisher:
    """Owns one producer; keeps trying to connect in the background while Kafka is away."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect now if Kafka is up, otherwise keep retrying in the background."""
        if not await self._try_connect():
            self._connector = asyncio.create_task(self._connect_forever())

    async def _try_connect(self) -> bool:
        producer = create_producer(self._settings)
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("kafka producer cannot connect yet: %s", exc)
            with contextlib.suppress(Exception):
                await producer.stop()
            return False
        self._producer = producer
        return True

    async def _connect_forever(self) -> None:
        delay = 0.5
        while not await self._try_connect():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """Send (key, value) records and wait until all are acknowledged, or raise."""
        await self.publish_to(self._settings.topic(topic), records)

    async def publish_to(self, physical: str, records: list[tuple[bytes, bytes]]) -> None:
        """Send records to a topic named as the broker knows it (prefixed), like publish."""
        await self._acknowledged(lambda producer: produce_batches(producer, physical, records))

    async def send_to(
        self,
        physical: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Send one record with headers (a dead letter) to a physical topic, like publish."""
        await self._acknowledged(
            lambda producer: producer.send_and_wait(physical, key=key, value=value, headers=headers)
        )

    async def _acknowledged(self, send: Callable[[AIOKafkaProducer], Awaitable[object]]) -> None:
        """Run ``send`` on the current producer within the produce timeout, or raise
        BrokerUnavailable (and replace a producer that can never send again)."""
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("Kafka is not reachable")
        try:
            async with asyncio.timeout(self._settings.produce_timeout_s):
                await send(producer)
        except (TimeoutError, KafkaError) as exc:
            if isinstance(exc, OutOfOrderSequenceNumber | ProducerFenced):
                self._replace(producer)
            raise BrokerUnavailable(f"Kafka did not acknowledge the write: {exc!r}") from exc

    def _replace(self, broken: AIOKafkaProducer) -> None:
        """Start a new producer in place of one that can never send again.

        After a broker restart that lost in-flight batches, the broker refuses the idempotent
        producer's next sequence numbers (OutOfOrderSequenceNumber) and aiokafka's sender
        stops for good; a new producer gets a new producer id and starts from sequence 0.
        Found by tests/reliability/test_faults_under_load.py (Kafka restarted under load).
        """
        if self._producer is not broken:
            return  # another request already replaced it
        log.warning("kafka producer is unusable after a broker restart; starting a new one")
        self._producer = None
        retiring = asyncio.create_task(self._retire(broken))
        self._retired.add(retiring)
        retiring.add_done_callback(self._retired.discard)
        self._connector = asyncio.create_task(self._connect_forever())

    @staticmethod
    async def _retire(producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await producer.stop()
