"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    within: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll probe until check(result) holds; fail with the last result after timeout."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = await probe()
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s; last value: {last!r}")
        await asyncio.sleep(interval)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def traccar_forward(
    unique_id: str, fix_ms: int, lat: float, lon: float, speed_kn: float = 10.0
) -> dict[str, object]:
    """A body exactly as Traccar's JSON position forwarder sends it."""
    return {
        "position": {
            "id": 0,
            "attributes": {"batteryLevel": 87, "motion": True},
            "deviceId": 17,
            "protocol": "osmand",
            "serverTime": iso(fix_ms + 300),
            "deviceTime": iso(fix_ms),
            "fixTime": iso(fix_ms),
            "outdated": False,
            "valid": True,
            "latitude": lat,
            "longitude": lon,
            "altitude": 12.0,
            "speed": speed_kn,
            "course": 90.0,
            "address": None,
            "accuracy": 8.0,
            "network": None,
            "geofenceIds": None,
        },
        "device": {
            "id": 17,
            "attributes": {},
            "groupId": 0,
            "name": f"van {unique_id}",
            "uniqueId": unique_id,
            "status": "online",
            "lastUpdate": iso(fix_ms),
            "positionId": 0,
            "disabled": False,
        },
    }


def seed_array_item(unique_id: str, fix_ms: int, lat: float, lon: float) -> dict[str, object]:
    """One element of the seed system's array body."""
    t = iso(fix_ms)
    return {
        "id": 1,
        "deviceId": 1001,
        "protocol": "osmand",
        "serverTime": t,
        "deviceTime": t,
        "fixTime": t,
        "valid": True,
        "latitude": lat,
        "longitude": lon,
        "altitude": 10,
        "speed": 5,
        "course": 90,
        "accuracy": 10,
        "attributes": {"uniqueId": unique_id},
    }


async def wait_simulation_stored(conn: Any, truth: dict[str, Any]) -> int:
    """Wait (up to 2 min) until every fix a simulated run sent is in the history; return
    how many are, after 2 s more for the last batch's visit transitions."""
    from simulator.scoring import count_stored

    ids = [d["driverId"] for d in truth["drivers"]]
    stored = -1
    for _ in range(240):
        stored = await count_stored(conn, ids, truth["startMs"], truth["endMs"] + 3_600_000)
        if stored >= truth["sent"]:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # the last batch's visit transitions commit with its history
    return stored


def save_artifact(name: str, report: object) -> None:
    """Keep a score for the record in test-artifacts/ (git-ignored)."""
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / name).write_text(json.dumps(report, indent=2, default=str))
