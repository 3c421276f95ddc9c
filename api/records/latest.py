"""Drivers' latest positions (Redis) as the live queries read them: active or stale.

A driver is active while its latest fix is at most ``FLEETPULSE_LIVE__ACTIVE_WINDOW_S`` old
(the seed kept the latest position 5 minutes). ``/api/drivers/near``, ``/within`` and the
socket's ``get-active-drivers`` use this one rule.
"""

from __future__ import annotations

from typing import Any


def fix_age_s(message: dict[str, Any], now_ms: int) -> float | None:
    """Seconds since the message's fix (``fixTimeMs``), None when it has none."""
    fix = message.get("fixTimeMs")
    if not isinstance(fix, int | float) or isinstance(fix, bool):
        return None
    return round(max(0.0, (now_ms - fix) / 1000), 1)


def is_active(age_s: float | None, window_s: float) -> bool:
    """Whether a latest position of this age counts as a driver being there now."""
    return age_s is not None and age_s <= window_s
