"""Stored positions as the REST routes render them (the reads are ``analytics``')."""

from __future__ import annotations

from typing import Any

import asyncpg

from geo.timestamps import iso_ms


def position_json(r: asyncpg.Record) -> dict[str, Any]:
    """Render a positions row: time to the millisecond, the H3 cell in hex."""
    return {
        "time": iso_ms(int(r["fix_time"].timestamp() * 1000)),
        "lat": r["lat"],
        "lon": r["lon"],
        "speed": r["speed_kmh"],
        "course": r["course"],
        "altitude": r["altitude"],
        "accuracy": r["accuracy"],
        "valid": r["valid"],
        "h3Cell": format(r["h3_cell"], "x"),
    }
