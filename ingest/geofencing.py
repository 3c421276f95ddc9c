"""Geofence detection for a batch of positions: one PostGIS spatial join, then state machines.

The join answers, for every position, which of its tenant's geofences are near (GiST index on
the polygons, ``&&`` against the position's search envelope), how far the fix is from each
(signed: metres outside, negative metres inside; the same for the driver's previous fix, so
the state machine can date a crossing between the two) and whether the segment from the
previous fix crossed it (with the entry and exit fractions along the segment). The per
(driver, geofence) state machine lives in geo/geofence_state.py; its state is kept here and
persisted in ``geofence_states`` within the worker's transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import NamedTuple

from geo.distance import WGS84_A, WGS84_E2
from geo.geofence_state import State as TrackState
from geo.geofence_state import Track
from infrastructure.postgres import Conn

LAST_FIX_WRITE_EVERY_MS = 60_000  # see TrackStore.put
SEARCH_SLACK_M = 10.0  # searched beyond "far" so a fix just past it is seen leaving

# Distances are planar in a local metric plane scaled at the fix's latitude (metres per degree
# of longitude and latitude on the WGS84 ellipsoid): within centimetres of the geodesic at the
# few hundred metres that matter here, and ~40x cheaper than a geography distance, which was
# 90% of the join's time (bench/ingest.py, 1,000 drivers). A polygon many kilometres across
# is still right near the fix, where the local scale is exact. A circle is measured from its
# centre: measuring its stored polygon (64 vertices, kept for the index and the map) was half
# of the join's remaining time, and the polygon lies up to 0.12 % of the radius inside it.
_JOIN_SQL = """
WITH q AS MATERIALIZED (
    -- the search box around the fix and the segment from the previous one, from numbers:
    -- building the point, the segment and its envelope as geometries for every fix was a
    -- fifth of the join
    SELECT idx, tenant_id, lon, lat, plon, plat, kx, ky, far_m, drv, inside_m,
           ST_MakeEnvelope(least(lon, coalesce(plon, lon)) - (far_m + $9) / kx,
                           least(lat, coalesce(plat, lat)) - (far_m + $9) / ky,
                           greatest(lon, coalesce(plon, lon)) + (far_m + $9) / kx,
                           greatest(lat, coalesce(plat, lat)) + (far_m + $9) / ky, 4326) AS box
    FROM unnest($1::int[], $2::text[], $3::float8[], $4::float8[], $5::float8[],
                $6::float8[], $10::float8[], $11::text[], $12::float8[])
        AS t(idx, tenant_id, lon, lat, plon, plat, far_m, drv, inside_m)
    -- metres per degree of longitude and latitude at the fix (geo.distance.metres_per_degree,
    -- $7 the semi-major axis, $8 the eccentricity squared); near the poles a degree of
    -- longitude tends to 0 m: kept at 1 m so the search box stays finite
    CROSS JOIN LATERAL (SELECT sqrt(1.0 - $8 * sin(radians(lat)) ^ 2) AS w) AS ellipsoid
    CROSS JOIN LATERAL (
        SELECT greatest(radians($7 * cos(radians(lat)) / w), 1.0) AS kx,
               radians($7 * (1.0 - $8) / w ^ 3) AS ky
    ) AS scale
), hits AS MATERIALIZED (
    SELECT q.idx, q.drv, q.inside_m, q.far_m, q.lon, q.lat, q.plon, q.plat,
           g.id AS geofence_id,
           CASE WHEN g.kind = 'circle'
                THEN sqrt(((q.lon - g.cx) * q.kx) ^ 2 + ((q.lat - g.cy) * q.ky) ^ 2) - g.radius_m
                WHEN ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326))
                THEN -ST_Distance(ST_Scale(ST_Boundary(g.geom), q.kx, q.ky),
                                  ST_Scale(ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326),
                                           q.kx, q.ky))
                ELSE ST_Distance(ST_Scale(g.geom, q.kx, q.ky),
                                 ST_Scale(ST_SetSRID(ST_MakePoint(q.lon, q.lat), 4326),
                                           q.kx, q.ky))
           END AS distance_m,
           -- the previous fix, at this fix's scale (a few hundred metres away at most)
           CASE WHEN q.plon IS NULL THEN NULL
                WHEN g.kind = 'circle'
                THEN sqrt(((q.plon - g.cx) * q.kx) ^ 2 + ((q.plat - g.cy) * q.ky) ^ 2)
                     - g.radius_m
                WHEN ST_Intersects(g.geom, ST_SetSRID(ST_MakePoint(q.plon, q.plat), 4326))
                THEN -ST_Distance(ST_Scale(ST_Boundary(g.geom), q.kx, q.ky),
                                  ST_Scale(ST_SetSRID(ST_MakePoint(q.plon, q.plat), 4326),
                                           q.kx, q.ky))
                ELSE ST_Distance(ST_Scale(g.geom, q.kx, q.ky),
                                 ST_Scale(ST_SetSRID(ST_MakePoint(q.plon, q.plat), 4326),
                                           q.kx, q.ky))
           END AS prev_m,
           -- whether the segment from the previous fix can cross the polygon: a circle's
           -- polygon lies within its radius, so a segment that stays farther from the centre
           -- cannot (most segments near a circle, tested here without building geometries;
           -- a metre's slack for the difference between the plane here and the spheroid)
           q.plon IS NOT NULL AND (g.kind <> 'circle' OR
               sqrt((a.ax + v.t * a.dx) ^ 2 + (a.ay + v.t * a.dy) ^ 2) <= g.radius_m + 1.0)
               AS may_cross
    -- OFFSET 0 keeps the subquery apart: one GiST index scan per probe. Flattened, the planner
    -- hashed on tenant_id and tested every probe's box against every geofence of the tenant.
    FROM q CROSS JOIN LATERAL (
        SELECT id, kind, geom, radius_m, ST_X(center) AS cx, ST_Y(center) AS cy
        FROM geofences
        WHERE geom && q.box AND tenant_id = q.tenant_id OFFSET 0
    ) g
    -- the previous fix relative to the centre, the step, and the fraction along the step
    -- nearest the centre: plain expressions (as a subquery per hit they were a sixth of this)
    CROSS JOIN LATERAL (
        SELECT (q.plon - g.cx) * q.kx AS ax, (q.plat - g.cy) * q.ky AS ay,
               (q.lon - q.plon) * q.kx AS dx, (q.lat - q.plat) * q.ky AS dy
    ) a
    CROSS JOIN LATERAL (
        SELECT CASE WHEN a.dx * a.dx + a.dy * a.dy > 0
                    THEN least(greatest(-(a.ax * a.dx + a.ay * a.dy) / (a.dx * a.dx + a.dy * a.dy),
                                        0.0), 1.0)
                    ELSE 0.0 END AS t
    ) v
-- a crossing only matters (a pass) when the fix itself is far from the polygon: the
-- segment and the intersection are built for those hits only (for all of them it was a
-- quarter of the join), with the polygon fetched again by key (carried through the CTEs for
-- every hit, it was copied each time)
), found AS MATERIALIZED (
    SELECT idx, drv, inside_m, geofence_id, distance_m, prev_m,
           CASE WHEN NOT ST_IsEmpty(x)
                THEN ST_LineLocatePoint(seg, ST_ClosestPoint(x, ST_StartPoint(seg))) END AS f_in,
           CASE WHEN NOT ST_IsEmpty(x)
                THEN ST_LineLocatePoint(seg, ST_ClosestPoint(x, ST_EndPoint(seg))) END AS f_out
    -- OFFSET 0: each level computed once per hit, not substituted into every use above (a
    -- CTE here copied every hit through one more tuplestore)
    FROM (
        SELECT c.*, CASE WHEN ST_Intersects(geom, seg) THEN ST_Intersection(geom, seg) END AS x
        FROM (
            SELECT h.*,
                   CASE WHEN h.may_cross AND h.distance_m > h.far_m
                        THEN ST_SetSRID(ST_MakeLine(ST_MakePoint(h.plon, h.plat),
                                                    ST_MakePoint(h.lon, h.lat)), 4326) END AS seg,
                   CASE WHEN h.may_cross AND h.distance_m > h.far_m
                        THEN (SELECT geom FROM geofences WHERE id = h.geofence_id) END AS geom
            FROM hits h OFFSET 0
        ) c OFFSET 0
    ) crossed
)
SELECT idx, geofence_id, distance_m, prev_m, f_in, f_out
FROM found
WHERE $13
   -- a pair one of whose fixes in the batch is inside the geofence or passed through it
   OR (drv, geofence_id) IN (SELECT drv, geofence_id FROM found
                             WHERE distance_m <= inside_m OR f_in IS NOT NULL)
   OR (drv, geofence_id) IN (SELECT d, g FROM unnest($14::text[], $15::bigint[]) AS e(d, g))
