"""The write path's exceptions; they never mention HTTP (api/errors.py maps them)."""

from __future__ import annotations


class IngestError(Exception):
    """Base of everything the write path raises on purpose."""

    code = "ingest_error"


class InvalidPosition(IngestError, ValueError):
    """A body or a field that cannot be a position; nothing of the request is accepted."""

    code = "invalid_position"

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class FixTooOld(InvalidPosition):
    """A fix older than the history retention: the retention would delete it at once."""


class UnknownDevice(IngestError, LookupError):
    """The device unique id is not registered to a driver (of the authenticated tenant)."""

    code = "unknown_device"

    def __init__(self, device_ids: list[str]) -> None:
        super().__init__(f"unknown device(s): {', '.join(device_ids)}")
        self.device_ids = device_ids


class BrokerUnavailable(IngestError, ConnectionError):
    """Kafka did not acknowledge the write in time; the caller must not answer 2xx."""

    code = "broker_unavailable"


class UndecodableMessage(IngestError, ValueError):
    """A Kafka record the worker cannot turn into a position: it goes to the dead letters."""

    code = "undecodable_message"
