"""The arrival/departure state machine on noisy GPS: one arrival, one departure, no flapping."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geo.geofence_state import (
    GeofenceRules,
    State,
    Track,
    Transition,
    Zone,
    classify,
    is_inside,
    step,
)

RULES = GeofenceRules()
RADIUS = 100.0


def run(fixes: list[tuple[int, float, float]], accuracy: float = 12.0) -> list[Transition]:
    """Feed (t_ms, x, y) fixes around a circular geofence at the origin; return transitions."""
    track = Track()
    out: list[Transition] = []
    for t, x, y in fixes:
        distance = max(0.0, math.hypot(x, y) - RADIUS)
        track, tr = step(track, t, classify(distance, accuracy, RULES))
        out += tr
    return out


def drive_stop_leave(
    rng: random.Random, sigma: float
) -> tuple[list[tuple[int, float, float]], int, int]:
    """Approach from 600 m at 10 m/s, stay 3-8 min near the centre, leave; 1 fix per 2 s."""
    fixes = []
    t = 0
    true_enter = true_exit = -1
    x = -600.0
    stay_s = rng.randint(180, 480)
    while x < -20:  # approach
        if true_enter < 0 and abs(x) <= RADIUS:
            true_enter = t
        fixes.append((t * 1000, x + rng.gauss(0, sigma), rng.gauss(0, sigma)))
        x += 20.0
        t += 2
    for _ in range(stay_s // 2):  # parked
        fixes.append((t * 1000, -20 + rng.gauss(0, sigma), rng.gauss(0, sigma)))
        t += 2
    x = -20.0
    while x < 600:  # leave
        if true_exit < 0 and abs(x) > RADIUS:
            true_exit = t
        fixes.append((t * 1000, x + rng.gauss(0, sigma), rng.gauss(0, sigma)))
        x += 20.0
        t += 2
    return fixes, true_enter * 1000, true_exit * 1000


@pytest.mark.parametrize("sigma", [10.0, 15.0])
def test_a_stay_gives_exactly_one_arrival_and_one_departure(sigma: float) -> None:
    rng = random.Random(42)
    for _ in range(300):
        fixes, enter_ms, exit_ms = drive_stop_leave(rng, sigma)
        tr = run(fixes)
        assert [t.kind for t in tr] == ["enter", "exit"], tr
        assert abs(tr[0].at_ms - enter_ms) <= 12_000
        assert abs(tr[1].at_ms - exit_ms) <= 12_000
        assert not any(t.passed for t in tr)


@pytest.mark.parametrize("offset", [-10.0, -5.0, 0.0, 5.0, 10.0, 20.0, 60.0])
def test_parked_at_the_edge_for_an_hour_never_flaps(offset: float) -> None:
    """σ 15 m, one fix every 5 s for an hour, 50 different noise draws per offset."""
    for seed in range(50):
        rng = random.Random(seed)
        r = RADIUS + offset
        fixes = [(i * 5000, r + rng.gauss(0, 15), rng.gauss(0, 15)) for i in range(720)]
        assert len(run(fixes)) <= 1, seed  # at most the one arrival, never enter/exit/enter


def test_a_fast_pass_between_two_fixes_is_seen() -> None:
    track = Track()
    track, tr = step(track, 0, Zone.FAR)
    assert tr == []
    track, tr = step(track, 10_000, Zone.FAR, crossed_at_ms=(4_000, 6_000))
    assert tr == [Transition("enter", 4_000, True), Transition("exit", 6_000, True)]
    assert track.state == State.OUTSIDE


def test_late_and_repeated_fixes_change_nothing() -> None:
    track = Track()
    for t in (0, 2_000, 4_000):
        track, _ = step(track, t, Zone.INSIDE)
    assert is_inside(track) and track.entered_ms == 0
    before = track
    for late in (1_000, 4_000, 3_000):
        track, tr = step(track, late, Zone.FAR)
        assert tr == [] and track == before


def test_edge_fixes_never_confirm_and_cancel_once_they_outnumber_the_evidence() -> None:
    track, _ = step(Track(), 0, Zone.INSIDE)
    track, _ = step(track, 1000, Zone.INSIDE)
    track, tr = step(track, 2000, Zone.EDGE)
    assert tr == [] and track.state == State.ENTERING  # one doubt among two proofs: wait
    track, tr = step(track, 3000, Zone.EDGE)
    assert tr == [] and track.state == State.ENTERING
    track, tr = step(track, 4000, Zone.EDGE)
    assert tr == [] and track.state == State.OUTSIDE  # more doubt than proof: cancelled


def test_classification_uses_accuracy_and_the_hysteresis_band() -> None:
    assert classify(0.0, None, RULES) == Zone.INSIDE
    assert classify(4.0, 12.0, RULES) == Zone.INSIDE  # within the fix's accuracy
    assert classify(4.0, 3.0, RULES) == Zone.EDGE
    assert classify(8.0, 12.0, RULES) == Zone.EDGE  # beyond the enter tolerance
    assert classify(31.0, 0.0, RULES) == Zone.FAR
    assert classify(31.0, 20.0, RULES) == Zone.EDGE  # imprecise fixes need more distance
    assert classify(10_000.0, 5_000.0, RULES) == Zone.FAR


@given(st.lists(st.tuples(st.integers(0, 10_000_000), st.sampled_from(list(Zone))), max_size=200))
def test_transitions_alternate_and_time_never_goes_back(fixes: list[tuple[int, Zone]]) -> None:
    track = Track()
    kinds: list[str] = []
    for t, zone in fixes:
        track, tr = step(track, t, zone)
        kinds += [x.kind for x in tr]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    if kinds:
        assert kinds[0] == "enter"
