"""Parsing of what a Traccar server forwards to us (see docs/ingest.md).

Accepted bodies on ``POST /api/traccar/positions``:

* Traccar's JSON forwarder: ``{"position": {...}, "device": {...}}`` (one position);
* the seed system's array of Traccar positions (device unique id in ``attributes.uniqueId``
  or a top-level ``uniqueId``), or one such object.

And on ``GET /api/traccar/positions``: the query string of Traccar's URL forwarder
(``PositionForwarderUrl``, the default ``forward.type``), see :func:`parse_url_params`.

Speeds arrive in knots and leave as km/h. Unknown fields are ignored, never fatal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
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
    when = pos.fixTime or pos.deviceTime
    if when is None:
        raise InvalidPosition("missing fixTime")
    try:
        fix_ms = parse_iso_time(when)
    except OverflowError as exc:
        raise InvalidPosition(f"time {when[:40]!r} is out of range") from exc
    return _build(
        unique_id,
        fix_ms,
        pos.latitude,
        pos.longitude,
        speed_kn=pos.speed,
        course=pos.course,
        altitude=pos.altitude,
        accuracy=pos.accuracy,
        valid=pos.valid,
        protocol=pos.protocol,
        device_id=pos.deviceId,
        attributes=dict(pos.attributes),
    )


def _build(
    unique_id: str,
    fix_ms: int,
    lat: float,
    lon: float,
    *,
    speed_kn: float | None,
    course: float | None,
    altitude: float | None,
    accuracy: float | None,
    valid: bool,
    protocol: str | None,
    device_id: int | None,
    attributes: dict[str, Any],
) -> Fix:
    """The checks and conversions both forwarder types share (knots -> km/h, once)."""
    check_coordinates(lat, lon)
    speed_kn = check_optional_number("speed", speed_kn, 0.0, MAX_SPEED_KMH / 1.852)
    if device_id is not None:
        attributes.setdefault("traccarDeviceId", device_id)
    return Fix(
        device_id=unique_id,
        fix_time_ms=fix_ms,
        lat=lat,
        lon=lon,
        speed_kmh=None if speed_kn is None else knots_to_kmh(speed_kn),
        course=check_optional_number("course", course, 0.0, 360.0),
        altitude=check_optional_number("altitude", altitude, -1_000.0, 100_000.0),
        accuracy=check_optional_number("accuracy", accuracy, 0.0, 1e6) or None,
        valid=valid,
        protocol=protocol or "traccar",
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


_PLACEHOLDER = re.compile(r"\{[A-Za-z]+\}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH_MS = re.compile(r"[+-]?[0-9]{1,15}")
_MAX_MS = 32_503_680_000_000  # year 3000: no device means later


def _present(params: Mapping[str, str], name: str) -> str | None:
    """A parameter's value, or None when Traccar left it unset.

    Traccar leaves ``{address}`` literally in the URL when there is no address and writes
    ``null`` for a missing value; both mean "absent".
    """
    value = params.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value or value == "null" or _PLACEHOLDER.fullmatch(value):
        return None
    return value


def _url_number(params: Mapping[str, str], name: str) -> float | None:
    value = _present(params, name)
    if value is None:
        return None
    if not _DECIMAL.fullmatch(value):
        raise InvalidPosition(f"{name}: {value[:40]!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidPosition(f"{name} is out of range")
    return number


def _url_time(params: Mapping[str, str], name: str) -> int | None:
    value = _present(params, name)
    if value is None:
        return None
    if not _EPOCH_MS.fullmatch(value) or not 0 <= int(value) <= _MAX_MS:
        raise InvalidPosition(f"{name}: {value[:40]!r} is not epoch milliseconds")
    return int(value)


def parse_url_params(params: Mapping[str, str]) -> Fix:
    """Turn the URL forwarder's query parameters into a fix; raise InvalidPosition if bad.

    ``fixTime``/``deviceTime`` are epoch milliseconds, ``speed`` knots, ``attributes`` the
    URL-decoded JSON object. Without ``latitude``/``longitude`` the ``gprmc`` sentence is
    used when present. ``name``, ``status`` and ``address`` are not stored (the JSON type
    does not store them either), so both forwarder types give the same position.
    """
    unique_id = _present(params, "uniqueId")
    if unique_id is None:
        raise InvalidPosition("missing device: no uniqueId parameter")
    if len(unique_id) > 128:
        raise InvalidPosition("uniqueId is longer than 128 characters")
    attributes: dict[str, Any] = {}
    raw_attributes = _present(params, "attributes")
    if raw_attributes is not None:
        try:
            decoded = orjson.loads(raw_attributes)
        except orjson.JSONDecodeError as exc:
            raise InvalidPosition("attributes is not URL-encoded JSON") from exc
        if not isinstance(decoded, dict):
            raise InvalidPosition("attributes must be a JSON object")
        attributes = decoded
    device_id = _present(params, "deviceId")
    traccar_id = int(device_id) if device_id and _EPOCH_MS.fullmatch(device_id) else None
    valid_text = _present(params, "valid")
    valid = True if valid_text is None else valid_text.lower() == "true"
    fix_ms = _url_time(params, "fixTime") or _url_time(params, "deviceTime")
    lat, lon = _url_number(params, "latitude"), _url_number(params, "longitude")
    speed, course = _url_number(params, "speed"), _url_number(params, "course")
    if lat is None or lon is None:
        sentence = _present(params, "gprmc")
        if sentence is None:
            raise InvalidPosition("missing latitude/longitude (and no gprmc)")
        rmc = parse_gprmc(sentence)
        lat, lon, valid = rmc.lat, rmc.lon, rmc.valid
        fix_ms = fix_ms or rmc.fix_ms
        speed = rmc.speed_kn if speed is None else speed
        course = rmc.course if course is None else course
    if fix_ms is None:
        raise InvalidPosition("missing fixTime")
    return _build(
        unique_id,
        fix_ms,
        lat,
        lon,
        speed_kn=speed,
        course=course,
        altitude=_url_number(params, "altitude"),
        accuracy=_url_number(params, "accuracy"),
        valid=valid,
        protocol=_present(params, "protocol"),
        device_id=traccar_id,
        attributes=attributes,
    )


class Rmc(BaseModel):
    fix_ms: int
    lat: float
    lon: float
    speed_kn: float | None
    course: float | None
    valid: bool


_RMC = re.compile(
    r"\$G[PNL]RMC,([0-9]{6})(\.[0-9]{1,3})?,([AV]),([0-9]{2})([0-9]{2}\.[0-9]+),([NS]),"
    r"([0-9]{3})([0-9]{2}\.[0-9]+),([EW]),([0-9.]*),([0-9.]*),([0-9]{6}),[^*]*(?:\*[0-9A-Fa-f]{2})?"
)


def parse_gprmc(sentence: str) -> Rmc:
    """Decode the ``$GPRMC`` sentence Traccar's ``{gprmc}`` placeholder writes."""
    m = _RMC.fullmatch(sentence.strip())
    if m is None:
        raise InvalidPosition("gprmc is not a $GPRMC sentence")
    hms, frac, status, lat_d, lat_m, ns, lon_d, lon_m, ew, speed, course, dmy = m.groups()
    try:
        when = datetime.strptime(dmy + hms, "%d%m%y%H%M%S").replace(tzinfo=UTC)
        lat = (int(lat_d) + float(lat_m) / 60) * (-1 if ns == "S" else 1)
        lon = (int(lon_d) + float(lon_m) / 60) * (-1 if ew == "W" else 1)
        return Rmc(
            fix_ms=int(when.timestamp() * 1000) + round(float(frac or "0") * 1000),
            lat=lat,
            lon=lon,
            speed_kn=float(speed) if speed else None,
            course=float(course) if course else None,
            valid=status == "A",
        )
    except ValueError as exc:
        raise InvalidPosition(f"gprmc: {exc}") from exc
