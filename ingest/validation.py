"""Checks shared by every receiver: coordinates, times and numbers a fix may carry."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from geo.timestamps import iso_ms
from ingest.errors import FixTooOld, InvalidPosition

MAX_SPEED_KMH = 1_500.0  # faster than any delivery vehicle, slower than a corrupt value


def check_coordinates(lat: float, lon: float) -> None:
    """Reject coordinates outside WGS84 and the (0, 0) 'no fix' placeholder."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise InvalidPosition("latitude and longitude must be finite numbers")
    if not -90.0 <= lat <= 90.0:
        raise InvalidPosition(f"latitude {lat} is outside -90..90")
    if not -180.0 <= lon <= 180.0:
        raise InvalidPosition(f"longitude {lon} is outside -180..180")
    if lat == 0.0 and lon == 0.0:
        raise InvalidPosition("latitude 0, longitude 0 is a missing fix, not a position")


def check_fix_time(fix_ms: int, now_ms: int, *, max_future_s: int, max_age_s: int) -> None:
    """Reject fix times from a broken device clock: far in the future or older than retention."""
    if fix_ms > now_ms + max_future_s * 1000:
        raise InvalidPosition(f"fix time {iso_ms(fix_ms)} is too far in the future")
    if fix_ms < now_ms - max_age_s * 1000:
        raise FixTooOld(f"fix time {iso_ms(fix_ms)} is older than the history retention")


def check_storable(device_id: str, attributes: dict[str, Any]) -> None:
    """Reject text PostgreSQL cannot store (NUL), anywhere in the id or the attributes.

    Refused here with a 4xx instead of acknowledged and then dead-lettered by the worker.
    """
    stack: list[Any] = [device_id, attributes]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise InvalidPosition("text with a NUL character cannot be stored")
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def check_optional_number(name: str, value: float | None, low: float, high: float) -> float | None:
    """Return the value if it is finite and within [low, high], None if absent; else raise."""
    if value is None:
        return None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidPosition(f"{name} {value} is outside {low}..{high}")
    return value


def json_number(obj: dict[str, Any], key: str) -> float | None:
    """A JSON member that must be a finite number (not a bool) if present; None if absent."""
    value = obj.get(key)
    if value is None:
        return None
    # exact types first: six of these per position in a batch, and isinstance against a
    # union cost more than the rest of the check (bool is an int subclass: refused here)
    kind = type(value)
    if kind is not float and kind is not int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidPosition(f"{key} must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidPosition(f"{key} is out of range")
    return number


def parse_iso_time(value: str) -> int:
    """Parse ISO-8601 (Z, +00:00, +0000, with or without ms) to epoch ms; naive means UTC."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidPosition(f"unreadable time {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
