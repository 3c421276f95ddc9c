"""Arrival and departure at a geofence: a per (driver, geofence) state machine.

GPS noise (σ 10–15 m) makes a single fix near the edge worthless: Traccar compares one fix
with the previous one and flaps. Here a fix is classified against the polygon with a
hysteresis band, and a state changes only after enough evidence:

* ``inside``  — the fix is in the polygon, or within ``min(accuracy, enter_tolerance_m)`` of it;
* ``far``     — farther than ``exit_margin_m`` (+ part of the fix's accuracy) outside it;
* ``edge``    — in between: it confirms nothing and cancels nothing.

Entering is confirmed after ``enter_min_fixes`` inside fixes, or ``enter_min_s`` seconds of
inside fixes (at least two); it is dated at the first inside fix. Leaving is confirmed after
``exit_min_fixes`` far fixes spanning ``exit_min_s`` seconds; it is dated at the first far
fix. A segment between two fixes that crosses a polygon while both ends are outside is a
*pass*: an enter and an exit at the interpolated times, which is how a fast drive through a
small geofence is seen. Fixes not newer than the last one seen change nothing (late data
never moves state backwards).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Zone(StrEnum):
    INSIDE = "inside"
    EDGE = "edge"
    FAR = "far"


class State(StrEnum):
    OUTSIDE = "outside"
    ENTERING = "entering"
    INSIDE = "inside"
    LEAVING = "leaving"


@dataclass(frozen=True, slots=True)
class GeofenceRules:
    """Thresholds of the detector (settings: FLEETPULSE_GEOFENCE__*)."""

    enter_tolerance_m: float = 5.0
    exit_margin_m: float = 30.0
    # A fix is "far" beyond exit_margin_m + far_accuracy_factor × its accuracy.
    far_accuracy_factor: float = 2.0
    enter_min_fixes: int = 3
    enter_min_s: float = 15.0
    exit_min_fixes: int = 3
    exit_min_s: float = 15.0
    max_accuracy_m: float = 100.0  # fixes less precise than this are ignored


DEFAULT_RULES = GeofenceRules()


@dataclass(frozen=True, slots=True)
class Track:
    """The persisted state of one (driver, geofence) pair."""

    state: State = State.OUTSIDE
    since_ms: int = 0  # first fix of the current state (or of the pending change)
    last_fix_ms: int = -1
    fixes: int = 0  # fixes supporting the pending change (entering / leaving)
    doubtful: int = 0  # edge fixes seen while the change is pending
    entered_ms: int | None = None  # confirmed entry time while inside / leaving


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str  # "enter" | "exit"
    at_ms: int
    passed: bool = False  # a pass between two fixes, not a stay


def far_distance_m(accuracy_m: float | None, rules: GeofenceRules) -> float:
    """Beyond this distance from the polygon a fix with this accuracy is FAR."""
    acc = min(accuracy_m or 0.0, rules.max_accuracy_m)
    return rules.exit_margin_m + rules.far_accuracy_factor * acc


def classify(distance_m: float, accuracy_m: float | None, rules: GeofenceRules) -> Zone:
    """Classify a fix by its distance to the polygon (0 inside) and its accuracy."""
    acc = min(accuracy_m or 0.0, rules.max_accuracy_m)
    if distance_m <= min(acc, rules.enter_tolerance_m) or distance_m == 0.0:
        return Zone.INSIDE
    if distance_m > far_distance_m(accuracy_m, rules):
        return Zone.FAR
    return Zone.EDGE


def step(
    track: Track,
    fix_ms: int,
    zone: Zone,
    rules: GeofenceRules = DEFAULT_RULES,
    *,
    crossed_at_ms: tuple[int, int] | None = None,
) -> tuple[Track, list[Transition]]:
    """Advance the state machine by one fix; return the new track and confirmed transitions.

    ``crossed_at_ms`` is (enter, exit) time of a segment from the previous fix to this one
    that crossed the polygon while both ends were outside (a pass).
    """
    if fix_ms <= track.last_fix_ms:
        return track, []
    out: list[Transition] = []
    # Every fix of every engaged geofence passes here: plain constructors (fields in order:
    # state, since_ms, last_fix_ms, fixes, doubtful, entered_ms), not replace(), at 3x the cost.
    t = Track(track.state, track.since_ms, fix_ms, track.fixes, track.doubtful, track.entered_ms)
    if (
        t.state in (State.OUTSIDE, State.ENTERING)
        and crossed_at_ms is not None
        and zone == Zone.FAR
    ):
        out += [
            Transition("enter", crossed_at_ms[0], True),
            Transition("exit", crossed_at_ms[1], True),
        ]
        return Track(State.OUTSIDE, fix_ms, fix_ms, 0, t.doubtful, None), out

    if t.state == State.OUTSIDE:
        if zone == Zone.INSIDE:
            t = Track(State.ENTERING, fix_ms, fix_ms, 1, 0, t.entered_ms)
            t, out = _maybe_confirm_enter(t, fix_ms, rules)
    elif t.state == State.ENTERING:
        if zone == Zone.INSIDE:
            t = Track(t.state, t.since_ms, fix_ms, t.fixes + 1, t.doubtful, t.entered_ms)
            t, out = _maybe_confirm_enter(t, fix_ms, rules)
        elif zone == Zone.FAR or t.doubtful + 1 > t.fixes:
            t = Track(State.OUTSIDE, fix_ms, fix_ms, 0, 0, t.entered_ms)
        else:
            t = Track(t.state, t.since_ms, fix_ms, t.fixes, t.doubtful + 1, t.entered_ms)
    elif t.state == State.INSIDE:
        if zone == Zone.FAR:
            t = Track(State.LEAVING, fix_ms, fix_ms, 1, 0, t.entered_ms)
            t, out = _maybe_confirm_exit(t, fix_ms, rules)
    elif t.state == State.LEAVING:
        if zone == Zone.FAR:
            t = Track(t.state, t.since_ms, fix_ms, t.fixes + 1, t.doubtful, t.entered_ms)
            t, out = _maybe_confirm_exit(t, fix_ms, rules)
        elif zone == Zone.INSIDE or t.doubtful + 1 > t.fixes:
            # Back inside, or as many doubtful fixes as far ones: a parked driver's noise.
            t = Track(State.INSIDE, t.since_ms, fix_ms, 0, 0, t.entered_ms)
        else:
            t = Track(t.state, t.since_ms, fix_ms, t.fixes, t.doubtful + 1, t.entered_ms)
    return t, out


def _maybe_confirm_enter(
    t: Track, fix_ms: int, rules: GeofenceRules
) -> tuple[Track, list[Transition]]:
    long_enough = fix_ms - t.since_ms >= rules.enter_min_s * 1000 and t.fixes >= 2
    if t.fixes >= rules.enter_min_fixes or long_enough:
        return replace(t, state=State.INSIDE, entered_ms=t.since_ms, fixes=0, doubtful=0), [
            Transition("enter", t.since_ms)
        ]
    return t, []


def _maybe_confirm_exit(
    t: Track, fix_ms: int, rules: GeofenceRules
) -> tuple[Track, list[Transition]]:
    if t.fixes >= rules.exit_min_fixes and fix_ms - t.since_ms >= rules.exit_min_s * 1000:
        exit_at = t.since_ms
        return replace(
            t, state=State.OUTSIDE, since_ms=exit_at, fixes=0, doubtful=0, entered_ms=None
        ), [Transition("exit", exit_at)]
    return t, []


def is_inside(track: Track) -> bool:
    """True while a confirmed stay lasts (inside, or leaving not yet confirmed)."""
    return track.state in (State.INSIDE, State.LEAVING)
