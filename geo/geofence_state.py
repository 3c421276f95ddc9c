"""Arrival and departure at a geofence: a per (driver, geofence) state machine.

GPS noise (σ 10–15 m) makes a single fix near the edge worthless: Traccar compares one fix
with the previous one and flaps. Here a fix is classified against the polygon with a
hysteresis band, and a state changes only after enough evidence:

* ``inside``  — the fix is in the polygon, or within ``min(accuracy, enter_tolerance_m)`` of it;
* ``far``     — farther than ``exit_margin_m`` (+ part of the fix's accuracy) outside it;
* ``edge``    — in between: it confirms nothing and cancels nothing.

Entering is confirmed after ``enter_min_fixes`` inside fixes, or ``enter_min_s`` seconds of
inside fixes (at least two); leaving after ``exit_min_fixes`` far fixes spanning
``exit_min_s`` seconds. A segment between two fixes that crosses a polygon while both ends are
outside is a *pass*: an enter and an exit at the interpolated times, which is how a fast drive
through a small geofence is seen. Fixes not newer than the last one seen change nothing (late
data never moves state backwards).

Both changes are dated at the estimated boundary crossing, not at the fix that confirmed them
(the first far fix of a departure is typically 50-90 m past the edge). Each fix votes for a
side of the boundary by its signed distance (negative inside; full weight from
``SIDE_CERTAIN_M``, proportional nearer), and near the edge noise puts some fixes on the wrong
side. The crossing is placed where the run of fixes splits best into "before" and "after" —
the split the votes contradict least, which is the maximum of the running vote (for the side
being left, minus for the other) — and within it at the boundary crossing interpolated on
signed distance between the two fixes around it. Noise that keeps fixes on the old side late
and noise that puts them on the new side early balance out on a steady crossing, so the
estimate is not pulled either way; equally good splits are averaged. It needs three numbers
per track (``dip``: how far the running vote is below its maximum; the crossings of the first
and of the latest best split), so it survives a restart with the rest of the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


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
# A fix this far from the boundary is on its side whatever the noise (2.7 σ at σ 15 m): its
# vote for a side is full; nearer ones vote in proportion to their distance.
SIDE_CERTAIN_M = 40.0


class Track(NamedTuple):
    """The persisted state of one (driver, geofence) pair.

    A named tuple, not a frozen dataclass: every fix of every engaged geofence builds one, and
    a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) costs ~4x more.
    """

    state: State = State.OUTSIDE
    since_ms: int = 0  # first fix of the current state (or of the pending change)
    last_fix_ms: int = -1
    fixes: int = 0  # fixes supporting the pending change (entering / leaving)
    doubtful: int = 0  # edge fixes seen while the change is pending
    entered_ms: int | None = None  # confirmed entry time while inside / leaving
    # the crossing being watched (the entry while entering, the exit while inside / leaving):
    dip: float = 0.0  # how far the running vote is below its maximum (0: at it)
    cross_first_ms: int | None = None  # crossing after the first best split (None: pending)
    cross_last_ms: int | None = None  # ... after the latest equally good one


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str  # "enter" | "exit"
    at_ms: int
    passed: bool = False  # a pass between two fixes, not a stay


def far_distance_m(accuracy_m: float | None, rules: GeofenceRules) -> float:
    """Beyond this distance from the polygon a fix with this accuracy is FAR."""
    acc = min(accuracy_m or 0.0, rules.max_accuracy_m)
    return rules.exit_margin_m + rules.far_accuracy_factor * acc


def inside_distance_m(accuracy_m: float | None, rules: GeofenceRules) -> float:
    """Up to this distance from the polygon (0 inside) a fix with this accuracy is INSIDE."""
    return min(accuracy_m or 0.0, rules.max_accuracy_m, rules.enter_tolerance_m)


def classify(distance_m: float, accuracy_m: float | None, rules: GeofenceRules) -> Zone:
    """Classify a fix by its distance to the polygon (0 or negative inside) and accuracy."""
    if distance_m <= inside_distance_m(accuracy_m, rules) or distance_m <= 0.0:
        return Zone.INSIDE
    if distance_m > far_distance_m(accuracy_m, rules):
        return Zone.FAR
    return Zone.EDGE


def boundary_crossing_ms(
    prev_ms: int, prev_signed_m: float | None, fix_ms: int, signed_m: float | None
) -> int:
    """When the vehicle crossed the boundary between two fixes, by signed distance.

    Signed distances are negative inside. On opposite sides: interpolated to distance 0.
    Otherwise (same side, or a distance unknown) the middle of the interval, which is
    unbiased when nothing says where in it the crossing was. No previous fix: this one.
    """
    if prev_ms < 0 or fix_ms <= prev_ms:
        return fix_ms
    if (
        prev_signed_m is not None
        and signed_m is not None
        and (prev_signed_m <= 0) != (signed_m <= 0)
    ):
        return prev_ms + round((fix_ms - prev_ms) * prev_signed_m / (prev_signed_m - signed_m))
    return (prev_ms + fix_ms) // 2


def step(
    track: Track,
    fix_ms: int,
    zone: Zone,
    rules: GeofenceRules = DEFAULT_RULES,
    *,
    crossed_at_ms: tuple[int, int] | None = None,
    side_m: float | None = None,
    prev_ms: int | None = None,
    prev_side_m: float | None = None,
) -> tuple[Track, list[Transition]]:
    """Advance the state machine by one fix; return the new track and confirmed transitions.

    ``crossed_at_ms`` is (enter, exit) time of a segment from the previous fix to this one
    that crossed the polygon while both ends were outside (a pass). ``side_m``: the fix's
    signed distance to the boundary, negative inside (None: unknown, its zone says the side).
    ``prev_ms`` and ``prev_side_m``: the driver's previous fix (default: this track's last
    one, distance unknown), from which a crossing just before this fix is interpolated.
    """
    if fix_ms <= track.last_fix_ms:
        return track, []
    out: list[Transition] = []
    if side_m is None:
        vote = -1.0 if zone is Zone.INSIDE else 1.0  # positive: outside
    else:
        vote = max(-1.0, min(1.0, side_m / SIDE_CERTAIN_M))
    if prev_ms is None:
        prev_ms = track.last_fix_ms
    state = track.state
    if state in (State.OUTSIDE, State.ENTERING) and crossed_at_ms is not None and zone == Zone.FAR:
        out += [
            Transition("enter", crossed_at_ms[0], True),
            Transition("exit", crossed_at_ms[1], True),
        ]
        return Track(State.OUTSIDE, fix_ms, fix_ms, 0, track.doubtful, None), out

    # Every fix of every engaged geofence passes here: plain constructors (fields in order:
    # state, since_ms, last_fix_ms, fixes, doubtful, entered_ms, dip, cross_first_ms,
    # cross_last_ms), not _replace(), and the crossing interpolated only when it is needed.
    if state == State.OUTSIDE:
        if zone == Zone.INSIDE:  # the split before this fix is the best so far, pending
            crossing = (
                boundary_crossing_ms(prev_ms, prev_side_m, fix_ms, side_m) if vote <= 0 else 0
            )
            dip, first, last = _watch(0.0, None, None, vote, crossing)
            t = Track(State.ENTERING, fix_ms, fix_ms, 1, 0, track.entered_ms, dip, first, last)
            return _maybe_confirm_enter(t, fix_ms, rules)
        t = Track(state, track.since_ms, fix_ms, track.fixes, track.doubtful, track.entered_ms)
        return t, out
    # entering: watching the entry (leaving the outside); inside / leaving: the exit
    old_side = vote if state == State.ENTERING else -vote
    crossing = (
        boundary_crossing_ms(prev_ms, prev_side_m, fix_ms, side_m)
        if old_side <= 0 and track.dip == 0
        else 0
    )
    dip, first, last = _watch(
        track.dip, track.cross_first_ms, track.cross_last_ms, old_side, crossing
    )
    if state == State.ENTERING:
        if zone == Zone.INSIDE:
            t = Track(
                state, track.since_ms, fix_ms, track.fixes + 1, track.doubtful, track.entered_ms,
                dip, first, last,
            )  # fmt: skip
            return _maybe_confirm_enter(t, fix_ms, rules)
        if zone == Zone.FAR or track.doubtful + 1 > track.fixes:
            return Track(State.OUTSIDE, fix_ms, fix_ms, 0, 0, track.entered_ms), out
        t = Track(
            state, track.since_ms, fix_ms, track.fixes, track.doubtful + 1, track.entered_ms,
            dip, first, last,
        )  # fmt: skip
    elif state == State.INSIDE:
        if zone == Zone.FAR:
            t = Track(State.LEAVING, fix_ms, fix_ms, 1, 0, track.entered_ms, dip, first, last)
            return _maybe_confirm_exit(t, fix_ms, rules)
        t = Track(state, track.since_ms, fix_ms, 0, 0, track.entered_ms, dip, first, last)
    else:  # leaving
        if zone == Zone.FAR:
            t = Track(
                state, track.since_ms, fix_ms, track.fixes + 1, track.doubtful, track.entered_ms,
                dip, first, last,
            )  # fmt: skip
            return _maybe_confirm_exit(t, fix_ms, rules)
        if zone == Zone.INSIDE or track.doubtful + 1 > track.fixes:
            # Back inside, or as many doubtful fixes as far ones: a parked driver's noise.
            t = Track(
                State.INSIDE, track.since_ms, fix_ms, 0, 0, track.entered_ms, dip, first, last
            )
        else:
            t = Track(
                state, track.since_ms, fix_ms, track.fixes, track.doubtful + 1, track.entered_ms,
                dip, first, last,
            )  # fmt: skip
    return t, out


def _watch(
    dip: float, first: int | None, last: int | None, old_side: float, crossing_ms: int
) -> tuple[float, int | None, int | None]:
    """Count one fix's vote (positive: for the side being left) into the crossing estimate."""
    if old_side > 0:
        below = dip - old_side
        if below < 0:  # a new best split, after this fix: where, the next fix will tell
            return 0.0, None, None
        if below == 0:  # as good as the best one: its crossing is pending too
            return 0.0, first, None
        return below, first, last
    if dip == 0:  # the pending split is between the previous fix and this one
        return -old_side, crossing_ms if first is None else first, crossing_ms
    return dip - old_side, first, last


