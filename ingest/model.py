"""The messages of the position topics: ``gps.positions`` (``Position``) and
``gps.positions.enriched`` (``EnrichedMessage``), schema version 1."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast

import orjson

from geo.timestamps import ms_to_datetime
from ingest.errors import UndecodableMessage

SCHEMA_VERSION = 1
KNOTS_TO_KMH = 1.852


# Position and Fix are not frozen: a frozen dataclass's __init__ sets each field through
# object.__setattr__, 3.5 against 0.65 µs here, once per fix in the api and again in every
# worker. Nothing changes one after it is built.
@dataclass(slots=True)
class Position:
    """One GPS fix as normalised at the edge: UTC milliseconds, km/h, degrees."""

    tenant_id: str
    device_id: str  # the device unique id (Traccar uniqueId, OsmAnd id)
    fix_time_ms: int
    received_ms: int
    lat: float
    lon: float
    speed_kmh: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    valid: bool = True
    protocol: str = "unknown"
    attributes: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @property
    def fix_time(self) -> datetime:
        return ms_to_datetime(self.fix_time_ms)

    @property
    def received_at(self) -> datetime:
        return ms_to_datetime(self.received_ms)

    def to_bytes(self) -> bytes:
        """Serialise for Kafka: the fields in order, as a JSON object."""
        # A dict literal, not orjson's dataclass support: that read the slots for 1.3-2.3 µs
        # against 0.7 for building and writing this (once per fix in the api)
        return orjson.dumps(
            {
                "tenant_id": self.tenant_id,
                "device_id": self.device_id,
                "fix_time_ms": self.fix_time_ms,
                "received_ms": self.received_ms,
                "lat": self.lat,
                "lon": self.lon,
                "speed_kmh": self.speed_kmh,
                "course": self.course,
                "altitude": self.altitude,
                "accuracy": self.accuracy,
                "valid": self.valid,
                "protocol": self.protocol,
                "attributes": self.attributes,
                "schema": self.schema,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Position:
        """Parse a Kafka value; raise UndecodableMessage for anything that is not a position."""
        if data is None:
            raise UndecodableMessage("empty record value")
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UndecodableMessage(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise UndecodableMessage("value is not a JSON object")
        if raw.get("schema") != SCHEMA_VERSION:
            raise UndecodableMessage(f"unsupported schema version {raw.get('schema')!r}")
        # positionally, unknown members ignored: cls(**raw) was two thirds of this function
        get = raw.get
        try:
            pos = cls(
                raw["tenant_id"],
                raw["device_id"],
                raw["fix_time_ms"],
                raw["received_ms"],
                raw["lat"],
                raw["lon"],
                get("speed_kmh"),
                get("course"),
                get("altitude"),
                get("accuracy"),
                get("valid", True),
                get("protocol", "unknown"),
                get("attributes") or {},
            )
            lat, lon = float(pos.lat), float(pos.lon)
            int(pos.fix_time_ms)
        except KeyError as exc:
            raise UndecodableMessage(f"missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise UndecodableMessage(f"bad fields: {exc}") from exc
        if not (
            math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180
        ):
            raise UndecodableMessage("coordinates out of range")
        if not isinstance(pos.tenant_id, str) or not isinstance(pos.device_id, str):
            raise UndecodableMessage("tenant_id and device_id must be strings")
        return pos


class StopEta(TypedDict):
    """The ETA of one remaining stop of the route (docs/eta.md)."""

    visitId: str
    etaSeconds: float
    eta: str  # fixTime + etaSeconds, ISO-8601


class EnrichedMessage(TypedDict):
    """The JSON of ``gps.positions.enriched`` (key: driver id), also Redis's latest position
    of a driver and the socket's ``position:update``: written by
    ``ingest.writers.EnrichedPosition.to_message``, read by the live feed
    (``api.live.batching``) and the live queries (``api.records.latest``).

    A new field is one line here, ``NotRequired[...]`` (messages already in Kafka and Redis
    lack it), set by ``to_message``; readers that pass the message on need no change.
    """

    schema: int
    tenantId: str
    driverId: str
    driverName: str
    deviceId: str
    fixTime: str  # ISO-8601 UTC with milliseconds (geo.timestamps.iso_ms)
    fixTimeMs: int
    receivedAt: str
    lat: float
    lon: float
    speed: float | None  # km/h
    course: float | None
    altitude: float | None
    accuracy: float | None
    valid: bool
    protocol: str
    h3Cell: str
    attributes: dict[str, Any]
    routeId: str | None
    nextVisitId: str | None
    nextCustomerId: int | None
    nextCustomerName: str | None
    distanceToNextM: float | None
    etaSeconds: float | None
    eta: str | None  # fixTime + etaSeconds, ISO-8601
    geofenceId: int | None
    # every remaining stop of the route in visiting order, the next one first (learned ETA)
    stopEtas: NotRequired[list[StopEta]]


def parse_enriched(data: bytes | str) -> EnrichedMessage:
    """Parse a ``gps.positions.enriched`` value (or a Redis latest position); raise
    UndecodableMessage unless it names a tenant, a driver and a point."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UndecodableMessage("not JSON") from exc
    if not isinstance(msg, dict):
        raise UndecodableMessage("not an object")
    tenant, driver, route = msg.get("tenantId"), msg.get("driverId"), msg.get("routeId")
    lat, lon = msg.get("lat"), msg.get("lon")
    if not isinstance(tenant, str) or not tenant or not isinstance(driver, str) or not driver:
        raise UndecodableMessage("tenantId and driverId are required")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        raise UndecodableMessage("lat and lon are required")
    if route is not None and not isinstance(route, str):
        raise UndecodableMessage("routeId must be a string")
    return cast(EnrichedMessage, msg)


def knots_to_kmh(knots: float) -> float:
    """Convert Traccar's and OsmAnd's knots to km/h (done once, at the edge)."""
    return knots * KNOTS_TO_KMH


@dataclass(slots=True)
class Fix:
    """A fix parsed from a device or Traccar, before the device is authenticated to a tenant."""

    device_id: str
    fix_time_ms: int
    lat: float
    lon: float
    speed_kmh: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    valid: bool = True
    protocol: str = "unknown"
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_position(self, tenant_id: str, received_ms: int) -> Position:
        """Attach the tenant the device belongs to and the receive time."""
        # positionally, in Position's field order: keywords cost a third more, once per fix
        return Position(
            tenant_id,
            self.device_id,
            self.fix_time_ms,
            received_ms,
            self.lat,
            self.lon,
            self.speed_kmh,
            self.course,
            self.altitude,
            self.accuracy,
            self.valid,
            self.protocol,
            self.attributes,
        )
