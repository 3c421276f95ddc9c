"""Query parameters several routes share: ISO times and dates, time windows, bboxes.

Shaped like tipg's ``bbox_query``: each parser raises its package's own exception once
(``InvalidQuery`` for analytics windows and boxes, ``InvalidArea`` for live-query boxes) or
``BadRequest`` for a malformed value, and ``api/errors.py`` maps them to a status in one
place; routes do not catch and re-raise. The parsers are plain functions called from the
route rather than ``Depends`` so that every route keeps its documented parameter order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

from analytics import queries
from analytics.errors import InvalidQuery
from api.errors import BadRequest

# The history routes' window: optional, the last 24 hours by default, at most 31 days.
MAX_HISTORY_WINDOW = timedelta(days=31)

FromQuery = Annotated[
    str | None,
    Query(alias="from", description="ISO-8601 start (inclusive)", examples=["2026-02-07T00:00Z"]),
]
ToQuery = Annotated[
    str | None, Query(description="ISO-8601 end (exclusive)", examples=["2026-02-08T00:00Z"])
]


def parse_time(name: str, value: str) -> datetime:
    """Parse an ISO-8601 time (UTC when it has no offset) in 2000..2099 or raise BadRequest."""
    try:
        return queries.as_utc(value)
    except ValueError as exc:
        raise BadRequest(
            f"{name} must be an ISO-8601 time between 2000 and 2099, got {value!r}"
        ) from exc


def parse_date(name: str, value: str) -> date:
    """Parse a YYYY-MM-DD date in 2000..2099 or raise BadRequest."""
    try:
        return queries.check_day(date.fromisoformat(value))
    except ValueError as exc:
        raise BadRequest(
            f"{name} must be a date YYYY-MM-DD between 2000 and 2099, got {value!r}"
        ) from exc


# A date taken by a model or query parameter: 422 outside 2000..2099, like any bad field.
SaneDate = Annotated[date, AfterValidator(queries.check_day)]
# The scheduled-day filter of the route and visit lists (``?date=``).
DayQuery = Annotated[SaneDate | None, Query(alias="date", examples=["2026-02-07"])]


@dataclass(frozen=True)
class ScheduleFilter:
    """The route and visit lists' filters: scheduled day, status, and (routes) a driver."""

    day: date | None
    status: str | None
    driver_id: uuid.UUID | None = None


def time_window(from_: str, to: str, max_window: timedelta) -> tuple[datetime, datetime]:
    """Return [start, end) of an analytics query; InvalidQuery unless start < end and the
    window is at most ``max_window``."""
    start, end = parse_time("from", from_), parse_time("to", to)
    queries.check_window(start, end, max_window)
    return start, end


def history_window(from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """Return [start, end) from optional ISO times (default: the last 24 h), ≤ 31 days."""
    end = parse_time("to", to) if to is not None else datetime.now(UTC)
    start = parse_time("from", from_) if from_ is not None else end - timedelta(hours=24)
    if start >= end:
        raise BadRequest("from must be before to")
    if end - start > MAX_HISTORY_WINDOW:
        raise BadRequest("the window may span at most 31 days")
    return start, end


def query_bbox(value: str) -> queries.BBox:
    """Parse the analytics routes' ``minLon,minLat,maxLon,maxLat``; InvalidQuery when it is
    malformed or out of range (400)."""
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError as exc:
        raise InvalidQuery("bbox must be four numbers: minLon,minLat,maxLon,maxLat") from exc
    if len(parts) != 4 or any(p != p for p in parts):
        raise InvalidQuery("bbox must be four numbers: minLon,minLat,maxLon,maxLat")
    bbox = (parts[0], parts[1], parts[2], parts[3])
    queries.check_bbox(bbox)
    return bbox