"""


class Probe(NamedTuple):
    """One position to test against the geofences."""

    idx: int
    tenant_id: str
    lon: float
    lat: float
    prev: tuple[float, float] | None  # the driver's previous fix (for crossings)
    far_m: float  # farther than this from a polygon, the fix is "far" from it
    driver_id: str = ""  # whose fix (spatial_join's ``engaged`` filter)
    inside_m: float = 0.0  # this near a polygon, the fix is "inside" it (zone INSIDE)


class Hit(NamedTuple):
    idx: int
    geofence_id: int
    signed_m: float  # from the boundary: metres outside, negative inside
    prev_signed_m: float | None  # the same for the driver's previous fix (None: none)
    crossing: tuple[float, float] | None  # entry and exit fraction along prev -> fix (far fixes)

    @property
    def distance_m(self) -> float:
        """Metres from the polygon, 0 inside."""
        return max(0.0, self.signed_m)


async def spatial_join(
    conn: Conn, probes: list[Probe], engaged: Collection[tuple[str, int]] | None = None
) -> list[Hit]:
    """Return the geofences near each probe, in one query for the whole batch.

    A geofence is returned for a probe when it is within ``far_m`` (plus a little) of the fix
    or of the segment from the previous fix; farther ones are simply "far".

    With ``engaged`` (the (driver, geofence) pairs whose state machine is not outside), only
    the hits that can move a state machine are returned: those of an engaged pair, and those
    of a pair one of whose fixes in the batch is inside the geofence or passed through it.
    The rest, a fix near a geofence it is not in, leave an outside state machine outside;
    on a dense city fleet they were 98 % of the rows.
    """
    if not probes:
        return []
    rows = await conn.fetch(
        _JOIN_SQL,
        [p.idx for p in probes],
        [p.tenant_id for p in probes],
        [p.lon for p in probes],
        [p.lat for p in probes],
        [p.prev[0] if p.prev else None for p in probes],
        [p.prev[1] if p.prev else None for p in probes],
        WGS84_A,  # the metric scale is computed in the query: two arrays fewer to send
        WGS84_E2,
        SEARCH_SLACK_M,
        [p.far_m for p in probes],
        [p.driver_id for p in probes],
        [p.inside_m for p in probes],
        engaged is None,
        [d for d, _ in engaged or ()],
        [g for _, g in engaged or ()],
    )
    # records unpacked by position (the SELECT's column order): lookups by name were most
    # of this loop's time
    return [
        Hit(idx, gid, signed, prev, None if f_in is None else (f_in, f_out))
        for idx, gid, signed, prev, f_in, f_out in rows
    ]


def _same_but_last_fix(a: Track, b: Track) -> bool:
    # field by field: dataclasses.replace() here, once per changed track per fix, was slow
    return (
        a.state == b.state
        and a.since_ms == b.since_ms
        and a.fixes == b.fixes
        and a.doubtful == b.doubtful
        and a.entered_ms == b.entered_ms
        and a.dip == b.dip
        and a.cross_first_ms == b.cross_first_ms
        and a.cross_last_ms == b.cross_last_ms
    )


def _is_blank(track: Track) -> bool:
    return track.state == TrackState.OUTSIDE and track.fixes == 0 and track.doubtful == 0


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class TrackStore:
    """(driver, geofence) state machines: loaded once per driver, written when changed."""

    def __init__(self) -> None:
        self._tracks: dict[str, dict[int, Track]] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._saved_fix_ms: dict[tuple[str, int], int] = {}  # last_fix_ms in the database

    async def load(self, conn: Conn, driver_ids: set[str]) -> None:
        missing = [d for d in driver_ids if d not in self._tracks]
        if not missing:
            return
        rows = await conn.fetch(
            """SELECT driver_id::text AS driver_id, geofence_id, state, since, last_fix_time,
                      entered_at, fixes, doubtful, crossing_dip, crossing_first, crossing_last
               FROM geofence_states WHERE driver_id = ANY($1::uuid[])""",
            missing,
        )
        for d in missing:
            self._tracks[d] = {}
        for r in rows:
            self._saved_fix_ms[(r["driver_id"], r["geofence_id"])] = _ms(r["last_fix_time"]) or -1
            self._tracks[r["driver_id"]][r["geofence_id"]] = Track(
                state=TrackState(r["state"]),
                since_ms=_ms(r["since"]) or 0,
                last_fix_ms=_ms(r["last_fix_time"]) or -1,
                fixes=r["fixes"],
                doubtful=r["doubtful"],
                entered_ms=_ms(r["entered_at"]),
                dip=r["crossing_dip"],
                cross_first_ms=_ms(r["crossing_first"]),
                cross_last_ms=_ms(r["crossing_last"]),
            )

    def of(self, driver_id: str) -> dict[int, Track]:
        """The driver's tracks by geofence id (call load first)."""
        return self._tracks.setdefault(driver_id, {})

    def engaged(self, driver_id: str) -> set[int]:
        """The driver's geofences whose state machine is not outside (call load first)."""
        return {g for g, t in self.of(driver_id).items() if t.state is not TrackState.OUTSIDE}

    def put(self, driver_id: str, geofence_id: int, track: Track) -> None:
        """Record a track's new state. A plain "outside, nothing pending" track is the same
        as no track: it is dropped (and its row deleted) instead of written on every fix.

        A change of ``last_fix_ms`` alone (a driver parked inside, every fix) is written at
        most every ``LAST_FIX_WRITE_EVERY_MS``: re-deciding those fixes after a crash gives
        the same state, and the row must not be rewritten once a second per parked driver.
        """
        tracks = self._tracks.setdefault(driver_id, {})
        key = (driver_id, geofence_id)
        if _is_blank(track):
            if geofence_id in tracks:
                del tracks[geofence_id]
                self._dirty.add(key)
            return
        current = tracks.get(geofence_id)
        if current == track:
            return
        tracks[geofence_id] = track
        if (
            current is not None
            and _same_but_last_fix(current, track)
            and track.last_fix_ms - self._saved_fix_ms.get(key, -1) < LAST_FIX_WRITE_EVERY_MS
        ):
            return
        self._dirty.add(key)

    def forget(self, driver_ids: set[str]) -> None:
        """Drop cached tracks (after a failed transaction the database is the truth)."""
        for d in driver_ids:
            self._tracks.pop(d, None)
        self._dirty = {k for k in self._dirty if k[0] not in driver_ids}
        self._saved_fix_ms = {k: v for k, v in self._saved_fix_ms.items() if k[0] not in driver_ids}

    async def flush(self, conn: Conn) -> int:
        """Upsert the changed tracks (inside the caller's transaction): two statements."""
        if not self._dirty:
            return 0
        rows: list[tuple[str, int, Track]] = []
        gone: list[tuple[str, int]] = []
        for driver_id, geofence_id in self._dirty:
            t = self._tracks.get(driver_id, {}).get(geofence_id)
            if t is None:
                gone.append((driver_id, geofence_id))
            else:
                rows.append((driver_id, geofence_id, t))
        if gone:
            await conn.execute(
                """DELETE FROM geofence_states s
                   USING unnest($1::uuid[], $2::bigint[]) AS g(driver_id, geofence_id)
                   WHERE s.driver_id = g.driver_id AND s.geofence_id = g.geofence_id""",
                [d for d, _ in gone],
                [g for _, g in gone],
            )
        if rows:
            await conn.execute(
                """INSERT INTO geofence_states AS s (driver_id, geofence_id, state, since,
                       last_fix_time, entered_at, fixes, doubtful, crossing_dip, crossing_first,
                       crossing_last)
                   SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[],
                                        $4::timestamptz[], $5::timestamptz[],
                                        $6::timestamptz[], $7::int[], $8::int[],
                                        $9::float8[], $10::timestamptz[], $11::timestamptz[])
                   ON CONFLICT (driver_id, geofence_id) DO UPDATE SET state = EXCLUDED.state,
                       since = EXCLUDED.since, last_fix_time = EXCLUDED.last_fix_time,
                       entered_at = EXCLUDED.entered_at, fixes = EXCLUDED.fixes,
                       doubtful = EXCLUDED.doubtful, crossing_dip = EXCLUDED.crossing_dip,
                       crossing_first = EXCLUDED.crossing_first,
                       crossing_last = EXCLUDED.crossing_last
                   WHERE s.last_fix_time <= EXCLUDED.last_fix_time""",
                [d for d, _, _ in rows],
                [g for _, g, _ in rows],
                [t.state.value for _, _, t in rows],
                [_dt(t.since_ms) for _, _, t in rows],
                [_dt(t.last_fix_ms) for _, _, t in rows],
                [_dt(t.entered_ms) for _, _, t in rows],
                [t.fixes for _, _, t in rows],
                [t.doubtful for _, _, t in rows],
                [t.dip for _, _, t in rows],
                [_dt(t.cross_first_ms) for _, _, t in rows],
                [_dt(t.cross_last_ms) for _, _, t in rows],
            )
        for d, g, t in rows:
            self._saved_fix_ms[(d, g)] = t.last_fix_ms
        for key in gone:
            self._saved_fix_ms.pop(key, None)
        n = len(rows) + len(gone)
        self._dirty.clear()
        return n
