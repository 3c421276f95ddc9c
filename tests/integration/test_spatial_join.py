"""The enrichment's geofence spatial join against PostGIS's own spheroid distances.

The join measures distances in a local metric plane scaled at each fix's latitude (cheap);
here every (fix, geofence) pair is compared with ``ST_Distance(geography, use_spheroid)``
computed by brute force over all the tenant's geofences, at several latitudes, for circles
of tens of metres and for a polygon kilometres across.
"""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from geo.distance import metres_per_degree
from geo.geofence_state import DEFAULT_RULES, far_distance_m, inside_distance_m
from ingest.geofencing import Probe, spatial_join

pytestmark = pytest.mark.integration

TENANT = "tenant-join"
FAR_M = far_distance_m(5.0, DEFAULT_RULES)  # a fix with 5 m accuracy: 30 + 2 * 5 m
# The local plane's error grows with the square of the distance (r² tan φ / 2R, about a
# centimetre at 300 m and 60°); the fixes are within 300 m of the shapes.
TOLERANCE_M = 0.05

PLACES = [(24.94, 60.17), (-74.0, 40.7), (151.2, -33.87), (0.0, 0.0), (18.95, 69.65)]


def offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    kx, ky = metres_per_degree(lat)
    return lon + east_m / kx, lat + north_m / ky


async def make_shapes(pg: asyncpg.Pool, tenant: str = TENANT) -> list[int]:
    await pg.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'join test') ON CONFLICT DO NOTHING", tenant
    )
    ids = []
    for lon, lat in PLACES:
        for radius in (15.0, 60.0):
            ids.append(
                await pg.fetchval(
                    """INSERT INTO geofences (tenant_id, name, kind, center, radius_m, geom)
                       SELECT $1, 'circle', 'circle', ST_SetSRID(ST_MakePoint($2, $3), 4326), $4,
                              ST_Buffer(ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography, $4,
                                        'quad_segs=16')::geometry
                       RETURNING id""",
                    tenant,
                    *offset(lon, lat, radius * 3 if radius > 20 else 0.0, 0.0),
                    radius,
                )
            )
        # a depot yard 3 km x 1.2 km, rotated: a fix near its far edge is kilometres from
        # the polygon's centre
        corners = [offset(lon, lat, e, n) for e, n in [(-1500, 400), (1400, 900), (1500, -300)]]
        corners += [offset(lon, lat, -1400, -800), corners[0]]
        wkt = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in corners) + "))"
        ids.append(
            await pg.fetchval(
                """INSERT INTO geofences (tenant_id, name, kind, geom)
                   VALUES ($1, 'yard', 'polygon', ST_GeomFromText($2, 4326)) RETURNING id""",
                tenant,
                wkt,
            )
        )
    return ids


async def reference(pg: asyncpg.Pool, probes: list[Probe]) -> dict[tuple[int, int], float]:
    """Every (probe, geofence) spheroid distance, by brute force.

    A circle is its centre and radius: geodesic distance to the centre minus the radius (its
    stored polygon is a 64-gon inside the circle, there for the index and the map). A
    polygon's edges are straight lines in lon/lat (PostGIS geometry, as the join's inside
    test reads them), not geodesics: densified to 5e-5° (a few metres) before measuring on
    the spheroid, they are the same edges.
    """
    rows = await pg.fetch(
        """SELECT p.idx, g.id,
                  CASE WHEN g.kind = 'circle'
                       THEN greatest(0.0, ST_Distance(g.center::geography,
                                          ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography,
                                          true) - g.radius_m)
                       ELSE ST_Distance(ST_Segmentize(g.geom, 5e-5)::geography,
                                        ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography,
                                        true) END AS d
           FROM unnest($1::int[], $2::float8[], $3::float8[]) AS p(idx, lon, lat)
           CROSS JOIN geofences g WHERE g.tenant_id = $4""",
        [p.idx for p in probes],
        [p.lon for p in probes],
        [p.lat for p in probes],
        TENANT,
    )
    return {(r["idx"], r["id"]): float(r["d"]) for r in rows}


async def test_join_distances_match_the_spheroid_and_no_near_geofence_is_missed(
    pg: asyncpg.Pool,
) -> None:
    await make_shapes(pg)
    rng = random.Random(7)
    probes: list[Probe] = []
    for lon, lat in PLACES:
        for _ in range(100):
            # around the circles, and along the yard's far corners
            e, n = rng.uniform(-300, 500), rng.uniform(-300, 300)
            if rng.random() < 0.4:
                e, n = rng.choice([(-1500, 400), (1400, 900), (1500, -300)])
                e, n = e + rng.uniform(-150, 150), n + rng.uniform(-150, 150)
            probes.append(Probe(len(probes), TENANT, *offset(lon, lat, e, n), None, FAR_M))
    async with pg.acquire() as conn:
        hits = await spatial_join(conn, probes)
    truth = await reference(pg, probes)
    got = {(h.idx, h.geofence_id): h.distance_m for h in hits}

    near = {k for k, d in truth.items() if d <= FAR_M}
    assert len(near) > 200, "the scenario must put many fixes near and inside the shapes"
    assert near <= got.keys(), "a geofence within the far distance was not returned"
    errors = [abs(d - truth[k]) for k, d in got.items()]
    worst = sorted((abs(d - truth[k]), d, truth[k], k) for k, d in got.items())[-8:]
    assert max(errors) <= TOLERANCE_M, worst
    inside = [k for k, d in truth.items() if d == 0.0]
    assert inside and all(got[k] == 0.0 for k in inside)


