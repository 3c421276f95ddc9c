"""Fix times as every message and response writes them: ISO-8601 UTC with milliseconds.

Here (pure, no I/O) so that the write path and the api format times the same way without
the api reaching into the write path's validation for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """Return epoch milliseconds as an ISO-8601 UTC string (``…T05:00:00.123+00:00``)."""
    # Two or three of these per position on the enrichment path: formatting each second once
    # costs a quarter of a datetime per call.
    seconds, millis = divmod(int(ms), 1000)
    return f"{_iso_second(seconds)}.{millis:03d}+00:00"


@lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()[:19]


def ms_to_datetime(ms: int) -> datetime:
    """Return epoch milliseconds as an aware UTC datetime, exactly."""
    # integer microseconds: no float rounding, and half the time of fromtimestamp(ms / 1000)
    return EPOCH + timedelta(0, 0, ms * 1000)
