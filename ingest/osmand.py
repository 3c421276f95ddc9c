"""The OsmAnd protocol as Traccar's ``OsmAndProtocolDecoder`` decodes it (see docs/receivers.md).

Pure parsing: bytes and strings in, :class:`~ingest.model.Fix` out, ``InvalidPosition`` for
anything that is not a position. No I/O; the caller passes "now" for fixes without a time.

Two shapes, chosen like Traccar does by the ``Content-Type``:

* ``application/json``: Traccar Client's background-geolocation body ``{"device_id",
  "location": {...}}`` (``location`` may also be a list: the plugin's batch sync);
* anything else: the query string, or, when the query string is empty, a form-encoded body.
  Parameters: ``id``/``deviceid``, ``lat``/``lon`` or ``location=lat,lon``, ``timestamp``
  (epoch seconds below 2147483647, else milliseconds; ISO-8601 when it contains ``T``;
  else ``yyyy-MM-dd HH:mm:ss`` read as UTC), ``speed`` (knots), ``bearing``/``heading``,
  ``altitude``, ``accuracy``, ``hdop``, ``batt``, ``charge``, ``driverUniqueId``, ``valid``,
  ``cell`` and ``wifi`` (repeatable); every other parameter becomes a typed attribute.

Where we differ from Traccar, on purpose: a request without coordinates is refused (Traccar
would reuse the device's last location; we never store a made-up or 0,0 position), and a
naive ISO time is read as UTC instead of failing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ingest.errors import InvalidPosition
from ingest.model import Fix, knots_to_kmh
from ingest.validation import MAX_SPEED_KMH, check_coordinates, check_optional_number, json_number

PROTOCOL = "osmand"
# Traccar: a numeric timestamp below Integer.MAX_VALUE is seconds, anything larger is ms.
SECONDS_LIMIT = 2_147_483_647
MAX_DEVICE_ID_LENGTH = 128
MS_PER_S = 1000
MPS_TO_KMH = 3.6

_JAVA_LONG = re.compile(r"[+-]?[0-9]{1,19}")
_JAVA_INT = re.compile(r"[+-]?[0-9]{1,10}")
# Double.parseDouble's decimal forms (no hex floats, no NaN/Infinity: never a useful value).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LOCAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Bounds of a time any device could mean (years 1970..2999), so arithmetic never overflows.
_MAX_MS = 32_503_680_000_000


def is_json_request(content_type: str | None) -> bool:
    """Whether a request's body is Traccar Client's JSON (else query or form parameters)."""
    return content_type is not None and content_type.strip().lower().startswith("application/json")


def parse_request(
    query_string: str,
    content_type: str | None,
    body: bytes,
    *,
    now_ms: int,
    json_min_accuracy_m: float = 0.0,
) -> list[Fix]:
    """Decode one OsmAnd HTTP request (GET or POST) into its fixes, as Traccar would.

    ``json_min_accuracy_m``: Traccar's ``osmand.minAccuracy`` rule for JSON bodies — a
    ``coords.accuracy`` below it is not kept (the fix is, with accuracy unknown).
    """
    if is_json_request(content_type):
        return parse_json(body, now_ms=now_ms, min_accuracy_m=json_min_accuracy_m)
    params = parse_qsl(query_string, keep_blank_values=True)
    if not params and body:
        # Traccar reads the body as US-ASCII; percent-escapes carry anything else.
        params = parse_qsl(body.decode("ascii", errors="replace"), keep_blank_values=True)
    return [parse_params(params, now_ms=now_ms)]


def java_double(name: str, value: str) -> float:
    """Parse a number the way Double.parseDouble reads a decimal; finite values only."""
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise InvalidPosition(f"{name}: {_shorten(value)!r} is not a number")
    number = float(text)
    if not math.isfinite(number):
        raise InvalidPosition(f"{name}: {_shorten(value)!r} is out of range")
    return number


def _java_int(name: str, value: str) -> int:
    text = value.strip()
    if not _JAVA_INT.fullmatch(text) or not -(2**31) <= int(text) < 2**31:
        raise InvalidPosition(f"{name}: {_shorten(value)!r} is not an integer")
    return int(text)


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def parse_timestamp(value: str) -> int:
    """Return epoch ms for an OsmAnd ``timestamp`` in any of the forms Traccar accepts."""
    text = value.strip()
    if _JAVA_LONG.fullmatch(text):
        number = int(text)
        ms = number * MS_PER_S if number < SECONDS_LIMIT else number
    elif "T" in text:
        ms = _iso_ms(text)
    elif _LOCAL_TIME.fullmatch(text):
        try:
            dt = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError as exc:
            raise InvalidPosition(f"timestamp {_shorten(value)!r} is not a date") from exc
        ms = int(dt.timestamp() * MS_PER_S)
    else:
        raise InvalidPosition(f"unreadable timestamp {_shorten(value)!r}")
    if not 0 <= ms <= _MAX_MS:
        raise InvalidPosition(f"timestamp {_shorten(value)!r} is out of range")
    return ms


def _iso_ms(text: str) -> int:
    try:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * MS_PER_S)
    except (ValueError, OverflowError) as exc:
        raise InvalidPosition(f"unreadable ISO-8601 time {_shorten(text)!r}") from exc


def typed_value(value: str) -> float | bool | str:
    """An extra parameter's value as Traccar stores it: number, true/false, else the string."""
    stripped = value.strip(" \t")
    if _DECIMAL.fullmatch(stripped):
        number = float(stripped)
        if math.isfinite(number):
            return number
    if value == "true":
        return True
    if value == "false":
        return False
    return value