async def test_distances_are_signed_and_the_previous_fix_is_measured_too(
    pg: asyncpg.Pool,
) -> None:
    """Inside a shape the distance is negative, the depth below its edge (what the state
    machine interpolates a crossing on); the previous fix of each probe is measured too."""
    tenant = "tenant-join-signed"
    await make_shapes(pg, tenant)
    rng = random.Random(11)
    probes: list[Probe] = []
    for lon, lat in PLACES:
        for _ in range(80):
            e, n = rng.uniform(-100, 300), rng.uniform(-100, 100)
            if rng.random() < 0.4:
                e, n = rng.choice([(-1500, 400), (1400, 900), (1500, -300)])
                e, n = e + rng.uniform(-150, 150), n + rng.uniform(-150, 150)
            prev = offset(lon, lat, e + rng.uniform(-60, 60), n + rng.uniform(-60, 60))
            probes.append(Probe(len(probes), tenant, *offset(lon, lat, e, n), prev, FAR_M))
    async with pg.acquire() as conn:
        hits = await spatial_join(conn, probes)
    # brute force on the spheroid: a circle from its centre, a polygon from its densified edge
    points = [(p.lon, p.lat) for p in probes] + [p.prev for p in probes if p.prev]
    rows = await pg.fetch(
        """SELECT p.lon, p.lat, g.id,
                  CASE WHEN g.kind = 'circle'
                       THEN ST_Distance(g.center::geography, p.pt::geography, true) - g.radius_m
                       ELSE ST_Distance(ST_Segmentize(ST_Boundary(g.geom), 5e-5)::geography,
                                        p.pt::geography, true)
                            * CASE WHEN ST_Intersects(g.geom, p.pt) THEN -1 ELSE 1 END
                  END AS d
           FROM (SELECT lon, lat, ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS pt
                 FROM unnest($1::float8[], $2::float8[]) AS t(lon, lat)) p
           CROSS JOIN geofences g WHERE g.tenant_id = $3""",
        [x for x, _ in points],
        [y for _, y in points],
        tenant,
    )
    truth = {(r["lon"], r["lat"], r["id"]): float(r["d"]) for r in rows}
    inside = prev_inside = 0
    for h in hits:
        p = probes[h.idx]
        assert p.prev is not None and h.prev_signed_m is not None
        assert h.signed_m == pytest.approx(truth[(p.lon, p.lat, h.geofence_id)], abs=TOLERANCE_M)
        assert h.prev_signed_m == pytest.approx(truth[(*p.prev, h.geofence_id)], abs=TOLERANCE_M)
        assert h.distance_m == max(0.0, h.signed_m)
        inside += h.signed_m < 0
        prev_inside += h.prev_signed_m < 0
    assert inside > 50 and prev_inside > 50, "the scenario must put many fixes inside"


async def test_a_crossing_is_reported_only_for_a_fix_far_from_the_geofence(
    pg: asyncpg.Pool,
) -> None:
    lon, lat = 24.90, 60.20
    await pg.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'join test') ON CONFLICT DO NOTHING", TENANT
    )
    gid = await pg.fetchval(
        """INSERT INTO geofences (tenant_id, name, kind, center, radius_m, geom)
           SELECT $1, 'small', 'circle', ST_SetSRID(ST_MakePoint($2, $3), 4326), 10,
                  ST_Buffer(ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography, 10)::geometry
           RETURNING id""",
        TENANT,
        lon,
        lat,
    )
    west, east, just_past = (
        offset(lon, lat, -200, 0),
        offset(lon, lat, 200, 0),
        offset(lon, lat, 30, 0),
    )
    probes = [
        Probe(0, TENANT, *east, west, FAR_M),  # 400 m straight through: a pass
        Probe(1, TENANT, *just_past, west, FAR_M),  # through, but the fix is still near
        Probe(2, TENANT, *offset(lon, lat, 200, 100), offset(lon, lat, -200, 100), FAR_M),
    ]
    async with pg.acquire() as conn:
        hits: dict[int, Any] = {
            h.idx: h for h in await spatial_join(conn, probes) if h.geofence_id == gid
        }
    assert hits[0].distance_m == pytest.approx(190.0, abs=0.5)
    assert hits[0].crossing is not None
    f_in, f_out = hits[0].crossing
    assert f_in == pytest.approx(190 / 400, abs=0.005)
    assert f_out == pytest.approx(210 / 400, abs=0.005)
    assert hits[1].distance_m == pytest.approx(20.0, abs=0.5) and hits[1].crossing is None
    assert 2 not in hits  # 100 m beside the geofence all the way: not near, not crossed


