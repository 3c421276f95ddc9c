"""Parsing of the batch endpoint's body: NDJSON or a JSON array of positions, line by line.

Each line (or array element) is parsed on its own, so one bad line never spoils the others.
A line is either our own schema::

    {"deviceId": "DEV001", "fixTime": "2026-02-07T12:00:00Z" | 1770465600000,
     "lat": 40.713, "lon": -74.0055, "speed": 18.5, "course": 90, "altitude": 12,
     "accuracy": 8, "valid": true, "protocol": "gateway", "attributes": {...}}

(``speed`` in km/h; ``fixTime`` ISO-8601 — a naive time is UTC — or epoch milliseconds;
only ``deviceId``, ``fixTime``, ``lat`` and ``lon`` are required; unknown fields are ignored),
or a Traccar position as the webhook accepts it: a ``{"position", "device"}`` forward body,
or a Traccar position object with ``uniqueId`` / ``attributes.uniqueId`` (speed in knots).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ingest.errors import InvalidPosition
from ingest.model import Fix
from ingest.osmand import parse_timestamp
from ingest.traccar import parse_positions_body
from ingest.validation import MAX_SPEED_KMH, check_coordinates, check_optional_number, json_number

DEFAULT_PROTOCOL = "batch"
_MAX_MS = 32_503_680_000_000  # year 3000


class BatchTooLarge(InvalidPosition):
    """More lines than the configured maximum; the whole request is refused."""

    code = "too_many_positions"


# not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, and
# every line of every batch builds one
@dataclass(slots=True)
class Line:
    """One line of a batch: its 1-based number and either a fix or why it was refused."""

    number: int
    fix: Fix | None = None
    error: InvalidPosition | None = None


def split_ndjson(body: bytes, *, max_lines: int) -> list[Line]:
    """Parse an NDJSON body; blank lines are skipped but still counted for line numbers."""
    lines: list[Line] = []
    count = 0
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        count += 1
        if count > max_lines:
            raise BatchTooLarge(f"more than {max_lines} positions in one batch")
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            lines.append(Line(number, error=InvalidPosition(f"line is not valid JSON: {exc}")))
            continue
        lines.append(parse_line(number, item))
    return lines


def split_json_array(body: bytes, *, max_lines: int) -> list[Line]:
    """Parse a JSON array body; raise InvalidPosition if the body itself is not an array."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPosition(f"body is not valid JSON: {exc}") from exc
    if not isinstance(items, list):
        raise InvalidPosition("a JSON batch body must be an array of positions")
    if len(items) > max_lines:
        raise BatchTooLarge(f"more than {max_lines} positions in one batch")
    return [parse_line(number, item) for number, item in enumerate(items, start=1)]


def parse_line(number: int, item: Any) -> Line:
    """Parse one decoded line into a Line carrying its fix or its error."""
    try:
        return Line(number, fix=parse_item(item))
    except InvalidPosition as exc:
        return Line(number, error=exc)


def parse_item(item: Any) -> Fix:
    """One position in our schema or Traccar's; raise InvalidPosition otherwise."""
    if not isinstance(item, dict):
        raise InvalidPosition("a line must be a JSON object")
    if "position" in item or "latitude" in item:
        [fix] = parse_positions_body(item)
        return fix
    device = item.get("deviceId")
    if not isinstance(device, str) or not 0 < len(device) <= 128:
        raise InvalidPosition("deviceId must be a string of 1..128 characters")
    lat, lon = json_number(item, "lat"), json_number(item, "lon")
    if lat is None or lon is None:
        raise InvalidPosition("lat and lon are required")
    check_coordinates(lat, lon)
    valid = item.get("valid", True)
    if not isinstance(valid, bool):
        raise InvalidPosition("valid must be true or false")
    protocol = item.get("protocol", DEFAULT_PROTOCOL)
    if not isinstance(protocol, str) or not 0 < len(protocol) <= 64:
        raise InvalidPosition("protocol must be a string of 1..64 characters")
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        raise InvalidPosition("attributes must be a JSON object")
    return Fix(  # positionally (Fix's field order): once per line of every batch
        device,  # device_id
        _fix_time(item.get("fixTime")),  # fix_time_ms
        lat,
        lon,
        check_optional_number("speed", json_number(item, "speed"), 0.0, MAX_SPEED_KMH),
        check_optional_number("course", json_number(item, "course"), 0.0, 360.0),
        check_optional_number("altitude", json_number(item, "altitude"), -1_000.0, 100_000.0),
        check_optional_number("accuracy", json_number(item, "accuracy"), 0.0, 1e6) or None,
        valid,
        protocol,
        attributes,
    )


def _fix_time(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= _MAX_MS:
            raise InvalidPosition("fixTime (epoch ms) is out of range")
        return value
    if isinstance(value, str) and "T" in value:
        return parse_timestamp(value)
    raise InvalidPosition("fixTime must be an ISO-8601 string or epoch milliseconds")
