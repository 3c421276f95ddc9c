"""The planned-visit lifecycle: which status may follow which, and who may cause it.

``pending → arrived → departed`` happen automatically from geofence arrival/departure (the
enrichment worker); the others are set through the API. Terminal states never change.
"""

from __future__ import annotations

from typing import Literal

VisitStatus = Literal[
    "pending",
    "arrived",
    "in_progress",
    "departed",
    "completed",
    "skipped",
    "failed",
    "cancelled",
]

TERMINAL: frozenset[str] = frozenset({"completed", "skipped", "failed", "cancelled"})

ALLOWED: dict[str, frozenset[str]] = {
    "pending": frozenset({"arrived", "in_progress", "skipped", "failed", "cancelled"}),
    "arrived": frozenset({"in_progress", "departed", "completed", "skipped", "failed"}),
    "in_progress": frozenset({"departed", "completed", "failed"}),
    # Left the geofence: can still be confirmed done (or not) afterwards, or come back.
    "departed": frozenset({"arrived", "completed", "failed", "skipped"}),
    "completed": frozenset(),
    "skipped": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def allowed_next(status: str) -> frozenset[str]:
    """Return the statuses that may follow status (empty for terminal or unknown ones)."""
    return ALLOWED.get(status, frozenset())
