"""What a batch of positions means for each driver: geofence transitions, visits, ETA.

``MovementTracker.decide`` reads (plans, geofence states, one spatial join) and computes; it
changes no shared state. ``Decisions.apply`` writes the outcome in the caller's transaction
(geofence states, guarded visit transitions, next-stop ETA, events into the outbox), and
``Decisions.commit`` updates the in-memory runtime only after that transaction committed,
so a failed batch is simply decided again.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from geo.distance import haversine_m
from geo.eta import Pace, RouteClock, RouteRoads, stop_etas
from geo.geofence_state import (
    GeofenceRules,
    Track,
    Transition,
    Zone,
    classify,
    far_distance_m,
    inside_distance_m,
    is_inside,
    step,
)
from geo.geofence_state import State as TrackState
from geo.movement import DAY_S, FixLabel, MotionState, Relabel, step_motion
from geo.route_progress import (
    PRIOR_WEIGHT_S,
    SpeedEstimate,
    eta_seconds,
    project_points,
    remaining_along_m,
    straight_line_remaining_m,
)
from infrastructure.kafka import GPS_EVENTS, VISITS_EVENTS
from infrastructure.postgres import Conn
from infrastructure.settings import Settings
from ingest.eta_knowledge import EtaKnowledgeCache
from ingest.geofencing import Probe, TrackStore, spatial_join
from ingest.motion_labels import apply_relabels, relabel_days, restore_states
from ingest.plans import Plan, PlanCache, Stop
from ingest.visit_lifecycle import (
    ARRIVE_FROM,
    AT_STOP,
    DEPART_FROM,
    EVENT_NAMESPACE,
    OPEN,
    OutboxRow,
    VisitChange,
    add_to_outbox,
    apply_change,
    outbox_row,
)

NEVER_NEAR = Track()  # the state of a (driver, geofence) pair with no history
OUTSIDE = TrackState.OUTSIDE
# planned_visits.eta_at (what REST shows) is rewritten when the next stop's ETA moved this
# much, or this long after it was stored (another worker may have written it meanwhile):
# once per batch per driver, it was a sixth of PostgreSQL's time at 6,500 fixes/s, and the
# live feed carries every fix's ETA anyway
ETA_STORE_CHANGE_MS = 15_000
ETA_STORE_EVERY_MS = 300_000
STORED_ETA_MAX = 200_000
OFF_ROUTE_M = 500.0  # farther than this from the planned path: use the straight-line ETA
# farther than this along the route past the next stop: it lies behind (a stop passed by and
# gone back for), so its ETA is the straight line too
BEHIND_M = 500.0
# the learned ETA takes over a route when this share of its path is on known roads and
# covered by something learned (a segment, its cell or its road class)
LEARNED_MIN_SHARE = 0.5
NO_ETA = -1  # in next_eta / stored_eta: clear planned_visits.eta_at (a stop passed by)
STOP_ETAS_EVERY_MS = 30_000  # every remaining stop's ETA, per driver, at most this often
CLOCK_REBUILDS_PER_BATCH = 50  # routes whose clock a batch rebuilds after a reload, at most


class Movement(NamedTuple):
    """What enrichment adds to a position beyond driver and H3 cell."""

    route_id: str | None = None
    next_visit_id: str | None = None
    next_customer_id: int | None = None
    next_customer_name: str | None = None
    distance_to_next_m: float | None = None
    eta_s: float | None = None
    geofence_id: int | None = None
    motion: FixLabel | None = None  # None: a late or invalid fix (late ones: relabel_days)
    # (visit id, seconds to arrival) of every remaining stop, the next one first
    stop_etas: tuple[tuple[str, float], ...] = ()


class FixInput(NamedTuple):
    """The parts of an enriched position the tracker needs."""

    idx: int
    tenant_id: str
    driver_id: str
    device_id: str
    fix_ms: int
    lon: float
    lat: float
    speed_kmh: float | None
    accuracy: float | None
    valid: bool = True


@dataclass(slots=True)
class Runtime:
    """Per driver, in memory: the last fix, recent speed and progress along the route."""

    last_fix_ms: int = -1
    last_lon: float = 0.0
    last_lat: float = 0.0
    speed: SpeedEstimate = SpeedEstimate()
    route_id: str | None = None
    progress_m: float | None = None
    motion: MotionState | None = None  # trips and stops of the current UTC day so far
    pace: Pace = Pace()  # time taken against the learned profile's, lately
    stops_at_ms: int = -1  # when every remaining stop's ETA was last computed
    stops_next: str | None = None  # the next stop as of the last fix


@dataclass
class Decisions:
    """The outcome of a batch, to apply in a transaction and then commit to memory."""

    movements: dict[int, Movement] = field(default_factory=dict)
    geofence_events: list[dict[str, Any]] = field(default_factory=list)
    visit_changes: list[VisitChange] = field(default_factory=list)
    # visit -> (ETA, fix time), epoch ms: what to store in planned_visits.eta_at
    next_eta: dict[str, tuple[int, int]] = field(default_factory=dict)
    runtime: dict[str, Runtime] = field(default_factory=dict)
    tracks: list[tuple[str, int, Track]] = field(default_factory=list)
    published: list[OutboxRow] = field(default_factory=list)
    # movement labels: decisions that reach back to stored fixes, and days a late fix changed
    relabels: list[tuple[str, Relabel]] = field(default_factory=list)
    late_days: set[tuple[str, date]] = field(default_factory=set)

    async def apply(self, conn: Conn, store: TrackStore, topic: Any) -> None:
        """Write states, visit transitions, ETAs and the outbox (caller owns the transaction)."""
        for driver_id, geofence_id, track in self.tracks:
            store.put(driver_id, geofence_id, track)
        await store.flush(conn)
        outbox = [outbox_row(topic(GPS_EVENTS), ev["device_id"], ev) for ev in self.geofence_events]
        for change in self.visit_changes:
            event = await apply_change(conn, change, source="auto")
            if event is not None:
                outbox.append(outbox_row(topic(VISITS_EVENTS), change.route_id, event))
        if self.next_eta:
            await conn.execute(
                """UPDATE planned_visits v
                   SET eta_at = CASE WHEN u.ms >= 0 THEN to_timestamp(u.ms / 1000.0) END
                   FROM unnest($1::uuid[], $2::bigint[]) AS u(id, ms)
                   WHERE v.id = u.id AND v.status = 'pending'""",
                list(self.next_eta),
                [eta for eta, _ in self.next_eta.values()],
            )
        await add_to_outbox(conn, outbox)
        self.published = outbox
        # after the batch's rows are in: relabels may reach into them
        await apply_relabels(conn, self.relabels)
        if self.late_days:
            _, finals = await relabel_days(conn, self.late_days)
            for (driver_id, day), final in finals.items():
                rt = self.runtime.get(driver_id)
                current = None if rt is None or rt.motion is None else rt.motion.day
                if rt is not None and (current is None or current * DAY_S <= _day_s(day)):
                    rt.motion = final


class MovementTracker:
    """Owns the plan cache, the geofence state store and the per-driver runtime."""

    def __init__(self, settings: Settings, plans: PlanCache) -> None:
        g = settings.geofence
        self.rules = GeofenceRules(
            enter_tolerance_m=g.enter_tolerance_m,
            exit_margin_m=g.exit_margin_m,
            far_accuracy_factor=g.far_accuracy_factor,
            enter_min_fixes=g.enter_min_fixes,
            enter_min_s=g.enter_min_s,
            exit_min_fixes=g.exit_min_fixes,
            exit_min_s=g.exit_min_s,
            max_accuracy_m=g.max_accuracy_m,
        )
        self.arrival_dwell_ms = int(g.visit_arrival_dwell_s * 1000)
        self.out_of_order_dwell_ms = int(
            max(g.visit_out_of_order_dwell_s, g.visit_arrival_dwell_s) * 1000
        )
        self.planning_speed_ms = settings.enrichment.planning_speed_kmh / 3.6
        self.half_life_s = settings.enrichment.ewma_half_life_s
        self.plans = plans
        self.tracks = TrackStore()
        self.runtime: dict[str, Runtime] = {}
        self.eta = EtaKnowledgeCache(settings)
        self.eta_cfg = settings.eta
        # a route's clock for its tenant's profile, by (route line, tenant): rebuilt when the
        # knowledge reloads (its version) or the route's line changes
        self._clocks: dict[tuple[int, str], tuple[int, Any, RouteClock | None, bool]] = {}
        self._roads: dict[int, tuple[Any, Any, RouteRoads]] = {}  # a line's pieces, by line
        self._rebuilds_left = CLOCK_REBUILDS_PER_BATCH
        # planned_visits.eta_at as last stored, by visit: (ETA, fix time), epoch ms
        self.stored_eta: dict[str, tuple[int, int]] = {}

    def commit(self, decisions: Decisions) -> None:
        """After the batch's transaction committed: take its outcome into memory."""
        self.runtime.update(decisions.runtime)
        if len(self.stored_eta) > STORED_ETA_MAX:  # visits never reached are never popped
            self.stored_eta.clear()
        self.stored_eta.update(decisions.next_eta)
        for change in decisions.visit_changes:
            self.stored_eta.pop(change.visit_id, None)
            self.plans.invalidate(change.driver_id)

    def forget(self, driver_ids: set[str]) -> None:
        """After a failed transaction: reload these drivers' states from the database."""
        self.tracks.forget(driver_ids)
        for d in driver_ids:
            self.plans.invalidate(d)

    async def decide(self, conn: Conn, fixes: Sequence[FixInput]) -> Decisions:
        """Compute the batch's transitions, visit changes and ETAs (no writes)."""
        drivers = {f.driver_id for f in fixes}
        newest_day = datetime.fromtimestamp(max(f.fix_ms for f in fixes) / 1000, tz=UTC).date()
        await self.eta.refresh(conn)
        self._rebuilds_left = CLOCK_REBUILDS_PER_BATCH
        plans = await self.plans.load(conn, drivers, newest_day)
        await self.tracks.load(conn, drivers)
        by_driver: dict[str, list[FixInput]] = defaultdict(list)
        for f in fixes:
            by_driver[f.driver_id].append(f)
        runtimes = {d: _copy(self.runtime.get(d)) for d in drivers}
        if cold := {d: by_driver[d] for d in drivers if d not in self.runtime}:
            # a worker that starts or takes over mid-day continues the stored day's trips
            first = {d: min(f.fix_ms for f in items) / 1000 for d, items in cold.items()}
            for d, state in (await restore_states(conn, first)).items():
                runtimes[d].motion = state

        probes = []
        for d, items in by_driver.items():
            items.sort(key=lambda f: f.fix_ms)
            rt = runtimes[d]
            prev_ms, prev = (
                rt.last_fix_ms,
                (rt.last_lon, rt.last_lat) if rt.last_fix_ms >= 0 else None,
            )
            for f in items:
                newer = f.fix_ms > prev_ms
                probes.append(
                    Probe(
                        f.idx,
                        f.tenant_id,
                        f.lon,
                        f.lat,
                        prev if newer else None,
                        far_distance_m(f.accuracy, self.rules),
                        d,
                        inside_distance_m(f.accuracy, self.rules),
                    )
                )
                if newer:
                    prev_ms, prev = f.fix_ms, (f.lon, f.lat)
        # only the hits that can move a state machine (_decide_driver skips the others)
        engaged = [(d, g) for d in drivers for g in self.tracks.engaged(d)]
        hits: dict[int, dict[int, Any]] = defaultdict(dict)
        for h in await spatial_join(conn, probes, engaged):
            hits[h.idx][h.geofence_id] = h

        # every fix on a route, in its line's metres, for the whole batch at once
        on_route = [
            (f, line)
            for d, items in by_driver.items()
            if (line := plans[d].line) is not None and plans[d].route_id is not None
            for f in items
        ]
        xy = project_points(
            [line for _, line in on_route],
            [f.lon for f, _ in on_route],
            [f.lat for f, _ in on_route],
        )
        projected = {f.idx: p for (f, _), p in zip(on_route, xy, strict=True)}

        out = Decisions()
        for d, items in by_driver.items():
            self._decide_driver(plans[d], runtimes[d], items, hits, projected, out)
        out.runtime = runtimes
        return out

    def _decide_driver(
        self,
        plan: Plan,
        rt: Runtime,
        items: list[FixInput],
        hits: dict[int, dict[int, Any]],
        projected: dict[int, tuple[float, float]],
        out: Decisions,
    ) -> None:
        tracks = dict(self.tracks.of(plan.driver_id))
        # geofences whose state machine is not OUTSIDE: kept up to date below, so a fix
        # looks at these and its join hits, not every geofence the driver ever came near
        engaged = self.tracks.engaged(plan.driver_id)
        stops = {s.visit_id: s.status for s in plan.stops}
        if rt.route_id != plan.route_id:
            rt.route_id, rt.progress_m = plan.route_id, None
        anchor = plan.anchor  # the stop reached last: moves with this batch's arrivals
        for f in items:
            label = self._motion(rt, f, out)
            if f.fix_ms <= rt.last_fix_ms:  # late: stored, but moves no live state
                out.movements[f.idx] = Movement(route_id=plan.route_id)
                continue
            # Recent speed: the device's own (Doppler) speed when it has one, else displacement.
            # A long half-life makes it the effective speed of stop-and-go driving (lights
            # included); time spent serving a stop is not driving and does not count.
            nxt = _next_open(plan, stops, anchor)
            at_stop = nxt is not None and (
                stops[nxt.visit_id] in AT_STOP
                # parking at the stop before the arrival is confirmed is not driving either
                or (nxt.geofence_id is not None and nxt.geofence_id in engaged)
            )
            if rt.last_fix_ms >= 0 and not at_stop:
                dt = (f.fix_ms - rt.last_fix_ms) / 1000
                observed = (
                    f.speed_kmh / 3.6
                    if f.speed_kmh is not None
                    else haversine_m(rt.last_lon, rt.last_lat, f.lon, f.lat) / max(dt, 0.001)
                )
                rt.speed = rt.speed.observe(observed, dt, self.half_life_s)

            transitions: dict[int, list[Transition]] = {}
            if f.accuracy is None or f.accuracy <= self.rules.max_accuracy_m:
                near = hits.get(f.idx, {})
                for gid in engaged.union(near) if near else list(engaged):
                    hit = near.get(gid)
                    track = tracks.get(gid, NEVER_NEAR)
                    zone = classify(hit.distance_m if hit else float("inf"), f.accuracy, self.rules)
                    crossed = None
                    if hit is not None and hit.crossing is not None and rt.last_fix_ms >= 0:
                        span = f.fix_ms - rt.last_fix_ms
                        crossed = (
                            rt.last_fix_ms + int(hit.crossing[0] * span),
                            rt.last_fix_ms + int(hit.crossing[1] * span),
                        )
                    if crossed is None and zone is not Zone.INSIDE and track.state is OUTSIDE:
                        # stays outside with nothing pending: a blank track, which
                        # TrackStore.put drops; most of a fix's near geofences are these
                        continue
                    # which side of the edge this fix and the previous one are on: what
                    # arrivals and departures are dated by (the estimated edge crossing)
                    new, tr = step(
                        track,
                        f.fix_ms,
                        zone,
                        self.rules,
                        crossed_at_ms=crossed,
                        side_m=hit.signed_m if hit else None,
                        prev_ms=rt.last_fix_ms,
                        prev_side_m=hit.prev_signed_m if hit else None,
                    )
                    if new is not track:  # the same object back: a late fix
                        tracks[gid] = new
                        out.tracks.append((plan.driver_id, gid, new))
                        if new.state is OUTSIDE:
                            engaged.discard(gid)
                        else:
                            engaged.add(gid)
                    if tr:
                        transitions[gid] = tr
                        out.geofence_events += [_geofence_event(f, gid, t) for t in tr]

            anchor, nxt = self._visits(
                plan, stops, anchor, nxt, tracks, engaged, transitions, f, out
            )
            out.movements[f.idx] = self._eta(
                plan, stops, nxt, tracks, engaged, rt, f, projected.get(f.idx), out, label
            )
            rt.last_fix_ms, rt.last_lon, rt.last_lat = f.fix_ms, f.lon, f.lat

    @staticmethod
    def _motion(rt: Runtime, f: FixInput, out: Decisions) -> FixLabel | None:
        """Label the fix's movement (trips and stops) if it is valid and in order."""
        if not f.valid:
            return None
        t = f.fix_ms / 1000
        if rt.motion is not None and t <= rt.motion.t:
            out.late_days.add((f.driver_id, datetime.fromtimestamp(t, UTC).date()))
            return None
        rt.motion, label, relabel = step_motion(rt.motion, t, f.lon, f.lat, f.speed_kmh or 0.0)
        if relabel is not None:
            out.relabels.append((f.driver_id, relabel))
        return label

    def _visits(
        self,
        plan: Plan,
        stops: dict[str, str],
        anchor: str | None,
        nxt: Stop | None,
        tracks: dict[int, Track],
        engaged: set[int],
        transitions: dict[int, list[Transition]],
        f: FixInput,
        out: Decisions,
    ) -> tuple[str | None, Stop | None]:
        """Decide the fix's departures and arrival (``nxt``: the next stop before them);
        return the stop reached last and the next stop after them."""
        if plan.route_id is None:
            return anchor, nxt
        departed = False
        for stop in plan.stops if transitions else ():  # a departure is an exit transition
            status = stops[stop.visit_id]
            gid = stop.geofence_id
            if gid is None:
                continue
            # Departure from a stop being served (a pass is not a stay: ignore those).
            if status in DEPART_FROM:
                exits = [t for t in transitions.get(gid, []) if t.kind == "exit" and not t.passed]
                if exits:
                    stops[stop.visit_id] = "departed"
                    departed = True
                    out.visit_changes.append(
                        self._change(plan, stop, f, DEPART_FROM, "departed", exits[0].at_ms)
                    )
        if departed:
            nxt = _next_open(plan, stops, anchor)
        if nxt is None or stops[nxt.visit_id] != "pending":
            # nothing left, or a stop being served: no other arrival meanwhile
            return anchor, nxt
        # The next stop first; then, dwelling longer in another pending stop's geofence is
        # arriving there out of the planned order (only geofences the driver is in qualify).
        candidates = [(nxt, self.arrival_dwell_ms)]
        if len(engaged) > (nxt.geofence_id in engaged):
            candidates += [
                (s, self.out_of_order_dwell_ms)
                for s in plan.stops
                if s is not nxt and s.geofence_id in engaged and stops[s.visit_id] == "pending"
            ]
        for stop, dwell_ms in candidates:
            track = tracks.get(stop.geofence_id) if stop.geofence_id is not None else None
            if (
                track is not None
                and is_inside(track)
                and track.entered_ms is not None
                and f.fix_ms - track.entered_ms >= dwell_ms
            ):
                stops[stop.visit_id] = "arrived"
                out.visit_changes.append(
                    self._change(plan, stop, f, ARRIVE_FROM, "arrived", track.entered_ms)
                )
                return stop.visit_id, stop  # served now: nothing else was
        return anchor, nxt

    def _change(
        self, plan: Plan, stop: Any, f: FixInput, frm: tuple[str, ...], to: str, at_ms: int
    ) -> VisitChange:
        assert plan.route_id is not None
        return VisitChange(
            stop.visit_id,
            plan.route_id,
            plan.driver_id,
            f.tenant_id,
            stop.customer_id,
            stop.customer_name,
            frm,
            to,
            at_ms,
        )

    def _eta(
        self,
        plan: Plan,
        stops: dict[str, str],
        nxt: Stop | None,
        tracks: dict[int, Track],
        engaged: set[int],
        rt: Runtime,
        f: FixInput,
        xy: tuple[float, float] | None,
        out: Decisions,
        label: FixLabel | None,
    ) -> Movement:
        inside = (
            min((g for g in engaged if is_inside(tracks[g])), default=None) if engaged else None
        )
        if plan.route_id is None or nxt is None:
            return Movement(route_id=plan.route_id, geofence_id=inside, motion=label)
        index = plan.stops.index(nxt)
        serving = stops[nxt.visit_id] in AT_STOP
        clock, learned = self._clock(plan, f.tenant_id)
        along: float | None = None
        if serving:
            remaining = 0.0
            if plan.line is not None:
                along = plan.line.stop_along_m[index]
        else:
            remaining = -1.0
            if plan.line is not None and xy is not None:
                # How far the vehicle can have gone since the last fix bounds the search.
                dt_s = (f.fix_ms - rt.last_fix_ms) / 1000 if rt.last_fix_ms >= 0 else 60.0
                found, off = plan.line.locate_xy(
                    *xy, near_m=rt.progress_m, window_m=max(150.0, dt_s * 40.0)
                )
                if off <= OFF_ROUTE_M:
                    if clock is not None and learned:
                        self._observe_pace(clock, rt, found, f.fix_ms)
                    rt.progress_m = found
                    # a stop passed by and gone back for lies behind on the route: the
                    # straight line below, and the clock from that stop on
                    if found <= plan.line.stop_along_m[index] + BEHIND_M:
                        along = found
                        remaining = remaining_along_m(plan.line, found, index)
            if remaining < 0:
                remaining = straight_line_remaining_m(f.lon, f.lat, nxt.lon, nxt.lat)
        # today's effective-speed ETA: the next stop's when there is nothing learned
        speed = rt.speed.value(self.planning_speed_ms, PRIOR_WEIGHT_S)
        eta = eta_seconds(remaining, speed, self.planning_speed_ms)
        etas: tuple[tuple[str, float], ...] = ()
        every_stop = False
        next_changed = rt.stops_next != nxt.visit_id
        if clock is not None:
            # the later stops at most every STOP_ETAS_EVERY_MS per driver, and when the next
            # stop changes: on every fix they were most of a fix's cost and of its message
            every_stop = next_changed or f.fix_ms - rt.stops_at_ms >= STOP_ETAS_EVERY_MS
            # without learned speeds: today's ETA to the next stop, the clock after it
            etas = self._stop_etas(
                plan,
                stops,
                tracks,
                index,
                serving,
                along if learned else None,
                eta,
                clock,
                rt,
                f,
                every_stop=every_stop,
            )
            eta = etas[0][1]
            if every_stop:
                rt.stops_at_ms = f.fix_ms
        if next_changed:
            rt.stops_next = nxt.visit_id
            # stops passed by keep no ETA (REST's etaAt) until they are next again; which
            # stops those are changes only with the next one
            for passed in _passed(plan, stops, index):
                stored = self.stored_eta.get(passed.visit_id)
                if stored is None or stored[0] != NO_ETA:
                    out.next_eta[passed.visit_id] = (NO_ETA, f.fix_ms)
        movement = Movement(  # positionally: keywords cost a NamedTuple twice, on every fix
            plan.route_id,  # route_id
            nxt.visit_id,  # next_visit_id
            nxt.customer_id,  # next_customer_id
            nxt.customer_name,  # next_customer_name
            round(remaining, 1),  # distance_to_next_m
            round(eta, 1),  # eta_s
            inside,  # geofence_id
            label,  # motion
            etas if every_stop else (),  # stop_etas
        )
        for visit_id, seconds in etas or ((nxt.visit_id, eta),):
            if stops[visit_id] != "pending":
                continue
            at = f.fix_ms + int(seconds * 1000)
            stored = self.stored_eta.get(visit_id)
            if (
                stored is None
                or abs(at - stored[0]) >= ETA_STORE_CHANGE_MS
                or f.fix_ms - stored[1] >= ETA_STORE_EVERY_MS
            ):
                out.next_eta[visit_id] = (at, f.fix_ms)  # fixes come in time order
        return movement

    def _clock(self, plan: Plan, tenant: str) -> tuple[RouteClock | None, bool]:
        """The route's clock and whether it runs on learned speeds.

        Learned: most of the path is on known roads that the tenant's history says something
        about. Otherwise the clock runs at the planning speed: the next stop keeps today's
        effective-speed ETA and the clock only spaces the later stops.
        """
        line = plan.line
        k = self.eta.knowledge
        if line is None or not line.lonlat:
            return None, False
        key = (id(line), tenant)
        found = self._clocks.get(key)
        if found is not None and found[1] is line:
            # after a reload, a route keeps its clock until this batch's rebuild budget lets
            # it be rebuilt: a fleet's clocks all at once stalled the worker for seconds
            if found[0] == k.version or self._rebuilds_left <= 0:
                return found[2], found[3]
        self._rebuilds_left -= 1
        profile = k.profile(tenant)
        roads = self._roads.get(id(line))
        if roads is None or roads[0] is not line or roads[1] is not k.roads:
            # the pieces change only with the road segments, not with what was learned
            roads = (line, k.roads, k.roads.route_roads(line.lonlat, line.cum))
            if len(self._roads) >= STORED_ETA_MAX:
                self._roads.clear()
            self._roads[id(line)] = roads
        pieces = roads[2]
        learned = (
            profile.samples > 0
            and pieces.matched_share >= LEARNED_MIN_SHARE
            and pieces.share(profile.knows) >= LEARNED_MIN_SHARE
        )
        clock = RouteClock(pieces, profile if learned else k.planning_only)
        if len(self._clocks) >= STORED_ETA_MAX:
            self._clocks.clear()
        self._clocks[key] = (k.version, line, clock, learned)
        return clock, learned

    def _observe_pace(self, clock: RouteClock, rt: Runtime, along: float, fix_ms: int) -> None:
        """Compare the time the last stretch took with what the profile expected for it."""
        if rt.progress_m is None or rt.last_fix_ms < 0 or along <= rt.progress_m:
            return
        taken = (fix_ms - rt.last_fix_ms) / 1000
        if taken > 120.0:  # a gap says nothing about pace
            return
        expected = clock.stretch_s(rt.progress_m, along, rt.last_fix_ms / 1000)
        if expected > 0:
            rt.pace = rt.pace.observe(taken, expected, self.eta_cfg.pace_half_life_s)

    def _stop_etas(
        self,
        plan: Plan,
        stops: dict[str, str],
        tracks: dict[int, Track],
        index: int,
        serving: bool,
        along: float | None,
        straight_eta_s: float,
        clock: RouteClock,
        rt: Runtime,
        f: FixInput,
        *,
        every_stop: bool = True,
    ) -> tuple[tuple[str, float], ...]:
        """Seconds to every remaining open stop, in visiting order (the next one first); only
        to the next one unless ``every_stop``."""
        assert plan.line is not None
        line = plan.line
        nxt = plan.stops[index]
        later = (
            [i for i in range(index + 1, len(plan.stops)) if stops[plan.stops[i].visit_id] in OPEN]
            if every_stop
            else []
        )
        pace_fade = self.eta_cfg.pace_fade_s
        if not later and not serving and along is not None:
            # the next stop alone, driving on the route: most fixes (the general case below
            # built its lists and tuples for this one figure at 4 % of a worker's time)
            [seconds_to_next] = stop_etas(
                clock,
                along,
                f.fix_ms / 1000,
                (line.stop_along_m[index],),
                (),
                pace=rt.pace.ratio(self.eta_cfg.pace_prior_s),
                fade_s=pace_fade,
            )
            return ((nxt.visit_id, round(seconds_to_next, 1)),)
        service = self.eta.service_s(f.tenant_id)
        if serving and not later:
            return ((nxt.visit_id, 0.0),)
        if along is None and not serving and not later:
            return ((nxt.visit_id, round(straight_eta_s, 1)),)
        if serving:
            # the stop being served: reached; the others count from the end of its service
            track = tracks.get(nxt.geofence_id) if nxt.geofence_id is not None else None
            entered = track.entered_ms if track is not None and track.entered_ms else f.fix_ms
            head = [(nxt.visit_id, 0.0)]
            start, ready_in, targets = line.stop_along_m[index], 0.0, later
            ready_in = max(service - (f.fix_ms - entered) / 1000, 0.0)
        elif along is None:
            # off the route, or nothing learned: the effective-speed ETA to the next stop,
            # the route's clock after it
            head = [(nxt.visit_id, round(straight_eta_s, 1))]
            start, ready_in, targets = line.stop_along_m[index], straight_eta_s + service, later
        else:
            head, start, ready_in, targets = [], along, 0.0, [index, *later]
        seconds = stop_etas(
            clock,
            start,
            f.fix_ms / 1000,
            [line.stop_along_m[i] for i in targets],
            [service] * len(targets),
            ready_in_s=ready_in,
            pace=rt.pace.ratio(self.eta_cfg.pace_prior_s) if along is not None else 1.0,
            fade_s=pace_fade,
        )
        return tuple(head) + tuple(
            (plan.stops[i].visit_id, round(s, 1)) for i, s in zip(targets, seconds, strict=True)
        )