def _java_boolean(value: str) -> bool:
    return value.lower() == "true"


def _check_device_id(value: str) -> str:
    if not 0 < len(value) <= MAX_DEVICE_ID_LENGTH:
        raise InvalidPosition(f"device id must be 1..{MAX_DEVICE_ID_LENGTH} characters")
    return value


def parse_params(params: Iterable[tuple[str, str]], *, now_ms: int) -> Fix:
    """Decode query or form parameters (repeatable, in order) into one fix."""
    device_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    fix_ms: int | None = None
    speed_kn: float | None = None
    course: float | None = None
    altitude: float | None = None
    accuracy: float | None = None
    valid = True
    attributes: dict[str, Any] = {}
    cells: list[dict[str, int]] = []
    wifis: list[dict[str, Any]] = []
    for key, value in params:
        if value == "":
            continue  # Traccar skips empty values
        match key:
            case "id" | "deviceid":
                device_id = _check_device_id(value)
            case "valid":
                valid = _java_boolean(value) or value == "1"
            case "timestamp":
                fix_ms = parse_timestamp(value)
            case "lat":
                lat = java_double(key, value)
            case "lon":
                lon = java_double(key, value)
            case "location":
                parts = value.split(",")
                if len(parts) < 2:
                    raise InvalidPosition("location must be 'lat,lon'")
                lat = java_double("location latitude", parts[0])
                lon = java_double("location longitude", parts[1])
            case "cell":
                cells.append(_cell(value))
            case "wifi":
                wifis.append(_wifi(value))
            case "speed":
                speed_kn = java_double(key, value)
            case "bearing" | "heading":
                course = java_double(key, value)
            case "altitude":
                altitude = java_double(key, value)
            case "accuracy":
                accuracy = java_double(key, value)
            case "hdop":
                attributes["hdop"] = java_double(key, value)
            case "batt":
                attributes["batteryLevel"] = java_double(key, value)
            case "charge":
                attributes["charge"] = _java_boolean(value)
            case "driverUniqueId":
                attributes["driverUniqueId"] = value
            case _:
                attributes[key] = typed_value(value)
    if device_id is None:
        raise InvalidPosition("missing device: no id or deviceid parameter")
    if lat is None or lon is None:
        raise InvalidPosition("not a position fix: lat and lon (or location) are required")
    if cells or wifis:
        network: dict[str, Any] = {}
        if cells:
            network["cellTowers"] = cells
        if wifis:
            network["wifiAccessPoints"] = wifis
        attributes["network"] = network
    return _fix(
        device_id=device_id,
        fix_ms=now_ms if fix_ms is None else fix_ms,
        lat=lat,
        lon=lon,
        speed_kmh=None if speed_kn is None else _speed_from_knots(speed_kn),
        course=course,
        altitude=altitude,
        accuracy=accuracy,
        valid=valid,
        attributes=attributes,
    )


def _speed_from_knots(knots: float) -> float:
    checked = check_optional_number("speed", knots, 0.0, MAX_SPEED_KMH / 1.852)
    assert checked is not None
    return knots_to_kmh(checked)


def _cell(value: str) -> dict[str, int]:
    parts = value.split(",")
    if len(parts) < 4:
        raise InvalidPosition("cell must be 'mcc,mnc,lac,cid[,rssi]'")
    cell = {
        "mobileCountryCode": _java_int("cell mcc", parts[0]),
        "mobileNetworkCode": _java_int("cell mnc", parts[1]),
        "locationAreaCode": _java_int("cell lac", parts[2]),
        "cellId": _java_int("cell cid", parts[3]),
    }
    if len(parts) > 4:
        cell["signalStrength"] = _java_int("cell rssi", parts[4])
    return cell


def _wifi(value: str) -> dict[str, Any]:
    parts = value.split(",")
    if len(parts) < 2:
        raise InvalidPosition("wifi must be 'mac,rssi'")
    return {
        "macAddress": parts[0].replace("-", ":"),
        "signalStrength": _java_int("wifi rssi", parts[1]),
    }


