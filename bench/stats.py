"""The benchmarks' one percentile and one latency summary (nearest rank: pXX is a value that
was measured, the smallest with at least XX % of the samples at or below it)."""

from __future__ import annotations

import math
import statistics


def percentile(values: list[float], q: float) -> float:
    """Return the ``q`` (0..1) quantile of ``values`` by nearest rank; ValueError when empty."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def percentile_or_none(values: list[float], q: float, digits: int = 1) -> float | None:
    """``percentile`` rounded for a report; None when there are no samples."""
    return round(percentile(values, q), digits) if values else None


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of latencies in milliseconds, and how many samples."""
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "samples": len(ms),
    }
