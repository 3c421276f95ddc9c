"""bench/stats.py: the one percentile every benchmark reports (nearest rank)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.stats import percentile, percentile_or_none, summary


def test_nearest_rank_on_a_known_sample() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100 and percentile(values, 0.0) == 1
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
    assert percentile_or_none([], 0.5) is None
    assert summary([1.0, 2.0, 3.0, 4.0]) == {
        "p50_ms": 2.5,
        "p99_ms": 4.0,
        "max_ms": 4.0,
        "samples": 4,
    }


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_a_percentile_is_a_sample_with_enough_below_it(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    at_or_below = sum(v <= p for v in values)
    assert at_or_below >= math.ceil(q * len(values))
    assert sum(v < p for v in values) < max(1, math.ceil(q * len(values)))
