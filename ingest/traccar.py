"""Parsing of what a Traccar server forwards to us (see docs/ingest.md).

Accepted bodies on ``POST /api/traccar/positions``:

* Traccar's JSON forwarder: ``{"position": {...}, "device": {...}}`` (one position);
* the seed system's array of Traccar positions (device unique id in ``attributes.uniqueId``
  or a top-level ``uniqueId``), or one such object.

Speeds arrive in knots and leave as km/h. Unknown fields are ignored, never fatal.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.errors import InvalidPosition
from ingest.model import Fix, knots_to_kmh
from ingest.validation import (
    MAX_SPEED_KMH,
    check_coordinates,
    check_optional_number,
    parse_iso_time,
)


class TraccarPosition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    latitude: float
    longitude: float
    fixTime: str | None = None
    deviceTime: str | None = None
    serverTime: str | None = None
    speed: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    valid: bool = True
    protocol: str | None = None
    deviceId: int | None = None
    uniqueId: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class TraccarDevice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uniqueId: str = Field(min_length=1, max_length=128)
    id: int | None = None
    name: str | None = None


class TraccarForward(BaseModel):
    model_config = ConfigDict(extra="ignore")

    position: TraccarPosition
    device: TraccarDevice


def _details(exc: ValidationError, prefix: str = "") -> list[dict[str, object]]:
    return [
        {"loc": prefix + ".".join(str(p) for p in err["loc"]), "msg": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def _fix(pos: TraccarPosition, unique_id: str | None) -> Fix:
    if not unique_id:
        raise InvalidPosition("missing device: no device.uniqueId or attributes.uniqueId")
    check_coordinates(pos.latitude, pos.longitude)
    when = pos.fixTime or pos.deviceTime
    if when is None:
        raise InvalidPosition("missing fixTime")
    speed_kn = check_optional_number("speed", pos.speed, 0.0, MAX_SPEED_KMH / 1.852)
    attributes = dict(pos.attributes)
    if pos.deviceId is not None:
        attributes.setdefault("traccarDeviceId", pos.deviceId)
    return Fix(
        device_id=unique_id,
        fix_time_ms=parse_iso_time(when),
        lat=pos.latitude,
        lon=pos.longitude,
        speed_kmh=None if speed_kn is None else knots_to_kmh(speed_kn),
        course=check_optional_number("course", pos.course, 0.0, 360.0),
        altitude=check_optional_number("altitude", pos.altitude, -1_000.0, 100_000.0),
        accuracy=check_optional_number("accuracy", pos.accuracy, 0.0, 1e6) or None,
        valid=pos.valid,
        protocol=pos.protocol or "traccar",
        attributes=attributes,
    )


def parse_positions_body(body: Any) -> list[Fix]:
    """Turn a decoded JSON body into fixes; raise InvalidPosition for anything malformed."""
    if isinstance(body, dict) and "position" in body:
        try:
            fwd = TraccarForward.model_validate(body)
        except ValidationError as exc:
            raise InvalidPosition("not a Traccar position", details=_details(exc)) from exc
        return [_fix(fwd.position, fwd.device.uniqueId)]
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidPosition("empty position list")
    fixes = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidPosition(f"item {i} is not a JSON object")
        try:
            pos = TraccarPosition.model_validate(item)
        except ValidationError as exc:
            raise InvalidPosition(
                f"item {i} is not a Traccar position", details=_details(exc, f"{i}.")
            ) from exc
        unique_id = pos.uniqueId or pos.attributes.get("uniqueId")
        try:
            fixes.append(_fix(pos, str(unique_id) if unique_id is not None else None))
        except InvalidPosition as exc:
            raise InvalidPosition(f"item {i}: {exc}") from exc
    return fixes