def _fix(
    *,
    device_id: str,
    fix_ms: int,
    lat: float,
    lon: float,
    speed_kmh: float | None,
    course: float | None,
    altitude: float | None,
    accuracy: float | None,
    valid: bool,
    attributes: dict[str, Any],
) -> Fix:
    check_coordinates(lat, lon)
    return Fix(
        device_id=device_id,
        fix_time_ms=fix_ms,
        lat=lat,
        lon=lon,
        speed_kmh=check_optional_number("speed", speed_kmh, 0.0, MAX_SPEED_KMH),
        course=check_optional_number("course", course, 0.0, 360.0),
        altitude=check_optional_number("altitude", altitude, -1_000.0, 100_000.0),
        # 0 means "unknown" in Traccar's model
        accuracy=check_optional_number("accuracy", accuracy, 0.0, 1e6) or None,
        valid=valid,
        protocol=PROTOCOL,
        attributes=attributes,
    )


# --- Traccar Client's JSON body (background-geolocation format) -----------------------------


def parse_json(body: bytes, *, now_ms: int, min_accuracy_m: float = 0.0) -> list[Fix]:
    """Decode Traccar Client's JSON body; ``location`` may be one object or a list."""
    try:
        root = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPosition(f"body is not valid JSON: {exc}") from exc
    if not isinstance(root, dict):
        raise InvalidPosition("JSON body must be an object with device_id and location")
    device_id = root.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise InvalidPosition("missing device: device_id must be a non-empty string")
    _check_device_id(device_id)
    location = root.get("location")
    locations = location if isinstance(location, list) else [location]
    if not locations:
        raise InvalidPosition("location list is empty")
    fixes = []
    for i, loc in enumerate(locations):
        try:
            fixes.append(_json_location(device_id, loc, min_accuracy_m))
        except InvalidPosition as exc:
            raise (InvalidPosition(f"location {i}: {exc}") if len(locations) > 1 else exc) from exc
    return fixes


def _json_location(device_id: str, loc: Any, min_accuracy_m: float = 0.0) -> Fix:
    if not isinstance(loc, dict):
        raise InvalidPosition("location must be an object")
    stamp = loc.get("timestamp")
    if not isinstance(stamp, str):
        raise InvalidPosition("location.timestamp must be an ISO-8601 string")
    fix_ms = _iso_ms(stamp)
    if not 0 <= fix_ms <= _MAX_MS:
        raise InvalidPosition("location.timestamp is out of range")
    coords = loc.get("coords")
    if not isinstance(coords, dict):
        raise InvalidPosition("not a position fix: location.coords is missing")
    lat, lon = json_number(coords, "latitude"), json_number(coords, "longitude")
    if lat is None or lon is None:
        raise InvalidPosition("not a position fix: coords.latitude and longitude are required")
    speed_mps = json_number(coords, "speed")
    heading = json_number(coords, "heading")
    accuracy = json_number(coords, "accuracy")
    attributes: dict[str, Any] = {}
    _copy(loc, "event", str, attributes, "event")
    _copy(loc, "is_moving", bool, attributes, "motion")
    _copy(loc, "mock", bool, attributes, "mock")
    _copy(loc, "alarm", str, attributes, "alarm")
    odometer = json_number(loc, "odometer")
    if odometer is not None:
        attributes["odometer"] = int(odometer)
    activity = loc.get("activity")
    if isinstance(activity, dict) and isinstance(activity.get("type"), str):
        attributes["activity"] = activity["type"]
    battery = loc.get("battery")
    if isinstance(battery, dict):
        level = json_number(battery, "level")
        if level is not None and level >= 0:
            attributes["batteryLevel"] = int(level * 100)
        if battery.get("is_charging") is True:
            attributes["charge"] = True
    extras = loc.get("extras")
    if isinstance(extras, dict):
        for key, value in extras.items():
            if key == "alarm" and "alarm" in attributes:
                continue
            if isinstance(value, bool | str) or (
                isinstance(value, int | float) and math.isfinite(value)
            ):
                attributes[key] = value
    return _fix(
        device_id=device_id,
        fix_ms=fix_ms,
        lat=lat,
        lon=lon,
        speed_kmh=None if speed_mps is None or speed_mps < 0 else speed_mps * MPS_TO_KMH,
        course=None if heading is None or heading < 0 else heading,
        altitude=json_number(coords, "altitude"),
        # negative: unknown; below the minimum: not kept (Traccar's osmand.minAccuracy)
        accuracy=None if accuracy is None or accuracy < max(0.0, min_accuracy_m) else accuracy,
        valid=True,
        attributes=attributes,
    )


def _copy(src: dict[str, Any], key: str, kind: type, dst: dict[str, Any], name: str) -> None:
    value = src.get(key)
    if isinstance(value, kind):
        dst[name] = value