async def test_with_engaged_pairs_only_the_hits_that_can_move_a_state_machine_return(
    pg: asyncpg.Pool,
) -> None:
    """The worker passes the (driver, geofence) pairs whose state machine is not outside;
    then a pair's hits come back only when the pair is engaged, or one of its fixes in the
    batch is inside the geofence or passed through it. Checked against the unfiltered join
    on random drives past, into and through the shapes."""
    tenant = "tenant-join-engaged"
    ids = await make_shapes(pg, tenant)
    rng = random.Random(5)
    probes: list[Probe] = []
    for lon, lat in PLACES:
        for driver in range(12):
            e, n = rng.uniform(-150, 350), rng.uniform(-150, 150)
            for _ in range(4):  # a short drive: each fix's previous one is the last
                step_e, step_n = rng.uniform(-90, 90), rng.uniform(-90, 90)
                prev = offset(lon, lat, e, n)
                e, n = e + step_e, n + step_n
                probes.append(
                    Probe(
                        len(probes),
                        tenant,
                        *offset(lon, lat, e, n),
                        prev,
                        FAR_M,
                        f"d{lon}-{driver}",
                        inside_distance_m(5.0, DEFAULT_RULES),
                    )
                )
    async with pg.acquire() as conn:
        everything = await spatial_join(conn, probes)
        driver_of = {p.idx: p.driver_id for p in probes}
        pairs = sorted({(driver_of[h.idx], h.geofence_id) for h in everything})
        engaged = set(rng.sample(pairs, len(pairs) // 5))
        some = await spatial_join(conn, probes, engaged)

    moving = {
        (driver_of[h.idx], h.geofence_id)
        for h in everything
        if h.signed_m <= probes[h.idx].inside_m or h.crossing is not None
    }
    expected = {h for h in everything if (driver_of[h.idx], h.geofence_id) in engaged | moving}
    assert set(some) == expected
    crossings = [h for h in some if h.crossing is not None]
    assert crossings and moving - engaged and engaged - moving, "the scenario must have each"
    # near a geofence it is neither in nor passing, not engaged: left out
    assert len(set(everything) - set(some)) > 50 and set(ids) >= {h.geofence_id for h in some}


async def test_track_store_writes_a_last_fix_only_change_at_most_once_a_minute(
    pg: asyncpg.Pool,
) -> None:
    from geo.geofence_state import State, Track
    from ingest.geofencing import LAST_FIX_WRITE_EVERY_MS, TrackStore

    async with pg.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:  # rolled back at the end: the shared database stays as it was
            driver = str(await conn.fetchval("SELECT id FROM drivers ORDER BY id LIMIT 1"))
            geofence = int(await conn.fetchval("SELECT id FROM geofences ORDER BY id LIMIT 1"))
            store = TrackStore()
            await store.load(conn, {driver})
            t0 = 1_790_000_000_000
            store.put(driver, geofence, Track(State.INSIDE, t0, t0, 0, 0, t0))
            assert await store.flush(conn) == 1
            # parked inside: only the last fix time moves, not written again within a minute
            store.put(driver, geofence, Track(State.INSIDE, t0, t0 + 5_000, 0, 0, t0))
            assert await store.flush(conn) == 0
            # ... but any other change is, at once
            store.put(driver, geofence, Track(State.LEAVING, t0 + 6_000, t0 + 6_000, 1, 0, t0))
            assert await store.flush(conn) == 1
            late = t0 + 6_000 + LAST_FIX_WRITE_EVERY_MS  # a minute after the last write
            store.put(driver, geofence, Track(State.LEAVING, t0 + 6_000, late, 1, 0, t0))
            assert await store.flush(conn) == 1
            saved = await conn.fetchval(
                "SELECT (extract(epoch FROM last_fix_time) * 1000)::bigint FROM geofence_states"
                " WHERE driver_id = $1::uuid AND geofence_id = $2",
                driver,
                geofence,
            )
            assert saved == late
        finally:
            await tx.rollback()


async def test_a_watched_crossing_survives_a_reload(pg: asyncpg.Pool) -> None:
    """A restarted or rebalanced worker continues the crossing estimate where it stopped."""
    from geo.geofence_state import State, Track
    from ingest.geofencing import TrackStore

    async with pg.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:  # rolled back at the end: the shared database stays as it was
            driver = str(await conn.fetchval("SELECT id FROM drivers ORDER BY id LIMIT 1"))
            geofence = int(await conn.fetchval("SELECT id FROM geofences ORDER BY id LIMIT 1"))
            t0 = 1_790_000_000_000
            leaving = Track(State.LEAVING, t0 + 9_000, t0 + 9_000, 1, 0, t0, 2.5, t0 + 7_000)
            store = TrackStore()
            await store.load(conn, {driver})
            store.put(driver, geofence, leaving)
            assert await store.flush(conn) == 1
            # only the estimate changed (a tie found): written too, not held back a minute
            tie = leaving._replace(last_fix_ms=t0 + 10_000, cross_last_ms=t0 + 8_000)
            store.put(driver, geofence, tie)
            assert await store.flush(conn) == 1
            fresh = TrackStore()
            await fresh.load(conn, {driver})
            assert fresh.of(driver)[geofence] == tie
        finally:
            await tx.rollback()
