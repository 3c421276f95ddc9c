"""The benchmarks' one percentile and one latency summary (nearest rank: pXX is a value that
was measured, the smallest with at least XX % of the samples at or below it)."""

from __future__ import annotations

import math
import statistics
import time


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


def reference_loop_ms(rounds: int = 5) -> float:
    """Milliseconds for a fixed single-threaded Python loop (best of ``rounds``): how fast this
    machine is at the moment of a run. On the shared 2-core machine it moved by 15 % between
    two runs a second apart, so runs are compared with this beside them."""
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        total, seen = 0.0, {}
        for i in range(1_000_000):
            total += (i * 1.0001) % 7.3
            seen[i & 1023] = total
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)