def _crossing_estimate(t: Track) -> int | None:
    if t.cross_first_ms is None:
        return None
    last = t.cross_first_ms if t.cross_last_ms is None else t.cross_last_ms
    return (t.cross_first_ms + last) // 2


def _maybe_confirm_enter(
    t: Track, fix_ms: int, rules: GeofenceRules
) -> tuple[Track, list[Transition]]:
    long_enough = fix_ms - t.since_ms >= rules.enter_min_s * 1000 and t.fixes >= 2
    if t.fixes >= rules.enter_min_fixes or long_enough:
        crossed = _crossing_estimate(t)
        # no crossing seen (every fix within the tolerance but outside): the first inside fix
        entered = t.since_ms if crossed is None else min(crossed, fix_ms)
        # from here the exit is watched: this fix is the best split so far
        return Track(State.INSIDE, t.since_ms, fix_ms, 0, 0, entered), [
            Transition("enter", entered)
        ]
    return t, []


def _maybe_confirm_exit(
    t: Track, fix_ms: int, rules: GeofenceRules
) -> tuple[Track, list[Transition]]:
    if t.fixes >= rules.exit_min_fixes and fix_ms - t.since_ms >= rules.exit_min_s * 1000:
        crossed = _crossing_estimate(t)
        # never before the entry, never after the first far fix
        exit_at = t.since_ms if crossed is None else min(crossed, t.since_ms)
        if t.entered_ms is not None:
            exit_at = max(exit_at, t.entered_ms)
        return Track(State.OUTSIDE, exit_at, fix_ms, 0, 0, None), [Transition("exit", exit_at)]
    return t, []


def is_inside(track: Track) -> bool:
    """True while a confirmed stay lasts (inside, or leaving not yet confirmed)."""
    return track.state in (State.INSIDE, State.LEAVING)