def _next_open(plan: Plan, stops: dict[str, str], anchor: str | None) -> Stop | None:
    """The stop being served, else the next one to drive to.

    Drivers do not always keep the planned order: the next stop is the first pending one
    after ``anchor`` (the stop reached last, by time), and only when none is left after it
    the first pending one before it (a stop passed by, gone back for). Pending stops behind
    the driver stay pending, for the dispatcher to skip or keep, but are not "next".
    """
    first_pending = after_anchor = None
    seen_anchor = anchor is None
    for s in plan.stops:  # on every fix: the commonest case first
        status = stops[s.visit_id]
        if status == "pending":
            if first_pending is None:
                first_pending = s
            if seen_anchor and after_anchor is None:
                after_anchor = s
        elif status in AT_STOP:
            return s
        elif s.visit_id == anchor:  # never pending: the anchor was reached
            seen_anchor = True
    return after_anchor or first_pending


def _passed(plan: Plan, stops: dict[str, str], index: int) -> list[Stop]:
    """Pending stops planned before the next one (at ``index``): behind the driver."""
    return [s for s in plan.stops[:index] if stops[s.visit_id] == "pending"]


def _copy(rt: Runtime | None) -> Runtime:
    if rt is None:
        return Runtime()
    # every field, positionally: Runtime(**rt.__dict__) built a dict per driver per batch;
    # the motion state changes in place, so it is copied too
    return Runtime(
        rt.last_fix_ms,
        rt.last_lon,
        rt.last_lat,
        rt.speed,
        rt.route_id,
        rt.progress_m,
        None if rt.motion is None else copy.copy(rt.motion),
        rt.pace,
        rt.stops_at_ms,
        rt.stops_next,
    )


def _day_s(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _geofence_event(f: FixInput, geofence_id: int, t: Transition) -> dict[str, Any]:
    kind = "geofenceEnter" if t.kind == "enter" else "geofenceExit"
    return {
        "schema": 1,
        "id": str(uuid.uuid5(EVENT_NAMESPACE, f"gf:{f.driver_id}:{geofence_id}:{kind}:{t.at_ms}")),
        "tenant_id": f.tenant_id,
        "device_id": f.device_id,
        "driver_id": f.driver_id,
        "source": "fleetpulse",
        "type": kind,
        "event_time_ms": t.at_ms,
        "geofence": {"id": geofence_id},
        "attributes": {"pass": t.passed},
    }
